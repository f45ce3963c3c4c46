package run

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// fakeRetention has rows left per table and records each call's cutoff
// and limit.
type fakeRetention struct {
	left    map[string]int
	fail    map[string]error
	cutoffs map[string][]time.Time
	limits  []int
}

func (f *fakeRetention) del(table string, before time.Time, limit int) (int, error) {
	f.cutoffs[table] = append(f.cutoffs[table], before)
	f.limits = append(f.limits, limit)
	if err := f.fail[table]; err != nil {
		return 0, err
	}
	n := min(f.left[table], limit)
	f.left[table] -= n
	return n, nil
}

func (f *fakeRetention) DeleteRunEvents(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableRunEvents, t, n)
}
func (f *fakeRetention) DeleteCheckpoints(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableCheckpoints, t, n)
}
func (f *fakeRetention) DeleteRuns(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableRuns, t, n)
}
func (f *fakeRetention) RollUpUsage(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableUsage, t, n)
}
func (f *fakeRetention) DeleteAudit(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableAudit, t, n)
}
func (f *fakeRetention) DeleteFeedback(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableFeedback, t, n)
}
func (f *fakeRetention) DeleteSDKSessions(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableSDKSessions, t, n)
}
func (f *fakeRetention) DeleteAgentDefinitions(_ context.Context, t time.Time, n int) (int, error) {
	return f.del(TableAgentDefs, t, n)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRetentionSweepBatchesCutoffsAndMetric(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	f := &fakeRetention{
		left: map[string]int{TableRunEvents: 25, TableCheckpoints: 10, TableRuns: 3, TableUsage: 20, TableAudit: 0,
			TableFeedback: 7, TableSDKSessions: 4, TableAgentDefs: 2},
		fail:    map[string]error{},
		cutoffs: map[string][]time.Time{},
	}
	m := observe.NewMetrics("test")
	s := &RetentionSweeper{
		Store: f, RunEvents: 7 * day, Checkpoints: 60 * day, Runs: 30 * day, Usage: 90 * day, Audit: 365 * day,
		AgentDefinitions: 3 * day, BatchSize: 10, Interval: time.Hour, Log: discard(), Metrics: m, Now: func() time.Time { return now },
	}
	r := s.SweepOnce(t.Context())
	require.Equal(t, RetentionResult{RunEvents: 25, Checkpoints: 10, Runs: 3, Usage: 20, Audit: 0, Feedback: 7, SDKSessions: 4,
		AgentDefinitions: 2}, r)

	// Batches of 10 until one comes back short: 10+10+5; 10+0; 3; 10+10+0; 0.
	require.Len(t, f.cutoffs[TableRunEvents], 3)
	require.Len(t, f.cutoffs[TableCheckpoints], 2)
	require.Len(t, f.cutoffs[TableRuns], 1)
	require.Len(t, f.cutoffs[TableUsage], 3)
	require.Len(t, f.cutoffs[TableAudit], 1)
	for _, l := range f.limits {
		require.Equal(t, 10, l)
	}
	// Cutoffs; checkpoints (60 days) go with their run (30 days).
	require.Equal(t, now.Add(-7*day), f.cutoffs[TableRunEvents][0])
	require.Equal(t, now.Add(-30*day), f.cutoffs[TableCheckpoints][0])
	require.Equal(t, now.Add(-30*day), f.cutoffs[TableRuns][0])
	require.Equal(t, now.Add(-90*day), f.cutoffs[TableUsage][0])
	require.Equal(t, now.Add(-365*day), f.cutoffs[TableAudit][0])
	require.Equal(t, now.Add(-90*day), f.cutoffs[TableFeedback][0], "feedback goes with usage")
	require.Equal(t, now.Add(-30*day), f.cutoffs[TableSDKSessions][0], "SDK sessions go with runs")
	require.Equal(t, now.Add(-3*day), f.cutoffs[TableAgentDefs][0], "definitions count from their last store")

	for table, want := range map[string]float64{TableRunEvents: 25, TableCheckpoints: 10, TableRuns: 3, TableUsage: 20, TableFeedback: 7, TableSDKSessions: 4, TableAgentDefs: 2} {
		var got dto.Metric
		require.NoError(t, m.RetentionDeleted.WithLabelValues(table).Write(&got))
		require.Equal(t, want, got.GetCounter().GetValue(), table)
	}
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	series := 0
	for _, mf := range mfs {
		if mf.GetName() == "agentd_retention_rows_deleted_total" {
			series = len(mf.GetMetric())
		}
	}
	require.Equal(t, 7, series, "no series for a table with nothing deleted")
}

func TestRetentionSweepGoesOnAfterAnError(t *testing.T) {
	f := &fakeRetention{
		left:    map[string]int{TableRunEvents: 5, TableAudit: 2},
		fail:    map[string]error{TableCheckpoints: errors.New("boom"), TableRuns: errors.New("boom")},
		cutoffs: map[string][]time.Time{},
	}
	s := &RetentionSweeper{Store: f, RunEvents: time.Hour, Checkpoints: time.Hour, Runs: time.Hour, Usage: time.Hour,
		Audit: time.Hour, BatchSize: 100, Interval: time.Hour, Log: discard()}
	r := s.SweepOnce(t.Context())
	require.Equal(t, RetentionResult{RunEvents: 5, Audit: 2}, r)
	require.Len(t, f.cutoffs[TableCheckpoints], 1, "a failed batch is not retried in the same sweep")
}

func TestRetentionSweepStopsWithContext(t *testing.T) {
	f := &fakeRetention{left: map[string]int{TableRunEvents: 1 << 30}, fail: map[string]error{}, cutoffs: map[string][]time.Time{}}
	s := &RetentionSweeper{Store: f, RunEvents: time.Hour, Checkpoints: time.Hour, Runs: time.Hour, Usage: time.Hour,
		Audit: time.Hour, BatchSize: 1, Interval: time.Hour, Log: discard()}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestRetentionSweepOnStore sweeps a real store: finished runs go with
// their events and checkpoints, a queued and a running run stay, usage is
// rolled up with its totals kept.
func TestRetentionSweepOnStore(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(ctx))

	now := time.Now().UTC()
	const day = 24 * time.Hour
	mk := func(id string, status store.RunStatus, finished time.Time) {
		// Each run was submitted under a definition of its own.
		require.NoError(t, st.PutAgentDefinition(ctx, "def_"+id, "a", []byte(`{"agent":"a"}`)))
		require.NoError(t, st.CreateRun(ctx, store.Run{ID: id, Tenant: "t", Agent: "a", Status: status,
			CreatedAt: now.Add(-100 * day), FinishedAt: finished, AgentDigest: "def_" + id}))
		var evs []store.Event
		for i := int64(1); i <= 5; i++ {
			evs = append(evs, store.Event{RunID: id, Seq: i, Type: "step", Data: []byte(`{}`)})
		}
		require.NoError(t, st.SaveStep(ctx, &store.Checkpoint{RunID: id, Step: 1, State: []byte(`{}`)}, evs))
	}
	mk("run_old", store.RunSucceeded, now.Add(-40*day))
	mk("run_queued", store.RunQueued, time.Time{})
	mk("run_running", store.RunRunning, time.Time{})
	for i := range 3 {
		require.NoError(t, st.AppendUsage(ctx, store.UsageRecord{Time: now.Add(-100*day + time.Duration(i)*time.Minute),
			Tenant: "t", Agent: "a", Model: "m", RunID: "run_old", InputTokens: 10, CostUSD: money.FromUSD(0.5)}))
	}

	s := &RetentionSweeper{Store: st, RunEvents: 7 * day, Checkpoints: 7 * day, Runs: 30 * day, Usage: 90 * day,
		Audit: 365 * day, AgentDefinitions: time.Millisecond, BatchSize: 2, Interval: time.Hour, Log: discard(),
		Metrics: observe.NewMetrics("test")}
	time.Sleep(5 * time.Millisecond) // the definitions are older than AgentDefinitions
	r := s.SweepOnce(ctx)
	require.Equal(t, RetentionResult{RunEvents: 5, Checkpoints: 1, Runs: 1, Usage: 3, AgentDefinitions: 1}, r,
		"run_old's definition goes in the same sweep as run_old")
	_, err = st.GetAgentDefinition(ctx, "def_run_old")
	require.ErrorIs(t, err, store.ErrNotFound)

	_, err = st.GetRun(ctx, "t", "run_old")
	require.ErrorIs(t, err, store.ErrNotFound)
	for _, id := range []string{"run_queued", "run_running"} {
		_, err := st.GetRun(ctx, "t", id)
		require.NoError(t, err)
		evs, err := st.ListEvents(ctx, id, 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 5, id)
		_, err = st.LatestCheckpoint(ctx, id)
		require.NoError(t, err, id)
		_, err = st.GetAgentDefinition(ctx, "def_"+id)
		require.NoError(t, err, "the definition of %s", id)
	}
	g, err := st.SumUsage(ctx, store.UsageQuery{Tenant: "t", GroupBy: store.UsageByAgent})
	require.NoError(t, err)
	require.Len(t, g, 1)
	require.Equal(t, int64(3), g[0].Requests)
	require.Equal(t, int64(30), g[0].InputTokens)
	require.Equal(t, money.FromUSD(1.5), g[0].CostUSD)

	require.Equal(t, RetentionResult{}, s.SweepOnce(ctx), "nothing left to delete")
}
