package storetest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of a conversation's turns (store.Run.Turn, the concurrency
// policies enqueue, interrupt and rollback):
//   - CreateRunTx with Turn NextTurn hands out 1, 2, 3, ... per
//     conversation, each once, also to concurrent submitters; CreateRun
//     refuses NextTurn;
//   - ClaimRun of a queued run with a turn is ErrRunWaiting while another
//     run of its conversation that is queued, running or requires_action
//     has a lower turn or none; it succeeds once they finished;
//   - a queued run inserted with HeldBy is claimable only by its holder
//     until HeldUntil (ErrRunWaiting for others), by anyone after; its
//     holder may extend the hold while it is queued;
//   - UnfinishedRuns lists the tenant's unfinished runs of a conversation,
//     runs without a turn first, then by turn.

func exerciseTurns[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t0 := at("2025-06-01T10:00:00.123456Z")
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	turnRun := func(t *testing.T, ctx context.Context, s Store[TTx], tenant, conv string, mod func(*store.Run)) store.Run {
		t.Helper()
		r := store.Run{ID: newID("run"), Tenant: tenant, Agent: "agent-a", ConversationID: conv, Status: store.RunQueued,
			Input: js(`{"message":"m"}`), Turn: store.NextTurn}
		if mod != nil {
			mod(&r)
		}
		require.NoError(t, s.CreateRunTx(ctx, r, nil))
		return getRun(t, ctx, s, tenant, r.ID)
	}
	finish := func(t *testing.T, ctx context.Context, s Store[TTx], r store.Run) {
		t.Helper()
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded, Attempt: 1,
			StartedAt: sec(0), FinishedAt: sec(1)}))
	}

	t.Run("NextTurn", func(t *testing.T) {
		s, ctx := setup(t)
		a1 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		a2 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		b1 := turnRun(t, ctx, s, "t1", "conv-b", nil)
		require.EqualValues(t, 1, a1.Turn)
		require.EqualValues(t, 2, a2.Turn)
		require.EqualValues(t, 1, b1.Turn, "turns are per conversation")
		plain := createRun(t, ctx, s, "t1")
		require.Zero(t, getRun(t, ctx, s, "t1", plain.ID).Turn)
		err := s.CreateRun(ctx, store.Run{ID: newID("run"), Tenant: "t1", Agent: "a", ConversationID: "conv-a",
			Status: store.RunQueued, Turn: store.NextTurn})
		require.Error(t, err, "CreateRun has no transaction to take a turn in")
	})

	t.Run("NextTurnConcurrently", func(t *testing.T) {
		s, ctx := setup(t)
		const n = 20
		var wg sync.WaitGroup
		errs := make([]error, n)
		ids := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i] = newID("run")
				errs[i] = s.CreateRunTx(ctx, store.Run{ID: ids[i], Tenant: "t1", Agent: "a", ConversationID: "conv-c",
					Status: store.RunQueued, Input: js(`{}`), Turn: store.NextTurn}, nil)
			}()
		}
		wg.Wait()
		var turns []int
		for i := range n {
			require.NoError(t, errs[i])
			turns = append(turns, int(getRun(t, ctx, s, "t1", ids[i]).Turn))
		}
		sort.Ints(turns)
		for i, tn := range turns {
			require.Equal(t, i+1, tn, "each turn once, without gaps")
		}
	})

	t.Run("ClaimInTurn", func(t *testing.T) {
		s, ctx := setup(t)
		r1 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		r2 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		other := turnRun(t, ctx, s, "t1", "conv-b", nil)
		got, err := claim(ctx, s, r2.ID, "w1", sec(30), sec(0))
		require.ErrorIs(t, err, store.ErrRunWaiting, "turn 1 is queued")
		require.Equal(t, store.RunQueued, got.Status)
		_, err = claim(ctx, s, other.ID, "w1", sec(30), sec(0))
		require.NoError(t, err, "another conversation does not wait")
		_, err = claim(ctx, s, r1.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
		_, err = claim(ctx, s, r2.ID, "w2", sec(30), sec(0))
		require.ErrorIs(t, err, store.ErrRunWaiting, "turn 1 is running")
		finish(t, ctx, s, r1)
		got, err = claim(ctx, s, r2.ID, "w2", sec(30), sec(0))
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
	})

	t.Run("UnturnedRunBlocks", func(t *testing.T) {
		s, ctx := setup(t)
		plain := store.Run{ID: newID("run"), Tenant: "t1", Agent: "a", ConversationID: "conv-a", Status: store.RunRunning,
			Input: js(`{}`), Attempt: 1, StartedAt: sec(0)}
		require.NoError(t, s.CreateRun(ctx, plain))
		r := turnRun(t, ctx, s, "t1", "conv-a", nil)
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.ErrorIs(t, err, store.ErrRunWaiting, "a run outside the order (reject) is waited for")
		finish(t, ctx, s, plain)
		_, err = claim(ctx, s, r.ID, "w1", sec(30), sec(0))
		require.NoError(t, err)
	})

	t.Run("Held", func(t *testing.T) {
		s, ctx := setup(t)
		r := turnRun(t, ctx, s, "t1", "conv-a", func(r *store.Run) { r.HeldBy, r.HeldUntil = "chat-1", sec(10) })
		_, err := claim(ctx, s, r.ID, "w1", sec(30), sec(5))
		require.ErrorIs(t, err, store.ErrRunWaiting, "its chat holds it")
		_, err = s.ExtendLease(ctx, r.ID, "chat-1", sec(20))
		require.NoError(t, err, "the holder keeps its hold while it waits")
		_, err = claim(ctx, s, r.ID, "w1", sec(30), sec(15))
		require.ErrorIs(t, err, store.ErrRunWaiting)
		_, err = claim(ctx, s, r.ID, "w1", sec(50), sec(25))
		require.NoError(t, err, "a lapsed hold: any worker")

		r2 := turnRun(t, ctx, s, "t1", "conv-b", func(r *store.Run) { r.HeldBy, r.HeldUntil = "chat-2", sec(10) })
		got, err := claim(ctx, s, r2.ID, "chat-2", sec(30), sec(5))
		require.NoError(t, err, "its holder claims it")
		require.Equal(t, store.RunRunning, got.Status)
	})

	t.Run("UnfinishedRuns", func(t *testing.T) {
		s, ctx := setup(t)
		r1 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		r2 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		r3 := turnRun(t, ctx, s, "t1", "conv-a", nil)
		finish(t, ctx, s, r1)
		plain := store.Run{ID: newID("run"), Tenant: "t1", Agent: "a", ConversationID: "conv-a", Status: store.RunQueued, Input: js(`{}`)}
		require.NoError(t, s.CreateRun(ctx, plain))
		got, err := s.UnfinishedRuns(ctx, "t1", "conv-a")
		require.NoError(t, err)
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		require.Equal(t, []string{plain.ID, r2.ID, r3.ID}, ids)
		got, err = s.UnfinishedRuns(ctx, "t2", "conv-a")
		require.NoError(t, err)
		require.Empty(t, got, "another tenant's")
	})
}
