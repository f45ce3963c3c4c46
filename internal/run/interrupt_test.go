package run_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

// contentOf decodes a stored message's blocks.
func contentOf(t *testing.T, m store.Message) []llm.Block {
	t.Helper()
	var bs []llm.Block
	require.NoError(t, json.Unmarshal(m.Content, &bs))
	return bs
}

// An interrupted run stops and keeps what it checkpointed: a running run's
// finished model call and tool result reach the conversation (the model
// call in flight is dropped); a paused run's waiting call gets an error
// result saying it was interrupted, and can no longer be decided.
func TestRunsInterruptKeepsWhatWasCheckpointed(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{Latency: 800 * time.Millisecond})
		w := env.newWorker(t, "w1", nil)
		ctx := t.Context()

		// Running: interrupted during its second model call.
		r, _, err := w.runs.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: "please lookup the key alpha"})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			cp, err := env.st.LatestCheckpoint(ctx, r.ID)
			return err == nil && cp.Step >= 2 // the model call, then the tool result
		}, 20*time.Second, 10*time.Millisecond)
		_, err = w.runs.Interrupt(ctx, runsTenant, r.ID)
		require.NoError(t, err)
		done := env.waitRun(t, r.ID, func(r store.Run) bool { return r.Status.Terminal() })
		require.Equal(t, store.RunInterrupted, done.Status, done.Error)
		require.Equal(t, int64(1), env.lookup.n.Load())
		conv, err := env.st.GetConversation(ctx, runsTenant, done.ConversationID)
		require.NoError(t, err)
		require.Len(t, conv.Messages, 3, "user, the tool_use, its result; not the model call in flight")
		require.Equal(t, "tool_use", contentOf(t, conv.Messages[1])[1].Type)
		res := contentOf(t, conv.Messages[2])[0]
		require.Equal(t, "tool_result", res.Type)
		require.False(t, res.IsError)
		evs, err := env.st.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		last := evs[len(evs)-1]
		require.Equal(t, run.EventError, last.Type)
		require.Contains(t, string(last.Data), `"interrupted"`)

		// Paused: interrupted where it waits.
		env.agents["demo"].Approval = run.ApprovalPolicy{Tools: []string{"lookup"}}
		r, _, err = w.runs.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: "please lookup the key beta"})
		require.NoError(t, err)
		env.waitRun(t, r.ID, func(r store.Run) bool { return r.Status == store.RunRequiresAction })
		pending, err := env.st.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		got, err := w.runs.Interrupt(ctx, runsTenant, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunInterrupted, got.Status)
		conv, err = env.st.GetConversation(ctx, runsTenant, got.ConversationID)
		require.NoError(t, err)
		require.Len(t, conv.Messages, 3)
		res = contentOf(t, conv.Messages[2])[0]
		require.True(t, res.IsError)
		require.Contains(t, res.Content, "interrupted")
		_, _, err = w.runs.Decide(ctx, run.DecideParams{Tenant: runsTenant, RunID: r.ID, ToolUseID: pending[0].ToolUseID, Decision: store.DecisionApprove})
		require.ErrorIs(t, err, store.ErrConflict)
		require.Equal(t, int64(1), env.lookup.n.Load(), "the waiting call never ran")
		evs, err = env.st.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, run.EventError, evs[len(evs)-1].Type)

		// Queued: interrupted before it starts; finished: unchanged.
		again, err := w.runs.Interrupt(ctx, runsTenant, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunInterrupted, again.Status)
	})
}
