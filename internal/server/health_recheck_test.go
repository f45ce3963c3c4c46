package server

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type flakyStore struct{ down atomic.Bool }

func (f *flakyStore) Ping(context.Context) error {
	if f.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

// While the store is unreachable it is checked every storeRecheck, not
// every Interval: the instance is ready again soon after the store is
// back (here within 2 s, with an Interval of an hour).
func TestHealthRechecksADownStoreSoon(t *testing.T) {
	st := &flakyStore{}
	st.down.Store(true)
	h := &Health{Store: st, Interval: time.Hour}
	h.SetReady(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.Eventually(t, func() bool { return h.notReady() != "" && h.notReady() != "store not checked yet" },
		5*time.Second, 10*time.Millisecond)

	st.down.Store(false)
	back := time.Now()
	require.Eventually(t, func() bool { return h.notReady() == "" }, 5*time.Second, 10*time.Millisecond)
	require.Less(t, time.Since(back), 2*time.Second)
	cancel()
	require.NoError(t, <-done)
}
