package run_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
//	AGENTD_BENCH_RUNS=500 AGENTD_TEST_POSTGRES_URL=... go test -run TestRunsThroughput -v ./internal/run/
func TestRunsThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("AGENTD_BENCH_RUNS"))
	if n <= 0 {
		t.Skip("set AGENTD_BENCH_RUNS=<runs> to measure run throughput")
	}
	workers := 20
	if w, _ := strconv.Atoi(os.Getenv("AGENTD_BENCH_WORKERS")); w > 0 {
		workers = w
	}
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		runs := &run.Runs{Service: env.service(nil), Store: env.st, Owner: "bench", LeaseTTL: 10 * time.Second, Log: env.log}
		q, err := env.newQueue(t.Context(), queue.Config{Executor: runs, Workers: workers, FetchPollInterval: 50 * time.Millisecond, Log: env.log})
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
		for i := range n {
			r, _, err := runs.Submit(t.Context(), run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: fmt.Sprintf("bench %d", i)})
			require.NoError(t, err)
			ids[i] = r.ID
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
		t.Logf("%s: %d runs, %d workers: submitted in %s (%.0f/s), all succeeded in %s: %.1f runs/s end to end",
			backend, n, workers, submitted.Round(time.Millisecond), float64(n)/submitted.Seconds(),
			elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	})
}
