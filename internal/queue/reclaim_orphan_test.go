package queue_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// A run whose worker died is reclaimed (lease cleared, a new job); if the
// worker that fetches the new job dies too before claiming the run, the
// run is running, held by nobody, with only dead workers' jobs: the
// reclaimer enqueues it again once that job is OrphanedJobAfter old, and
// not while a job of it waits. Found by agentd chaos r1: such runs waited
// for River's one-hour rescuer.
func TestReclaimRunOrphanedAfterAReclaim(t *testing.T) {
	for name, open := range map[string]func(*testing.T) backend{"sqlite": sqliteBackend, "postgres": postgresBackend} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := open(t)
			ctx := context.Background()
			run := store.Run{ID: "run_twice_orphaned", Tenant: "t1", Agent: "demo", Status: store.RunQueued,
				Input: json.RawMessage(`{}`), CreatedAt: time.Now()}
			require.NoError(t, b.queue.CreateRun(ctx, run))
			reclaim := func(now time.Time) int {
				n, err := b.queue.ReclaimExpiredRuns(ctx, now)
				require.NoError(t, err)
				return n
			}
			now := time.Now()
			_, err := b.store.ClaimRun(ctx, store.ClaimRunParams{ID: run.ID, Owner: "w1", LeaseUntil: now.Add(3 * time.Second), Now: now})
			require.NoError(t, err)
			b.orphan(t) // w1's job: fetched long ago
			require.Equal(t, 1, reclaim(now.Add(4*time.Second)), "w1 stopped renewing: reclaimed once, not also as an orphan")
			require.Zero(t, reclaim(now.Add(5*time.Second)), "its new job waits: nothing to do")

			b.orphan(t) // the new job too: fetched by w2, which died before claiming
			require.Equal(t, 1, reclaim(now.Add(6*time.Second)), "held by nobody, every job dead: enqueued again")
			require.Zero(t, reclaim(now.Add(7*time.Second)), "once: its new job waits")

			got, err := b.store.ClaimRun(ctx, store.ClaimRunParams{ID: run.ID, Owner: "w3", LeaseUntil: now.Add(time.Minute), Now: now.Add(8 * time.Second)})
			require.NoError(t, err)
			require.Equal(t, 2, got.Attempt)
			require.Zero(t, reclaim(now.Add(9*time.Second)), "claimed: not an orphan")
		})
	}
}
