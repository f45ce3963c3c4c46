package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Approvals the suite pins down beyond its doc comments:
//   - every backend implements store.Approvals and store.ApprovalsTx;
//   - PauseRun writes the checkpoint, the events, the approvals and the
//     run's row together, or nothing (a run whose cancellation was
//     requested is ErrConflict);
//   - DecideApprovalTx calls fn exactly once per run, with the last
//     decision, and fn's error undoes that decision;
//   - a paused run is canceled at once by RequestCancel, and its calls can
//     no longer be decided (ErrConflict);
//   - QueueStats counts the undecided calls of paused runs.

func exerciseApprovals[TTx any](t *testing.T, setup setupFunc[TTx]) {
	type approvals interface {
		store.Approvals
		store.ApprovalsTx[TTx]
	}
	open := func(t *testing.T) (Store[TTx], approvals, context.Context) {
		t.Helper()
		s, ctx := setup(t)
		a, ok := s.(approvals)
		require.True(t, ok, "%T does not implement store.Approvals and store.ApprovalsTx", s)
		return s, a, ctx
	}
	// running creates a run and claims it for worker w1.
	running := func(t *testing.T, ctx context.Context, s Store[TTx], tenant string) store.Run {
		t.Helper()
		r := store.Run{ID: newID("run"), Tenant: tenant, Agent: "a", Status: store.RunQueued}
		require.NoError(t, s.CreateRun(ctx, r))
		now := time.Now().UTC()
		r, err := s.ClaimRun(ctx, store.ClaimRunParams{ID: r.ID, Owner: "w1", LeaseUntil: now.Add(time.Minute), Now: now})
		require.NoError(t, err)
		return r
	}
	pause := func(r store.Run, expires time.Time, ids ...string) store.PauseRunParams {
		p := store.PauseRunParams{
			Run:        store.UpdateRunParams{ID: r.ID, Status: store.RunRequiresAction, Attempt: r.Attempt, Steps: 1, InputTokens: 10, OutputTokens: 5},
			Checkpoint: &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`{"step":1}`)},
		}
		for i, id := range ids {
			p.Events = append(p.Events, store.Event{RunID: r.ID, Seq: int64(i + 1), Type: "approval_required", Data: js(`{}`)})
			p.Approvals = append(p.Approvals, store.Approval{
				Tenant: r.Tenant, ToolUseID: id, Step: 1, Name: "pay", Input: js(`{"amount":5}`),
				RequestedAt: at("2025-06-01T10:00:00Z"), ExpiresAt: expires,
			})
		}
		return p
	}
	future := time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond)

	t.Run("PauseDecideRequeue", func(t *testing.T) {
		s, a, ctx := open(t)
		r := running(t, ctx, s, "t1")
		require.NoError(t, a.PauseRun(ctx, pause(r, future, "toolu_1", "toolu_2")))

		got := getRun(t, ctx, s, "t1", r.ID)
		require.Equal(t, store.RunRequiresAction, got.Status)
		require.Equal(t, 1, got.Steps)
		require.EqualValues(t, 10, got.InputTokens)
		require.False(t, got.Status.Terminal())
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
		evs, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		// The lease is gone: the worker cannot extend it.
		_, err = s.ExtendLease(ctx, r.ID, "w1", time.Now().Add(time.Minute))
		require.ErrorIs(t, err, store.ErrConflict)

		list, err := a.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, "toolu_1", list[0].ToolUseID)
		require.Equal(t, store.DecisionPending, list[0].Decision)
		require.Equal(t, "t1", list[0].Tenant)
		require.Equal(t, "pay", list[0].Name)
		require.JSONEq(t, `{"amount":5}`, string(list[0].Input))
		require.Equal(t, utc(at("2025-06-01T10:00:00Z")), list[0].RequestedAt)
		require.Equal(t, future, list[0].ExpiresAt)
		require.True(t, list[0].DecidedAt.IsZero())

		qs, err := s.QueueStats(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, qs.PendingApprovals)

		calls := 0
		enqueue := func(ctx context.Context, tx TTx, r store.Run) error {
			calls++
			require.Equal(t, store.RunQueued, r.Status)
			return nil
		}
		decidedAt := at("2025-06-01T10:05:00.5Z")
		ap, run, err := a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_1", Decision: store.DecisionApprove, DecidedBy: "key_1", DecidedAt: decidedAt,
		}, enqueue)
		require.NoError(t, err)
		require.Equal(t, 0, calls, "one call still waits")
		require.Equal(t, store.DecisionApprove, ap.Decision)
		require.Equal(t, "key_1", ap.DecidedBy)
		require.Equal(t, utc(decidedAt), ap.DecidedAt)
		require.Equal(t, store.RunRequiresAction, run.Status)

		// Decided twice: conflict, and the first decision stands.
		ap, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_1", Decision: store.DecisionDeny,
		}, enqueue)
		require.ErrorIs(t, err, store.ErrConflict)
		require.Equal(t, store.DecisionApprove, ap.Decision)
		// Unknown call, another tenant's run.
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_x", Decision: store.DecisionDeny,
		}, enqueue)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t2", RunID: r.ID, ToolUseID: "toolu_2", Decision: store.DecisionDeny,
		}, enqueue)
		require.ErrorIs(t, err, store.ErrNotFound)

		// fn's error undoes the last decision.
		boom := errors.New("boom")
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_2", Decision: store.DecisionDeny, Reason: "too much",
		}, func(context.Context, TTx, store.Run) error { return boom })
		require.ErrorIs(t, err, boom)
		require.Equal(t, store.RunRequiresAction, getRun(t, ctx, s, "t1", r.ID).Status)

		ap, run, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_2", Decision: store.DecisionDeny, Reason: "too much",
		}, enqueue)
		require.NoError(t, err)
		require.Equal(t, 1, calls)
		require.Equal(t, "too much", ap.Reason)
		require.Equal(t, store.RunQueued, run.Status)
		require.Equal(t, store.RunQueued, getRun(t, ctx, s, "t1", r.ID).Status)
		qs, err = s.QueueStats(ctx)
		require.NoError(t, err)
		require.Equal(t, 0, qs.PendingApprovals)

		// A worker claims it again.
		now := time.Now().UTC()
		claimed, err := s.ClaimRun(ctx, store.ClaimRunParams{ID: r.ID, Owner: "w2", LeaseUntil: now.Add(time.Minute), Now: now})
		require.NoError(t, err)
		require.Equal(t, 2, claimed.Attempt)
	})

	t.Run("CustomToolResult", func(t *testing.T) {
		s, a, ctx := open(t)
		r := running(t, ctx, s, "t1")
		p := pause(r, future, "toolu_c", "toolu_a")
		p.Approvals[0].Kind = store.ApprovalKindCustomTool
		require.NoError(t, a.PauseRun(ctx, p))
		list, err := a.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		kinds := map[string]store.ApprovalKind{}
		for _, ap := range list {
			kinds[ap.ToolUseID] = ap.Kind
		}
		require.Equal(t, map[string]store.ApprovalKind{"toolu_c": store.ApprovalKindCustomTool, "toolu_a": store.ApprovalKindApproval}, kinds,
			"an empty Kind is stored as approval")
		// A decision of the wrong kind finds no such call.
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_c", Decision: store.DecisionApprove,
		}, nil)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_a", Decision: store.DecisionResult, Result: js(`"x"`),
		}, nil)
		require.ErrorIs(t, err, store.ErrNotFound)
		got, _, err := a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_c", Decision: store.DecisionResult,
			Result: js(`[{"type":"text","text":"42"}]`), IsError: true, SystemMessage: "Answer in French.",
		}, nil)
		require.NoError(t, err)
		require.Equal(t, store.DecisionResult, got.Decision)
		require.JSONEq(t, `[{"type":"text","text":"42"}]`, string(got.Result))
		require.True(t, got.IsError)
		require.Equal(t, "Answer in French.", got.SystemMessage)
		list, err = a.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		for _, ap := range list {
			if ap.ToolUseID == "toolu_c" {
				require.True(t, ap.IsError)
				require.JSONEq(t, `[{"type":"text","text":"42"}]`, string(ap.Result))
				require.Equal(t, "Answer in French.", ap.SystemMessage, "the system text sent with the result")
			} else {
				require.Nil(t, ap.Result)
				require.False(t, ap.IsError)
				require.Empty(t, ap.SystemMessage)
			}
		}
	})

	t.Run("PauseRefusedWhenCanceled", func(t *testing.T) {
		s, a, ctx := open(t)
		r := running(t, ctx, s, "t1")
		_, err := s.RequestCancel(ctx, "t1", r.ID, time.Now())
		require.NoError(t, err)
		err = a.PauseRun(ctx, pause(r, future, "toolu_1"))
		require.ErrorIs(t, err, store.ErrConflict)
		list, err := a.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		require.Empty(t, list)
		_, err = s.LatestCheckpoint(ctx, r.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "nothing of the pause is written")
	})

	t.Run("CancelPausedRun", func(t *testing.T) {
		s, a, ctx := open(t)
		r := running(t, ctx, s, "t1")
		require.NoError(t, a.PauseRun(ctx, pause(r, future, "toolu_1")))
		got, err := s.RequestCancel(ctx, "t1", r.ID, time.Now())
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, got.Status)
		require.False(t, got.FinishedAt.IsZero())
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r.ID, ToolUseID: "toolu_1", Decision: store.DecisionApprove,
		}, nil)
		require.ErrorIs(t, err, store.ErrConflict)
		list, err := a.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.DecisionPending, list[0].Decision, "the refused decision is not kept")
		exp, err := a.ListExpiredApprovals(ctx, future.Add(time.Hour), 10)
		require.NoError(t, err)
		for _, e := range exp {
			require.NotEqual(t, r.ID, e.RunID, "a canceled run's calls do not expire")
		}
	})

	t.Run("Expired", func(t *testing.T) {
		s, a, ctx := open(t)
		past := time.Now().UTC().Add(-time.Minute)
		r1 := running(t, ctx, s, "t1")
		require.NoError(t, a.PauseRun(ctx, pause(r1, past, "toolu_1", "toolu_2")))
		r2 := running(t, ctx, s, "t1")
		require.NoError(t, a.PauseRun(ctx, pause(r2, future, "toolu_3")))
		exp, err := a.ListExpiredApprovals(ctx, time.Now(), 100)
		require.NoError(t, err)
		var mine []string
		for _, e := range exp {
			if e.RunID == r1.ID || e.RunID == r2.ID {
				mine = append(mine, e.ToolUseID)
			}
		}
		require.ElementsMatch(t, []string{"toolu_1", "toolu_2"}, mine)
		_, _, err = a.DecideApprovalTx(ctx, store.DecideApprovalParams{
			Tenant: "t1", RunID: r1.ID, ToolUseID: "toolu_1", Decision: store.DecisionTimeout,
			Reason: "approval timed out", DecidedBy: store.DecidedByTimeout,
		}, nil)
		require.NoError(t, err)
		exp, err = a.ListExpiredApprovals(ctx, time.Now(), 100)
		require.NoError(t, err)
		for _, e := range exp {
			require.NotEqual(t, "toolu_1", e.ToolUseID, "a decided call is not expired")
		}
	})
}
