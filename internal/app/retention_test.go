package app

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
)

func loopNames(a *App) []string {
	var names []string
	for _, l := range a.loops {
		names = append(names, l.name)
	}
	return names
}

// The retention sweeper runs with the process: a finished run past
// retention.runs is deleted, a queued one of the same age stays, and the
// rows removed are counted.
func TestRetentionSweeperRuns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, _ := newTestAppIn(t, dir, "")
	require.Contains(t, loopNames(a), "retention")

	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	old := time.Now().Add(-60 * 24 * time.Hour)
	require.NoError(t, st.CreateRun(ctx, store.Run{ID: "run_done", Tenant: "default", Agent: "demo",
		Status: store.RunSucceeded, CreatedAt: old, FinishedAt: old}))
	require.NoError(t, st.SaveStep(ctx, nil, []store.Event{{RunID: "run_done", Seq: 1, Type: "done", Data: []byte(`{}`)}}))
	require.NoError(t, st.CreateRun(ctx, store.Run{ID: "run_queued", Tenant: "default", Agent: "demo",
		Status: store.RunQueued, CreatedAt: old}))

	runCtx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(runCtx) }()
	defer func() {
		cancel()
		require.NoError(t, <-errc)
	}()
	waitReady(t, a)
	require.Eventually(t, func() bool {
		_, err := st.GetRun(ctx, "default", "run_done")
		return err != nil
	}, 10*time.Second, 20*time.Millisecond)
	_, err = st.GetRun(ctx, "default", "run_queued")
	require.NoError(t, err)
	for _, table := range []string{"run_events", "runs"} {
		require.Eventually(t, func() bool { // counted just after the delete commits
			var m dto.Metric
			require.NoError(t, a.metrics.RetentionDeleted.WithLabelValues(table).Write(&m))
			return m.GetCounter().GetValue() == 1
		}, 5*time.Second, 10*time.Millisecond, table)
	}
}

func TestRetentionDisabled(t *testing.T) {
	t.Parallel()
	a, _ := newTestAppIn(t, t.TempDir(), "retention:\n  disabled: true\n")
	require.NotContains(t, loopNames(a), "retention")
	require.Contains(t, loopNames(a), "sweeper")
}
