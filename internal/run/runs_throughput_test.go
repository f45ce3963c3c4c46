package run_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

// TestRunsThroughput measures queued runs per second end to end (submit →
// succeeded, one step, zero simulator latency) on each backend with one
// in-process worker. It is a measurement, not a check: it runs only with
// AGENTD_BENCH_RUNS=<number of runs> and logs its numbers.
//
// The worker runs with the default configuration (worker.concurrency and
// worker.poll_interval as agentd serve sets them) unless
// AGENTD_BENCH_WORKERS sets the slots. AGENTD_BENCH_SUBMITTERS (default 1)
// submits from that many goroutines at once, so that the submitter is not
// the limit (scripts/bench.sh uses 32). On PostgreSQL the store's pool is
// its default size unless AGENTD_BENCH_PG_POOL sets pool_max_conns.
//
//	AGENTD_BENCH_RUNS=500 AGENTD_BENCH_SUBMITTERS=32 AGENTD_TEST_POSTGRES_URL=... go test -run TestRunsThroughput -v ./internal/run/
func TestRunsThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("AGENTD_BENCH_RUNS"))
	if n <= 0 {
		t.Skip("set AGENTD_BENCH_RUNS=<runs> to measure run throughput")
	}
	// The store's default pool (postgres.DefaultPoolMaxConns) unless
	// AGENTD_BENCH_PG_POOL sets pool_max_conns.
	pool, _ := strconv.Atoi(os.Getenv("AGENTD_BENCH_PG_POOL"))
	runsPoolMaxConns = pool
	t.Cleanup(func() { runsPoolMaxConns = 10 })
	workers := config.DefaultWorkerConcurrency()
	if w, _ := strconv.Atoi(os.Getenv("AGENTD_BENCH_WORKERS")); w > 0 {
		workers = w
	}
	submitters := 1
	if s, _ := strconv.Atoi(os.Getenv("AGENTD_BENCH_SUBMITTERS")); s > 0 {
		submitters = s
	}
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		runs := &run.Runs{Service: env.service(nil), Store: env.st, Owner: "bench", LeaseTTL: 10 * time.Second, Log: env.log}
		q, err := env.newQueue(t.Context(), queue.Config{Executor: runs, Workers: workers, FetchPollInterval: config.DefaultPollInterval, Log: env.log})
		require.NoError(t, err)
		runs.Queue, runs.Webhooks = q, q
		require.NoError(t, q.Start(env.bg))
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = q.Stop(ctx)
		}()

		start := time.Now()
		ids := make([]string, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, submitters)
		for range submitters {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					r, _, err := runs.Submit(t.Context(), run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: fmt.Sprintf("bench %d", i)})
					if err != nil {
						errs <- fmt.Errorf("submit %d: %w", i, err)
						return
					}
					ids[i] = r.ID
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		submitted := time.Since(start)
		deadline := time.Now().Add(5 * time.Minute)
		for {
			qs, err := env.st.QueueStats(t.Context())
			require.NoError(t, err)
			depth := 0
			for _, d := range qs.Depth {
				depth += d
			}
			if depth == 0 && qs.Running == 0 {
				break
			}
			require.True(t, time.Now().Before(deadline), "runs still queued or running after 5 minutes")
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		for _, id := range ids {
			r, err := env.st.GetRun(t.Context(), runsTenant, id)
			require.NoError(t, err)
			require.Equal(t, store.RunSucceeded, r.Status, "run %s: %s", id, r.Error)
		}
		t.Logf("%s: %d runs, %d workers, %d submitters: submitted in %s (%.0f/s), all succeeded in %s: %.1f runs/s end to end",
			backend, n, workers, submitters, submitted.Round(time.Millisecond), float64(n)/submitted.Seconds(),
			elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	})
}
