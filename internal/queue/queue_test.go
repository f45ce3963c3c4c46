package queue_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
)

type backend struct {
	store interface {
		store.Store
		store.RunLeases
	}
	queue queue.Queue
	// orphan makes the run's job look fetched by a worker that died long ago.
	orphan func(t *testing.T)
}

func sqliteBackend(t *testing.T) backend {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "q.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))
	q, err := queue.NewSQLite(ctx, st, queue.Config{Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return backend{store: st, queue: q, orphan: func(t *testing.T) {
		_, err := st.WriteDB().Exec(`UPDATE river_job SET state = 'running', attempted_at = '2000-01-01 00:00:00.000'`)
		require.NoError(t, err)
	}}
}

func postgresBackend(t *testing.T) backend {
	ctx := context.Background()
	st, err := postgres.Open(ctx, pgtest.Schema(t, pgtest.BaseURL(t), 4))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))
	q, err := queue.NewPostgres(ctx, st, queue.Config{Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return backend{store: st, queue: q, orphan: func(t *testing.T) {
		_, err := st.Pool().Exec(ctx, `UPDATE river_job SET state = 'running', attempted_at = now() - interval '1 hour'`)
		require.NoError(t, err)
	}}
}

// A worker that died between fetching a run's job and claiming the run
// leaves the run queued with a running job: the reclaimer enqueues it again,
// once per store.OrphanedJobAfter.
func TestReclaimOrphanedJobs(t *testing.T) {
	for name, open := range map[string]func(*testing.T) backend{"sqlite": sqliteBackend, "postgres": postgresBackend} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := open(t)
			ctx := context.Background()
			run := store.Run{ID: "run_orphan", Tenant: "t1", Agent: "demo", Status: store.RunQueued,
				Input: json.RawMessage(`{}`), CreatedAt: time.Now()}
			require.NoError(t, b.queue.CreateRun(ctx, run))
			reclaim := func(now time.Time) int {
				n, err := b.queue.ReclaimExpiredRuns(ctx, now)
				require.NoError(t, err)
				return n
			}
			require.Zero(t, reclaim(time.Now()), "a job nobody fetched is not orphaned")
			b.orphan(t)
			now := time.Now()
			require.Equal(t, 1, reclaim(now), "the only run, run_orphan")
			require.Zero(t, reclaim(now.Add(time.Second)), "re-enqueued at most once per OrphanedJobAfter")
			require.Equal(t, 1, reclaim(now.Add(store.OrphanedJobAfter+time.Second)))

			// The run is still claimable by exactly one worker.
			got, err := b.store.ClaimRun(ctx, store.ClaimRunParams{ID: run.ID, Owner: "w1", LeaseUntil: now.Add(time.Minute), Now: now})
			require.NoError(t, err)
			require.Equal(t, 1, got.Attempt)
			_, err = b.store.ClaimRun(ctx, store.ClaimRunParams{ID: run.ID, Owner: "w2", LeaseUntil: now.Add(time.Minute), Now: now})
			require.ErrorIs(t, err, store.ErrConflict)
		})
	}
}
