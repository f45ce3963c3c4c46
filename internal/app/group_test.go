package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGroupFirstFailureStopsAllInReverseOrder(t *testing.T) {
	t.Parallel()
	g := &group{log: slog.New(slog.DiscardHandler)}
	var (
		mu      sync.Mutex
		stopped []string
	)
	record := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		stopped = append(stopped, name)
	}
	for _, name := range []string{"a", "b", "c"} {
		g.addLoop(context.Background(), name, func(ctx context.Context) error {
			<-ctx.Done()
			record(name)
			return nil
		})
	}
	boom := errors.New("boom")
	fail := make(chan struct{})
	g.add("dies", func() error { <-fail; return boom }, func(error) { t.Error("the failed actor is not interrupted") })
	last := make(chan struct{})
	g.add("server", func() error { <-last; record("server"); return nil }, func(err error) {
		require.ErrorIs(t, err, boom, "interrupt sees the cause")
		close(last)
	})
	errc := make(chan error, 1)
	go func() { errc <- g.run() }()
	time.Sleep(10 * time.Millisecond)
	close(fail)
	select {
	case err := <-errc:
		require.ErrorIs(t, err, boom)
		require.EqualError(t, err, "dies: boom")
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after a component failed")
	}
	require.Equal(t, []string{"server", "c", "b", "a"}, stopped, "reverse order, one after the other")
}

func TestGroupLoopReturningEarlyIsAFailure(t *testing.T) {
	t.Parallel()
	g := &group{log: slog.New(slog.DiscardHandler)}
	g.addLoop(context.Background(), "quitter", func(context.Context) error { return nil })
	g.addLoop(context.Background(), "stays", func(ctx context.Context) error { <-ctx.Done(); return nil })
	err := g.run()
	require.ErrorIs(t, err, errStoppedEarly)
	require.ErrorContains(t, err, "quitter")
}

func TestGroupEmpty(t *testing.T) {
	t.Parallel()
	require.NoError(t, (&group{}).run())
}
