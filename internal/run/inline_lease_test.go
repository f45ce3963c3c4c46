package run_test

// An inline synchronous chat (concurrency_policy reject) whose process
// dies mid-run: it held a lease on its run from its insert on, so a worker
// takes the run over once the lease lapses and finishes it; it does not
// stay running, and the conversation's later turns are not blocked.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

func TestInlineChatTakenOverAfterItsProcessDies(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		ctx := t.Context()
		w := env.newWorker(t, "live", nil)

		// A conversation with one turn, through a live process's chat.
		first, err := w.runs.PrepareChat(ctx, run.ChatParams{Tenant: runsTenant, Agent: "demo", Message: "hello"})
		require.NoError(t, err)
		_, err = first.Execute(ctx, nil)
		require.NoError(t, err)
		conv := first.ConversationID()

		// The dying API process: its chat makes the first model call
		// (tool_use), runs the tool, checkpoints both, and the process
		// dies during the second model call: the chat's context ends and
		// nothing more is written.
		const leaseTTL = time.Second
		dctx, die := context.WithCancelCause(ctx)
		defer die(nil)
		dying := &dyingModel{Model: env.model, dieAt: 2, die: func() { die(run.ErrSuspended) }}
		dead := &run.Runs{Service: env.service(dying), Store: env.st, Queue: noEnqueue{env.st}, Owner: "dead",
			LeaseTTL: leaseTTL, Log: env.log}
		chat, err := dead.PrepareChat(dctx, run.ChatParams{Tenant: runsTenant, Agent: "demo", ConversationID: conv,
			Message: "please use lookup"})
		require.NoError(t, err)
		owner, err := env.leaseOwner(ctx, chat.RunID())
		require.NoError(t, err)
		require.Equal(t, "dead/chat/"+chat.RunID(), owner, "the insert carries the chat's lease")
		_, err = chat.Execute(dctx, nil)
		require.ErrorIs(t, err, run.ErrSuspended)
		diedAt := time.Now()
		rn, err := env.st.GetRun(ctx, runsTenant, chat.RunID())
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, rn.Status)
		require.Equal(t, int64(1), env.lookup.n.Load())

		// A later message under a policy that takes turns waits behind it.
		later, _, err := w.runs.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", ConversationID: conv,
			Message: "later", ConcurrencyPolicy: run.PolicyEnqueue})
		require.NoError(t, err)

		// The live worker's reclaimer hands the dead chat's run to a
		// worker once its lease lapsed; the run is finished there.
		rctx, stopReclaim := context.WithCancel(env.bg)
		reclaimDone := make(chan error, 1)
		go func() { reclaimDone <- w.runs.Reclaim(rctx, 100*time.Millisecond) }()
		defer func() {
			stopReclaim()
			require.NoError(t, <-reclaimDone)
		}()
		final := env.waitFinished(t, chat.RunID())
		took := time.Since(diedAt)
		t.Logf("%s: taken over and finished %s after its process died (lease %s)", backend, took.Round(time.Millisecond), leaseTTL)
		require.Less(t, took, leaseTTL+5*time.Second, "not running beyond its lease for long")
		require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
		require.Equal(t, 2, final.Attempt, "taken over once")
		require.Equal(t, 2, final.Steps)
		require.Equal(t, int64(1), env.lookup.n.Load(), "the checkpointed tool call is not repeated")
		require.Contains(t, nonDeltaTypes(env.runEvents(t, chat.RunID())), run.EventResumed)

		// The later turn was not blocked.
		lr := env.waitFinished(t, later.ID)
		require.Equal(t, store.RunSucceeded, lr.Status, "error %q", lr.Error)
		c, err := env.st.GetConversation(ctx, runsTenant, conv)
		require.NoError(t, err)
		var users []string
		for _, m := range c.Messages {
			if m.Role == "user" {
				users = append(users, string(m.Content))
			}
		}
		require.Len(t, users, 4, "hello, the taken-over turn (message and tool result), later")
		require.Contains(t, users[0], "hello")
		require.Contains(t, users[1], "please use lookup")
		require.Contains(t, users[2], "tool_result")
		require.Contains(t, users[3], "later")
	})
}
