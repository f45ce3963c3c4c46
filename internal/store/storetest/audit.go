package storetest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Audit the suite pins down beyond its doc comments:
//   - every backend implements store.Audit;
//   - AppendAudit sets a zero Time to now; Time round-trips to the
//     microsecond, in UTC; Duration to the microsecond;
//   - ids increase in write order, also under concurrent writers;
//   - ListAudit is tenant-scoped and returns an empty (non-nil) slice for an
//     unknown run.

func exerciseAudit[TTx any](t *testing.T, setup setupFunc[TTx]) {
	audit := func(t *testing.T, s Store[TTx]) store.Audit {
		t.Helper()
		a, ok := s.(store.Audit)
		require.True(t, ok, "%T does not implement store.Audit", s)
		return a
	}
	t0 := at("2025-06-01T10:00:00.123456Z")

	t.Run("AppendAndList", func(t *testing.T) {
		s, ctx := setup(t)
		a := audit(t, s)
		run := newID("run")
		call := store.AuditEntry{
			Time: t0, Tenant: "t1", Agent: "ag", RunID: run, Step: 2, ToolUseID: "toolu_1", Tool: "kv_put",
			Phase: store.AuditCall, IdempotencyKey: run + ":2:toolu_1", Input: json.RawMessage(`{"key":"a", "value":"[redacted]"}`),
			Outcome: "started",
		}
		res := call
		res.Phase, res.Time, res.Outcome, res.Error, res.Input = store.AuditResult, t0.Add(1500*time.Microsecond), "tool_error", "boom", nil
		res.Duration = 1234567 * time.Microsecond
		require.NoError(t, a.AppendAudit(ctx, call))
		require.NoError(t, a.AppendAudit(ctx, res))
		// Another tenant's row of the same run id stays invisible.
		other := call
		other.Tenant = "t2"
		require.NoError(t, a.AppendAudit(ctx, other))

		got, err := a.ListAudit(ctx, "t1", run)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Less(t, got[0].ID, got[1].ID)
		for i, want := range []store.AuditEntry{call, res} {
			want.ID = got[i].ID
			want.Time = utc(want.Time)
			require.Equal(t, want, got[i])
		}

		got, err = a.ListAudit(ctx, "t2", run)
		require.NoError(t, err)
		require.Len(t, got, 1)

		got, err = a.ListAudit(ctx, "t1", newID("run"))
		require.NoError(t, err)
		require.NotNil(t, got)
		require.Empty(t, got)
	})

	t.Run("ZeroTimeIsNow", func(t *testing.T) {
		s, ctx := setup(t)
		a := audit(t, s)
		run := newID("run")
		before := time.Now().Add(-time.Second)
		require.NoError(t, a.AppendAudit(ctx, store.AuditEntry{Tenant: "t1", RunID: run, Tool: "x", Phase: store.AuditCall, Outcome: "started"}))
		got, err := a.ListAudit(ctx, "t1", run)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.WithinRange(t, got[0].Time, before, time.Now().Add(time.Second))
		require.Equal(t, time.UTC, got[0].Time.Location())
		require.Nil(t, got[0].Input)
	})

	t.Run("ConcurrentWritersKeepOrder", func(t *testing.T) {
		s, ctx := setup(t)
		a := audit(t, s)
		run := newID("run")
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					e := store.AuditEntry{Tenant: "t1", RunID: run, Step: i, Tool: "x", Phase: store.AuditCall, Outcome: "started", ToolUseID: newID("tu")}
					require.NoError(t, a.AppendAudit(ctx, e))
				}
			}()
		}
		wg.Wait()
		got, err := a.ListAudit(ctx, "t1", run)
		require.NoError(t, err)
		require.Len(t, got, 40)
		for i := 1; i < len(got); i++ {
			require.Less(t, got[i-1].ID, got[i].ID)
		}
	})
}
