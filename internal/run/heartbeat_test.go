package run

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// leaseStore answers ExtendLease and GetRun as a test sets them.
type leaseStore struct {
	RunStore // nil: any other method panics
	extend   func(ctx context.Context) (bool, error)
	run      store.Run
	calls    atomic.Int32
}

func (s *leaseStore) ExtendLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	s.calls.Add(1)
	return s.extend(ctx)
}

func (s *leaseStore) GetRun(ctx context.Context, tenant, id string) (store.Run, error) {
	return s.run, nil
}

// causes records the causes a heartbeat cancels its run with.
type causes struct {
	mu  sync.Mutex
	got []error
}

func (c *causes) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, err)
}

func (c *causes) list() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.got...)
}

// The heartbeat renews without a goroutine waiting between renewals: every
// LeaseTTL/3 until stopped; a requested cancellation, a lost lease or a
// finished run end the renewals, and stop waits for one under way.
func TestHeartbeat(t *testing.T) {
	const ttl = 60 * time.Millisecond
	newRuns := func(st *leaseStore) *Runs {
		return &Runs{Store: st, Owner: "w1", LeaseTTL: ttl, Log: slog.New(slog.DiscardHandler)}
	}

	t.Run("RenewsUntilStopped", func(t *testing.T) {
		st := &leaseStore{extend: func(context.Context) (bool, error) { return false, nil }}
		var c causes
		stop := newRuns(st).heartbeatFrom(t.Context(), "t1", "run_1", "w1", c.cancel, 0)
		require.Eventually(t, func() bool { return st.calls.Load() >= 3 }, 5*time.Second, time.Millisecond)
		stop()
		n := st.calls.Load()
		time.Sleep(3 * ttl)
		require.Equal(t, n, st.calls.Load(), "no renewal after stop")
		require.Empty(t, c.list())
	})

	t.Run("StoreErrorKeepsRenewing", func(t *testing.T) {
		st := &leaseStore{extend: func(context.Context) (bool, error) { return false, errors.New("store down") }}
		var c causes
		stop := newRuns(st).heartbeatFrom(t.Context(), "t1", "run_1", "w1", c.cancel, 0)
		defer stop()
		require.Eventually(t, func() bool { return st.calls.Load() >= 3 }, 5*time.Second, time.Millisecond)
		require.Empty(t, c.list())
	})

	for _, tc := range []struct {
		name   string
		extend func(context.Context) (bool, error)
		run    store.Run
		want   error // nil: renewals end without a cancel
	}{
		{"CancelRequested", func(context.Context) (bool, error) { return true, nil }, store.Run{Status: store.RunRunning}, ErrCanceled},
		{"InterruptRequested", func(context.Context) (bool, error) { return true, nil }, store.Run{Status: store.RunRunning, InterruptRequested: true}, ErrInterrupted},
		{"LeaseLost", func(context.Context) (bool, error) { return false, store.ErrConflict }, store.Run{Status: store.RunRunning}, ErrSuspended},
		{"RunFinished", func(context.Context) (bool, error) { return false, store.ErrConflict }, store.Run{Status: store.RunSucceeded}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &leaseStore{extend: tc.extend, run: tc.run}
			var c causes
			stop := newRuns(st).heartbeatFrom(t.Context(), "t1", "run_1", "w1", c.cancel, 0)
			defer stop()
			require.Eventually(t, func() bool { return st.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
			time.Sleep(3 * ttl)
			require.Equal(t, int32(1), st.calls.Load(), "renewals end")
			if tc.want == nil {
				require.Empty(t, c.list())
			} else {
				require.Len(t, c.list(), 1)
				require.ErrorIs(t, c.list()[0], tc.want)
			}
		})
	}

	t.Run("FirstRenewalAfterFirst", func(t *testing.T) {
		st := &leaseStore{extend: func(context.Context) (bool, error) { return false, nil }}
		var c causes
		stop := newRuns(st).heartbeatFrom(t.Context(), "t1", "run_1", "w1", c.cancel, time.Hour)
		time.Sleep(3 * ttl)
		stop()
		require.Zero(t, st.calls.Load(), "the first renewal is due in an hour")
	})

	t.Run("StopWaitsForARenewal", func(t *testing.T) {
		entered, returned := make(chan struct{}), atomic.Bool{}
		st := &leaseStore{extend: func(ctx context.Context) (bool, error) {
			close(entered)
			<-ctx.Done() // stop ends the renewal's context
			time.Sleep(20 * time.Millisecond)
			returned.Store(true)
			return false, ctx.Err()
		}}
		var c causes
		stop := newRuns(st).heartbeatFrom(t.Context(), "t1", "run_1", "w1", c.cancel, 0)
		<-entered
		stop()
		require.True(t, returned.Load(), "stop returned before the renewal under way")
		require.Empty(t, c.list(), "a renewal ended by stop cancels nothing")
	})

	t.Run("EndsWithItsContext", func(t *testing.T) {
		st := &leaseStore{extend: func(context.Context) (bool, error) { return false, nil }}
		var c causes
		ctx, cancel := context.WithCancel(t.Context())
		stop := newRuns(st).heartbeatFrom(ctx, "t1", "run_1", "w1", c.cancel, 0)
		defer stop()
		require.Eventually(t, func() bool { return st.calls.Load() >= 1 }, 5*time.Second, time.Millisecond)
		cancel()
		time.Sleep(ttl / 3) // a renewal due now sees the context ended
		n := st.calls.Load()
		time.Sleep(3 * ttl)
		require.Equal(t, n, st.calls.Load(), "no renewal after the context ended")
	})
}
