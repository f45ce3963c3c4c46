package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Retention the suite pins down beyond its doc comments:
//   - every backend implements store.Retention;
//   - a queued or running run, however old, keeps itself, its events and
//     its checkpoints; a run that finished after the cutoff too;
//   - DeleteRuns skips a finished run that still has events or
//     checkpoints;
//   - each call deletes at most limit rows; a limit <= 0 is an error;
//   - RollUpUsage leaves SumUsage's answers unchanged (every grouping),
//     keeps other tenants apart and counts a rolled-up day at its start;
//   - DeleteAudit deletes old rows and refuses a cutoff younger than
//     store.MinAuditRetention;
//   - DeleteAgentDefinitions deletes a definition only when no run (queued,
//     running or finished) has its digest and it was last stored before
//     the cutoff; storing a digest again moves that time.

func exerciseRetention[TTx any](t *testing.T, setup setupFunc[TTx]) {
	retention := func(t *testing.T, s Store[TTx]) store.Retention {
		t.Helper()
		r, ok := s.(store.Retention)
		require.True(t, ok, "%T does not implement store.Retention", s)
		return r
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	cutoff := now.Add(-7 * 24 * time.Hour)

	// mkRun creates a run in status st (finished at finished when not
	// zero), created 30 days ago, with events 1..nEv and a checkpoint.
	mkRun := func(t *testing.T, s Store[TTx], st store.RunStatus, finished time.Time, nEv int64) store.Run {
		t.Helper()
		ctx := t.Context()
		r := store.Run{
			ID: newID("run"), Tenant: "t1", Agent: "agent-a", Status: st,
			Input: js(`{"messages":[]}`), CreatedAt: now.Add(-30 * 24 * time.Hour), FinishedAt: finished,
		}
		if st == store.RunRunning {
			r.StartedAt = r.CreatedAt
		}
		require.NoError(t, s.CreateRun(ctx, r))
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`{}`), CreatedAt: r.CreatedAt},
			events(r.ID, 1, nEv)))
		return r
	}
	requireIntact := func(t *testing.T, s Store[TTx], r store.Run, nEv int) {
		t.Helper()
		ctx := t.Context()
		_, err := s.GetRun(ctx, r.Tenant, r.ID)
		require.NoError(t, err, "run %s (%s)", r.ID, r.Status)
		evs, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, nEv, "events of run %s (%s)", r.ID, r.Status)
		_, err = s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err, "checkpoint of run %s (%s)", r.ID, r.Status)
	}
	old := now.Add(-10 * 24 * time.Hour)

	t.Run("UnfinishedRunsAreNeverTouched", func(t *testing.T) {
		s, ctx := setup(t)
		rt := retention(t, s)
		queued := mkRun(t, s, store.RunQueued, time.Time{}, 3)
		running := mkRun(t, s, store.RunRunning, time.Time{}, 4)
		recent := mkRun(t, s, store.RunSucceeded, now.Add(-time.Hour), 2)
		done := mkRun(t, s, store.RunSucceeded, old, 3)
		failed := mkRun(t, s, store.RunFailed, old, 2)
		canceled := mkRun(t, s, store.RunCanceled, old, 1)

		// A finished run with events or checkpoints left is not deleted.
		n, err := rt.DeleteRuns(ctx, cutoff, 1000)
		require.NoError(t, err)
		require.Zero(t, n)

		n, err = rt.DeleteRunEvents(ctx, cutoff, 1000)
		require.NoError(t, err)
		require.Equal(t, 3+2+1, n)
		n, err = rt.DeleteRuns(ctx, cutoff, 1000)
		require.NoError(t, err)
		require.Zero(t, n, "checkpoints are still there")
		n, err = rt.DeleteCheckpoints(ctx, cutoff, 1000)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		n, err = rt.DeleteRuns(ctx, cutoff, 1000)
		require.NoError(t, err)
		require.Equal(t, 3, n)

		for _, r := range []store.Run{done, failed, canceled} {
			_, err := s.GetRun(ctx, r.Tenant, r.ID)
			require.ErrorIs(t, err, store.ErrNotFound, r.Status)
			evs, err := s.ListEvents(ctx, r.ID, 0, 0)
			require.NoError(t, err)
			require.Empty(t, evs)
		}
		requireIntact(t, s, queued, 3)
		requireIntact(t, s, running, 4)
		requireIntact(t, s, recent, 2)

		// Even a cutoff in the future leaves unfinished runs alone.
		future := now.Add(24 * time.Hour)
		for _, del := range []func() (int, error){
			func() (int, error) { return rt.DeleteRunEvents(ctx, future, 1000) },
			func() (int, error) { return rt.DeleteCheckpoints(ctx, future, 1000) },
			func() (int, error) { return rt.DeleteRuns(ctx, future, 1000) },
		} {
			_, err := del()
			require.NoError(t, err)
		}
		requireIntact(t, s, queued, 3)
		requireIntact(t, s, running, 4)
		_, err = s.GetRun(ctx, recent.Tenant, recent.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Batches", func(t *testing.T) {
		s, ctx := setup(t)
		rt := retention(t, s)
		r := mkRun(t, s, store.RunSucceeded, old, 5)
		var got []int
		for {
			n, err := rt.DeleteRunEvents(ctx, cutoff, 2)
			require.NoError(t, err)
			got = append(got, n)
			if n < 2 {
				break
			}
		}
		require.Equal(t, []int{2, 2, 1}, got)
		evs, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Empty(t, evs)
		for _, del := range []func(context.Context, time.Time, int) (int, error){
			rt.DeleteRunEvents, rt.DeleteCheckpoints, rt.DeleteRuns, rt.RollUpUsage, rt.DeleteAudit,
		} {
			_, err := del(ctx, now.Add(-400*24*time.Hour), 0)
			require.Error(t, err, "limit 0")
		}
	})

	t.Run("UsageRolledUpBeforeDrop", func(t *testing.T) {
		s, ctx := setup(t)
		rt := retention(t, s)
		u, ok := s.(store.Usage)
		require.True(t, ok)
		day := func(d int, h time.Duration) time.Time {
			return now.Truncate(24*time.Hour).AddDate(0, 0, -d).Add(h)
		}
		rows := []store.UsageRecord{
			{Time: day(100, time.Hour), Tenant: "t1", Agent: "a1", Model: "m1", RunID: "r1", InputTokens: 100, OutputTokens: 10, CacheCreationInputTokens: 5, CacheReadInputTokens: 1, CostUSD: money.FromUSD(0.25)},
			{Time: day(100, 20*time.Hour), Tenant: "t1", Agent: "a1", Model: "m1", RunID: "r2", InputTokens: 50, OutputTokens: 5, CostUSD: money.FromUSD(0.125)},
			{Time: day(100, 21*time.Hour), Tenant: "t1", Key: "key_1", Agent: "a2", Model: "m2", RunID: "r3", InputTokens: 7, CostUSD: money.FromUSD(0.5)},
			{Time: day(95, 0), Tenant: "t1", Agent: "a1", Model: "m2", RunID: "r4", InputTokens: 1, OutputTokens: 1, CostUSD: money.FromUSD(1)},
			{Time: day(95, 0), Tenant: "t2", Agent: "a1", Model: "m1", RunID: "r9", InputTokens: 999, CostUSD: money.FromUSD(9)},
			// Recent rows stay as they are.
			{Time: day(1, time.Hour), Tenant: "t1", Agent: "a1", Model: "m1", RunID: "r5", InputTokens: 3, CostUSD: money.FromUSD(0.375)},
			{Time: day(0, 0), Tenant: "t1", Key: "key_1", Agent: "a2", Model: "m1", RunID: "r6", Cached: true},
		}
		for _, r := range rows {
			require.NoError(t, u.AppendUsage(ctx, r))
		}
		queries := func() []store.UsageQuery {
			var qs []store.UsageQuery
			for _, by := range []string{store.UsageByAgent, store.UsageByModel, store.UsageByKey, store.UsageByDay} {
				for _, tenant := range []string{"t1", "t2"} {
					qs = append(qs,
						store.UsageQuery{Tenant: tenant, GroupBy: by},
						store.UsageQuery{Tenant: tenant, GroupBy: by, From: day(100, 0), To: day(95, 0)},
						store.UsageQuery{Tenant: tenant, GroupBy: by, From: day(95, 0)},
						store.UsageQuery{Tenant: tenant, GroupBy: by, To: day(1, 0)})
				}
			}
			return qs
		}
		sums := func() [][]store.UsageGroup {
			var out [][]store.UsageGroup
			for _, q := range queries() {
				g, err := u.SumUsage(ctx, q)
				require.NoError(t, err)
				out = append(out, g)
			}
			return out
		}
		before := sums()

		ninety := now.Add(-90 * 24 * time.Hour)
		var got []int
		for {
			n, err := rt.RollUpUsage(ctx, ninety, 2)
			require.NoError(t, err)
			got = append(got, n)
			if n < 2 {
				break
			}
		}
		require.Equal(t, []int{2, 2, 1}, got)
		require.Equal(t, before, sums(), "totals unchanged by the roll-up")

		// The raw rows are gone: nothing older than the cutoff is left to
		// roll up, and a range inside a rolled-up day (not containing its
		// start) no longer sees its rows.
		n, err := rt.RollUpUsage(ctx, ninety, 2)
		require.NoError(t, err)
		require.Zero(t, n)
		g, err := u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent, From: day(100, time.Minute), To: day(99, 0)})
		require.NoError(t, err)
		require.Empty(t, g)
		g, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByDay, From: day(100, 0), To: day(100, time.Minute)})
		require.NoError(t, err)
		require.Len(t, g, 1)
		require.Equal(t, int64(3), g[0].Requests)
		require.Equal(t, int64(157), g[0].InputTokens)
	})

	t.Run("Audit", func(t *testing.T) {
		s, ctx := setup(t)
		rt := retention(t, s)
		a, ok := s.(store.Audit)
		require.True(t, ok)
		run := newID("run")
		entry := func(ago time.Duration, id string) store.AuditEntry {
			return store.AuditEntry{Time: now.Add(-ago), Tenant: "t1", Agent: "ag", RunID: run, Step: 1, ToolUseID: id,
				Tool: "kv_put", Phase: store.AuditCall, IdempotencyKey: id, Outcome: "started"}
		}
		for _, e := range []store.AuditEntry{
			entry(400*24*time.Hour, "old1"), entry(366*24*time.Hour, "old2"),
			entry(364*24*time.Hour, "keep1"), entry(time.Hour, "keep2"),
		} {
			require.NoError(t, a.AppendAudit(ctx, e))
		}
		_, err := rt.DeleteAudit(ctx, now.Add(-time.Hour), 1000)
		require.Error(t, err, "younger than MinAuditRetention")
		n, err := rt.DeleteAudit(ctx, now.Add(-365*24*time.Hour), 1)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = rt.DeleteAudit(ctx, now.Add(-365*24*time.Hour), 1000)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		left, err := a.ListAudit(ctx, "t1", run)
		require.NoError(t, err)
		require.Len(t, left, 2)
		require.Equal(t, "keep1", left[0].ToolUseID)
		require.Equal(t, "keep2", left[1].ToolUseID)
	})

	t.Run("AgentDefinitions", func(t *testing.T) {
		s, ctx := setup(t)
		rt := retention(t, s)
		defs, ok := s.(store.AgentDefinitions)
		require.True(t, ok, "%T does not implement store.AgentDefinitions", s)
		put := func(digest string) {
			t.Helper()
			require.NoError(t, defs.PutAgentDefinition(ctx, digest, "agent-a", js(`{"agent":"agent-a","model":"m"}`)))
		}
		stored := func(digest string) bool {
			t.Helper()
			_, err := defs.GetAgentDefinition(ctx, digest)
			if errors.Is(err, store.ErrNotFound) {
				return false
			}
			require.NoError(t, err)
			return true
		}
		mk := func(st store.RunStatus, digest string, finished time.Time) store.Run {
			t.Helper()
			r := store.Run{ID: newID("run"), Tenant: "t1", Agent: "agent-a", Status: st, Input: js(`{}`),
				CreatedAt: now.Add(-30 * 24 * time.Hour), FinishedAt: finished, AgentDigest: digest}
			require.NoError(t, s.CreateRun(ctx, r))
			return r
		}
		queued, running, finished := newID("def"), newID("def"), newID("def")
		unused1, unused2 := newID("def"), newID("def")
		for _, d := range []string{queued, running, finished, unused1, unused2} {
			put(d)
		}
		mk(store.RunQueued, queued, time.Time{})
		mk(store.RunRunning, running, time.Time{})
		mk(store.RunSucceeded, finished, old)
		mk(store.RunSucceeded, "", old) // a run without a digest references nothing

		// Every definition was stored just now: younger than the cutoff,
		// none goes, referenced or not.
		n, err := rt.DeleteAgentDefinitions(ctx, time.Now().Add(-time.Hour), 1000)
		require.NoError(t, err)
		require.Zero(t, n)
		require.True(t, stored(unused1))

		// All stored before the cutoff: the two no run references go, at
		// most limit per call.
		later := time.Now().Add(time.Hour)
		n, err = rt.DeleteAgentDefinitions(ctx, later, 1)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = rt.DeleteAgentDefinitions(ctx, later, 1000)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = rt.DeleteAgentDefinitions(ctx, later, 1000)
		require.NoError(t, err)
		require.Zero(t, n)
		require.False(t, stored(unused1))
		require.False(t, stored(unused2))
		for _, d := range []string{queued, running, finished} {
			require.True(t, stored(d), "a definition a run references survives")
		}

		// Once its last run is deleted (the runs sweep), the definition goes.
		n, err = rt.DeleteRuns(ctx, cutoff, 1000)
		require.NoError(t, err)
		require.Equal(t, 2, n, "the two finished runs")
		n, err = rt.DeleteAgentDefinitions(ctx, later, 1000)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.False(t, stored(finished))
		require.True(t, stored(queued))
		require.True(t, stored(running))

		// Storing a digest again moves the time it was last stored.
		again := newID("def")
		put(again)
		time.Sleep(5 * time.Millisecond)
		between := time.Now()
		time.Sleep(5 * time.Millisecond)
		put(again)
		n, err = rt.DeleteAgentDefinitions(ctx, between, 1000)
		require.NoError(t, err)
		require.Zero(t, n, "stored again after the cutoff")
		require.True(t, stored(again))

		_, err = rt.DeleteAgentDefinitions(ctx, later, 0)
		require.Error(t, err, "limit 0")
	})
}
