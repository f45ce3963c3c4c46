package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.RunLeases the suite pins down beyond its doc comments:
//   - a running run whose cancellation was requested stays claimable once
//     its lease expired (its worker died): the next worker learns of the
//     request at its first ExtendLease and ends it, so it cannot be stuck
//     in running; a running run whose lease was cleared (ReleaseLease,
//     ReclaimExpiredRuns) is claimable by any owner;
//   - ExtendLease of an unknown run, or of a run that is not running (or
//     queued and held by the owner: store.Run.HeldBy), is ErrConflict;
//   - RequestCancel of a queued run sets FinishedAt to now and Error to
//     "canceled: the run was canceled";
//   - ReclaimExpiredRuns calls fn with a non-nil tx and the run as it is
//     (status running); an error of fn is returned so that errors.Is finds
//     it, and leaves every lease as it was; concurrent reclaimers reclaim
//     each expired run exactly once; repeated calls reclaim them all, also
//     when there are more than one call handles;
//   - QueueStats.Depth is not nil.

// canceledError is the error RequestCancel gives a queued run.
const canceledError = "canceled: the run was canceled"

func claim[TTx any](ctx context.Context, s Store[TTx], id, owner string, until, now time.Time) (store.Run, error) {
	return s.ClaimRun(ctx, store.ClaimRunParams{ID: id, Owner: owner, LeaseUntil: until, Now: now})
}

func getRun[TTx any](t *testing.T, ctx context.Context, s Store[TTx], tenant, id string) store.Run {
	t.Helper()
	r, err := s.GetRun(ctx, tenant, id)
	require.NoError(t, err)
	return r
}

