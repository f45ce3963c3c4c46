package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
)

var errDown = errors.New("connection refused")

// fakeQuerier answers every statement with err.
type fakeQuerier struct {
	err   error
	calls int
}

func (f *fakeQuerier) Exec(context.Context, string, ...any) (int64, error) {
	f.calls++
	return 0, f.err
}

func (f *fakeQuerier) Query(context.Context, string, ...any) (Rows, error) {
	f.calls++
	return nil, f.err
}

func (f *fakeQuerier) QueryRow(context.Context, string, ...any) Row {
	f.calls++
	return errRow{f.err}
}

// What counts: the backend's unavailable errors and deadlines; not answers
// (no rows, SQL errors), not a caller's cancellation. Open: no statement
// reaches the database.
func TestGuardCountsOnlyUnavailability(t *testing.T) {
	t.Parallel()
	set := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 3, OpenTimeout: time.Minute}})
	g := Guard{Breaker: set.Get(breaker.Store), Unavailable: func(err error) bool { return errors.Is(err, errDown) }}
	f := &fakeQuerier{}
	q := g.Querier(f)
	ctx := context.Background()

	f.err = errors.New("syntax error at or near")
	for range 5 {
		_, _ = q.Exec(ctx, "x")
		require.Error(t, q.QueryRow(ctx, "x").Scan())
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	f.err = context.Canceled
	for range 5 {
		_, _ = q.Query(canceled, "x")
	}
	require.Equal(t, breaker.StateClosed, g.Breaker.State())

	f.err = errDown
	_, _ = q.Exec(ctx, "x")
	_ = q.QueryRow(ctx, "x").Scan()
	f.err = context.DeadlineExceeded
	_, _ = q.Query(ctx, "x")
	require.Equal(t, breaker.StateOpen, g.Breaker.State())

	before := f.calls
	_, err := q.Exec(ctx, "x")
	oe, ok := breaker.AsOpen(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, breaker.Store, oe.Dependency)
	_, ok = breaker.AsOpen(q.QueryRow(ctx, "x").Scan())
	require.True(t, ok)
	require.Equal(t, before, f.calls, "an open breaker sends nothing")
	_, ok = breaker.AsOpen(g.Do(ctx, func() error { t.Fatal("called"); return nil }))
	require.True(t, ok)
}

// ErrNotUsed (a transaction that sent nothing) is neither a failure nor a
// success: it does not reset the count of failures in a row.
func TestGuardNotUsedCountsAsNothing(t *testing.T) {
	t.Parallel()
	set := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 2, OpenTimeout: time.Minute}})
	g := Guard{Breaker: set.Get(breaker.Store), Unavailable: func(err error) bool { return errors.Is(err, errDown) }}
	ctx := context.Background()
	judge := func(err error) {
		done, aerr := g.Allow()
		require.NoError(t, aerr)
		done(ctx, err)
	}
	judge(errDown)
	for range 3 {
		judge(ErrNotUsed)
	}
	require.Equal(t, breaker.StateClosed, g.Breaker.State())
	judge(errDown)
	require.Equal(t, breaker.StateOpen, g.Breaker.State(), "two failures in a row")
}

func TestGuardWithoutBreakerIsTransparent(t *testing.T) {
	t.Parallel()
	f := &fakeQuerier{err: errDown}
	require.Same(t, Querier(f), Guard{}.Querier(f))
	for range 20 {
		require.ErrorIs(t, Guard{}.Do(context.Background(), func() error { return errDown }), errDown)
	}
}