func exerciseRunLeases[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t0 := at("2025-06-01T10:00:00.123456Z")
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

	t.Run("ClaimQueued", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		got, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		require.Equal(t, r.ID, got.ID)
		require.Equal(t, "t1", got.Tenant)
		require.Equal(t, store.RunRunning, got.Status)
		require.Equal(t, 1, got.Attempt)
		require.Equal(t, utc(sec(0)), got.StartedAt)
		require.True(t, got.FinishedAt.IsZero())
		require.Equal(t, `{"messages":[]}`, string(got.Input))
		require.Equal(t, got, getRun(t, ctx, s, "t1", r.ID), "ClaimRun returns the run as stored")
	})

	t.Run("ClaimAgainBySameOwner", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		got, err := claim(ctx, s, r.ID, "w1", sec(40), sec(10))
		require.NoError(t, err, "the holder may claim again (a redelivered job)")
		require.Equal(t, 2, got.Attempt)
		require.Equal(t, utc(sec(0)), got.StartedAt, "started_at is kept")

		// The second claim moved the lease to 40s.
		_, err = claim(ctx, s, r.ID, "w2", sec(60), sec(35))
		require.ErrorIs(t, err, store.ErrConflict)
	})

	t.Run("ClaimByOtherWhileLeaseValid", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		got, err := claim(ctx, s, r.ID, "w2", sec(60), sec(29))
		require.ErrorIs(t, err, store.ErrConflict)
		require.NotErrorIs(t, err, store.ErrNotFound)
		require.Equal(t, r.ID, got.ID, "the current run comes with ErrConflict")
		require.Equal(t, store.RunRunning, got.Status)
		require.Equal(t, 1, got.Attempt, "a refused claim changes nothing")

		// The lease still is w1's.
		_, err = s.ExtendLease(ctx, r.ID, "w1", sec(31))
		require.NoError(t, err)
	})

	t.Run("ClaimAfterExpiry", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		_, err = claim(ctx, s, r.ID, "w2", sec(90), sec(30))
		require.ErrorIs(t, err, store.ErrConflict, "a lease is valid up to and including its expiry")
		got, err := claim(ctx, s, r.ID, "w2", sec(91), sec(31))
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
		require.Equal(t, 2, got.Attempt)
		require.Equal(t, utc(sec(0)), got.StartedAt)

		// w1 lost it.
		_, err = s.ExtendLease(ctx, r.ID, "w1", sec(60))
		require.ErrorIs(t, err, store.ErrConflict)
		_, err = s.ExtendLease(ctx, r.ID, "w2", sec(120))
		require.NoError(t, err)
	})

	t.Run("ClaimTerminal", func(t *testing.T) {
		s, ctx := setup(t)
		for _, status := range []store.RunStatus{store.RunSucceeded, store.RunFailed, store.RunCanceled} {
			r := createRun(t, ctx, s, "t1")
			_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
			require.NoError(t, err)
			require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{
				ID: r.ID, Status: status, Attempt: 1, StartedAt: sec(0), FinishedAt: sec(5), Error: "e",
			}))
			for _, owner := range []string{"w1", "w2"} {
				got, err := claim(ctx, s, r.ID, owner, sec(100), sec(50))
				require.ErrorIs(t, err, store.ErrConflict, "%s by %s", status, owner)
				require.Equal(t, status, got.Status, "the returned run shows why")
				require.Equal(t, 1, got.Attempt)
			}
			require.Equal(t, status, getRun(t, ctx, s, "t1", r.ID).Status)
		}
	})

	t.Run("ClaimUnknown", func(t *testing.T) {
		s, ctx := setup(t)
		_, err := claim(ctx, s, "nope", "w1", sec(30), sec(0))
		require.ErrorIs(t, err, store.ErrNotFound)
		require.NotErrorIs(t, err, store.ErrConflict)
	})

	t.Run("ClaimIsNotTenantScoped", func(t *testing.T) {
		s, ctx := setup(t)
		a, b := createRun(t, ctx, s, "t1"), createRun(t, ctx, s, "t2")
		for _, r := range []store.Run{a, b} {
			got, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
			require.NoError(t, err)
			require.Equal(t, r.Tenant, got.Tenant)
		}
	})

	t.Run("ExtendLease", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")

		_, err := s.ExtendLease(ctx, r.ID, "w1", sec(30))
		require.ErrorIs(t, err, store.ErrConflict, "a queued run has no lease")
		_, err = s.ExtendLease(ctx, "nope", "w1", sec(30))
		require.ErrorIs(t, err, store.ErrConflict)

		_, err = claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		cancel, err := s.ExtendLease(ctx, r.ID, "w1", sec(60))
		require.NoError(t, err)
		require.False(t, cancel)
		_, err = s.ExtendLease(ctx, r.ID, "w2", sec(90))
		require.ErrorIs(t, err, store.ErrConflict, "not the holder")

		// The lease now ends at 60s.
		_, err = claim(ctx, s, r.ID, "w2", sec(90), sec(45))
		require.ErrorIs(t, err, store.ErrConflict)
		_, err = claim(ctx, s, r.ID, "w2", sec(90), sec(61))
		require.NoError(t, err)

		// A finished run's lease can't be extended.
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded, Attempt: 2}))
		_, err = s.ExtendLease(ctx, r.ID, "w2", sec(120))
		require.ErrorIs(t, err, store.ErrConflict)
	})

	t.Run("ReleaseLease", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)

		require.NoError(t, s.ReleaseLease(ctx, r.ID, "w2"), "not held: no error")
		require.NoError(t, s.ReleaseLease(ctx, "nope", "w1"))
		_, err = claim(ctx, s, r.ID, "w2", sec(40), sec(1))
		require.ErrorIs(t, err, store.ErrConflict, "another's release does not drop the lease")

		require.NoError(t, s.ReleaseLease(ctx, r.ID, "w1"))
		require.NoError(t, s.ReleaseLease(ctx, r.ID, "w1"), "twice")
		got := getRun(t, ctx, s, "t1", r.ID)
		require.Equal(t, store.RunRunning, got.Status, "releasing keeps the status")
		_, err = s.ExtendLease(ctx, r.ID, "w1", sec(40))
		require.ErrorIs(t, err, store.ErrConflict, "released")

		got, err = claim(ctx, s, r.ID, "w2", sec(40), sec(2))
		require.NoError(t, err, "claimable at once, before the old lease would have ended")
		require.Equal(t, 2, got.Attempt)
	})

	t.Run("CancelQueued", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		got, err := s.RequestCancel(ctx, "t1", r.ID, sec(5))
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, got.Status)
		require.Equal(t, utc(sec(5)), got.FinishedAt)
		require.Equal(t, canceledError, got.Error)
		require.Zero(t, got.Attempt)
		require.True(t, got.StartedAt.IsZero())
		require.Equal(t, got, getRun(t, ctx, s, "t1", r.ID))

		// A canceled run is not claimable.
		cur, err := claim(ctx, s, r.ID, "w1", sec(30), sec(6))
		require.ErrorIs(t, err, store.ErrConflict)
		require.Equal(t, store.RunCanceled, cur.Status)

		// Canceling again changes nothing.
		again, err := s.RequestCancel(ctx, "t1", r.ID, sec(9))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})

	t.Run("CancelRunning", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)

		got, err := s.RequestCancel(ctx, "t1", r.ID, sec(5))
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status, "the worker stops it")
		require.True(t, got.FinishedAt.IsZero())
		require.Empty(t, got.Error)
		require.Equal(t, 1, got.Attempt)

		cancel, err := s.ExtendLease(ctx, r.ID, "w1", sec(60))
		require.NoError(t, err)
		require.True(t, cancel, "ExtendLease reports the request")
		cancel, err = s.ExtendLease(ctx, r.ID, "w1", sec(90))
		require.NoError(t, err)
		require.True(t, cancel, "and keeps reporting it")

		// Another worker can't take over while the lease is valid...
		_, err = claim(ctx, s, r.ID, "w2", sec(200), sec(80))
		require.ErrorIs(t, err, store.ErrConflict)
		// ...but can once it expired (w1 died), and learns of the request.
		got, err = claim(ctx, s, r.ID, "w2", sec(200), sec(100))
		require.NoError(t, err)
		require.Equal(t, 2, got.Attempt)
		cancel, err = s.ExtendLease(ctx, r.ID, "w2", sec(210))
		require.NoError(t, err)
		require.True(t, cancel, "the new owner sees the request")

		// The worker finishes it.
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{
			ID: r.ID, Status: store.RunCanceled, Attempt: 2, StartedAt: sec(0), FinishedAt: sec(70), Error: "canceled",
		}))
		got, err = s.RequestCancel(ctx, "t1", r.ID, sec(80))
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, got.Status)
		require.Equal(t, utc(sec(70)), got.FinishedAt)
		require.Equal(t, "canceled", got.Error)
	})

	t.Run("CancelTerminal", func(t *testing.T) {
		s, ctx := setup(t)
		for _, status := range []store.RunStatus{store.RunSucceeded, store.RunFailed} {
			r := createRun(t, ctx, s, "t1")
			require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{
				ID: r.ID, Status: status, Output: js(`[{"type":"text","text":"done"}]`), Error: "e",
				Attempt: 1, Steps: 3, StartedAt: sec(1), FinishedAt: sec(9),
			}))
			before := getRun(t, ctx, s, "t1", r.ID)
			got, err := s.RequestCancel(ctx, "t1", r.ID, sec(20))
			require.NoError(t, err)
			require.Equal(t, before, got, "returned unchanged")
			require.Equal(t, before, getRun(t, ctx, s, "t1", r.ID), "and left unchanged")
		}
	})

	t.Run("CancelOtherTenant", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := s.RequestCancel(ctx, "t2", r.ID, sec(5))
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.RequestCancel(ctx, "t1", "nope", sec(5))
		require.ErrorIs(t, err, store.ErrNotFound)
		require.Equal(t, store.RunQueued, getRun(t, ctx, s, "t1", r.ID).Status, "untouched")

		// Nor is the cancel flag set: the run is claimable.
		_, err = claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		cancel, err := s.ExtendLease(ctx, r.ID, "w1", sec(40))
		require.NoError(t, err)
		require.False(t, cancel)
	})

	// expire creates a run claimed by owner whose lease ended at 10s.
	expire := func(t *testing.T, ctx context.Context, s Store[TTx], owner string) store.Run {
		t.Helper()
		r := createRun(t, ctx, s, "t1")
		got, err := claim(ctx, s, r.ID, owner, sec(10), sec(0))
		require.NoError(t, err)
		return got
	}

	t.Run("Reclaim", func(t *testing.T) {
		s, ctx := setup(t)
		expired := expire(t, ctx, s, "w1")

		live := createRun(t, ctx, s, "t1") // lease until 100s
		_, err := claim(ctx, s, live.ID, "w2", sec(100), sec(0))
		require.NoError(t, err)
		createRun(t, ctx, s, "t1") // queued
		done := expire(t, ctx, s, "w1")
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: done.ID, Status: store.RunSucceeded, Attempt: 1}))
		released := expire(t, ctx, s, "w1")
		require.NoError(t, s.ReleaseLease(ctx, released.ID, "w1"))
		_, err = s.RequestCancel(ctx, "t1", createRun(t, ctx, s, "t1").ID, sec(0)) // canceled while queued
		require.NoError(t, err)

		var got []store.Run
		n, err := s.ReclaimExpiredRuns(ctx, sec(20), func(fctx context.Context, tx TTx, r store.Run) error {
			require.NotNil(t, fctx)
			require.NotNil(t, tx, "fn gets the backend's transaction")
			got = append(got, r)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Len(t, got, 1)
		require.Equal(t, expired.ID, got[0].ID)
		require.Equal(t, store.RunRunning, got[0].Status)
		require.Equal(t, 1, got[0].Attempt)
		require.Equal(t, "t1", got[0].Tenant)

		// Once.
		n, err = s.ReclaimExpiredRuns(ctx, sec(20), func(context.Context, TTx, store.Run) error {
			t.Error("nothing left to reclaim")
			return nil
		})
		require.NoError(t, err)
		require.Zero(t, n)

		// The old owner lost the lease; anyone may claim the run, which
		// stays running meanwhile.
		require.Equal(t, store.RunRunning, getRun(t, ctx, s, "t1", expired.ID).Status)
		_, err = s.ExtendLease(ctx, expired.ID, "w1", sec(30))
		require.ErrorIs(t, err, store.ErrConflict)
		r, err := claim(ctx, s, expired.ID, "w3", sec(50), sec(20))
		require.NoError(t, err)
		require.Equal(t, 2, r.Attempt)

		// Later both leases have ended (w2's at 100s, w3's at 50s).
		var ids []string
		n, err = s.ReclaimExpiredRuns(ctx, sec(101), func(_ context.Context, _ TTx, r store.Run) error {
			ids = append(ids, r.ID)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.ElementsMatch(t, []string{live.ID, expired.ID}, ids)
	})

	t.Run("ReclaimFuncErrorRollsBack", func(t *testing.T) {
		s, ctx := setup(t)
		a, b := expire(t, ctx, s, "w1"), expire(t, ctx, s, "w2")
		boom := errors.New("boom")
		calls := 0
		n, err := s.ReclaimExpiredRuns(ctx, sec(20), func(context.Context, TTx, store.Run) error {
			calls++
			if calls == 2 {
				return boom
			}
			return nil
		})
		require.ErrorIs(t, err, boom)
		require.NotErrorIs(t, err, store.ErrConflict)
		require.NotErrorIs(t, err, store.ErrNotFound)
		require.Zero(t, n)
		require.Equal(t, 2, calls)

		// Both leases are still held, also the one fn accepted.
		_, err = claim(ctx, s, a.ID, "w1", sec(30), sec(5))
		require.NoError(t, err, "w1 still holds a")
		_, err = claim(ctx, s, b.ID, "w3", sec(30), sec(5))
		require.ErrorIs(t, err, store.ErrConflict, "w2 still holds b")
		_, err = s.ExtendLease(ctx, b.ID, "w2", sec(10))
		require.NoError(t, err)

		n, err = s.ReclaimExpiredRuns(ctx, sec(40), func(context.Context, TTx, store.Run) error { return nil })
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})

	t.Run("ReclaimCanceledContext", func(t *testing.T) {
		s, ctx := setup(t)
		r := expire(t, ctx, s, "w1")
		cctx, cancel := context.WithCancel(ctx)
		_, err := s.ReclaimExpiredRuns(cctx, sec(20), func(context.Context, TTx, store.Run) error {
			cancel()
			return context.Cause(cctx)
		})
		require.ErrorIs(t, err, context.Canceled)
		_, err = s.ExtendLease(ctx, r.ID, "w1", sec(30))
		require.NoError(t, err, "nothing was reclaimed")
	})

	t.Run("ReclaimConcurrently", func(t *testing.T) {
		// More expired runs than one call handles, several reclaimers each
		// calling until nothing is left: every run is reclaimed exactly once.
		s, ctx := setup(t)
		const runs, reclaimers = 130, 6
		want := map[string]bool{}
		for range runs {
			want[expire(t, ctx, s, "w1").ID] = true
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			seen  = map[string]int{}
			total int
			start = make(chan struct{})
		)
		for i := range reclaimers {
			wg.Go(func() {
				<-start
				for {
					var mine []string
					n, err := s.ReclaimExpiredRuns(ctx, sec(20), func(_ context.Context, tx TTx, r store.Run) error {
						if any(tx) == nil {
							return fmt.Errorf("reclaimer %d: nil tx", i)
						}
						mine = append(mine, r.ID)
						return nil
					})
					if !assertNoError(t, err) {
						return
					}
					if n != len(mine) {
						t.Errorf("reclaimer %d: returned %d, fn called for %d", i, n, len(mine))
					}
					mu.Lock()
					total += n
					for _, id := range mine {
						seen[id]++
					}
					mu.Unlock()
					if n == 0 {
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, runs, total)
		require.Len(t, seen, runs)
		for id, c := range seen {
			require.True(t, want[id], id)
			require.Equal(t, 1, c, "run %s reclaimed %d times", id, c)
		}
	})

	t.Run("ClaimConcurrently", func(t *testing.T) {
		// Workers racing for one queued run: exactly one gets it.
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		const n = 8
		var (
			wg            sync.WaitGroup
			mu            sync.Mutex
			won, conflict int
			start         = make(chan struct{})
		)
		for i := range n {
			wg.Go(func() {
				<-start
				_, err := claim(ctx, s, r.ID, fmt.Sprint("w", i), sec(30), sec(0))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, store.ErrConflict):
					conflict++
				default:
					t.Errorf("worker %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, won)
		require.Equal(t, n-1, conflict)
		require.Equal(t, 1, getRun(t, ctx, s, "t1", r.ID).Attempt)
	})

	t.Run("QueueStats", func(t *testing.T) {
		s, ctx := setup(t)
		qs, err := s.QueueStats(ctx)
		require.NoError(t, err)
		require.NotNil(t, qs.Depth)
		require.Empty(t, qs.Depth)
		require.True(t, qs.OldestQueuedAt.IsZero())
		require.Zero(t, qs.Running)

		mk := func(agent string, created time.Time) store.Run {
			r := store.Run{ID: newID("run"), Tenant: "t1", Agent: agent, Status: store.RunQueued, CreatedAt: created}
			require.NoError(t, s.CreateRun(ctx, r))
			return r
		}
		mk("a", sec(-10))
		mk("a", sec(-5))
		mk("b", sec(-7))
		mk("b", sec(-30)) // the oldest queued run
		// Older runs that are not queued (any more) don't count.
		c1, c2 := mk("b", sec(-40)), mk("c", sec(-50))
		for _, r := range []store.Run{c1, c2} {
			_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
			require.NoError(t, err)
		}
		_, err = s.RequestCancel(ctx, "t1", mk("d", sec(-60)).ID, sec(0))
		require.NoError(t, err)
		done := mk("e", sec(-70))
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: done.ID, Status: store.RunSucceeded}))

		qs, err = s.QueueStats(ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]int{"a": 2, "b": 2}, qs.Depth)
		require.Equal(t, utc(sec(-30)), qs.OldestQueuedAt)
		require.Equal(t, 2, qs.Running)
	})
}
