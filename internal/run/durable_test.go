package run_test

// Crashes at the edges of a run's last step: a queued run whose worker dies
// between its final model answer and the commit of its turn is resumed
// without calling the model again.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

// diesAtCommit is the store as a worker sees it that dies when it commits a
// turn: AppendMessages (the commit of a finished run) stops the worker and
// returns once the run's context has ended, having written nothing.
type diesAtCommit struct {
	runsStore
	die func()
}

func (s *diesAtCommit) AppendMessages(ctx context.Context, _ store.AppendMessagesParams) (int64, error) {
	s.die()
	<-ctx.Done()
	return 0, context.Cause(ctx)
}

func TestRunsResumeAtCommitRepeatsNoModelCall(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		ctx := t.Context()
		const msg = "hello there" // answered in one model call, no tool

		// The dying worker: its model answers, and it dies (its job's
		// context ends, as when River stops it or the process goes) while
		// it commits the turn.
		wctx, die := context.WithCancel(ctx)
		defer die()
		svc := env.service(nil)
		svc.Store = &diesAtCommit{runsStore: env.st, die: die}
		dead := &run.Runs{Service: svc, Store: env.st, Queue: noEnqueue{env.st}, Owner: "dead", LeaseTTL: 3 * time.Second, Log: env.log}
		rn, _, err := dead.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msg})
		require.NoError(t, err)
		requeue, err := dead.ExecuteRun(wctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.True(t, requeue, "the run is suspended, not finished")
		require.Equal(t, int64(1), env.sim.Load().Requests())
		r, err := env.st.GetRun(ctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, r.Status, "error %q", r.Error)
		// The commit creates a new conversation before it appends the
		// turn: it exists, empty.
		conv, err := env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
		require.NoError(t, err)
		require.Empty(t, conv.Messages, "no turn was committed")
		stopped := env.runEvents(t, rn.ID)

		// Another worker resumes it: the answer is in the checkpoint.
		live := &run.Runs{Service: env.service(nil), Store: env.st, Queue: noEnqueue{env.st}, Owner: "live", LeaseTTL: 3 * time.Second, Log: env.log}
		requeue, err = live.ExecuteRun(ctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.False(t, requeue)
		final := env.waitFinished(t, rn.ID)
		require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
		require.Equal(t, 2, final.Attempt)
		require.Equal(t, 1, final.Steps)
		require.Equal(t, int64(1), env.sim.Load().Requests(), "the answered model call is not repeated")

		evs := env.runEvents(t, rn.ID)
		require.Equal(t, stopped, evs[:len(stopped)], "stored events are never rewritten")
		require.Equal(t, []string{"start", "usage", "resumed", "done"}, nonDeltaTypes(evs))
		conv, err = env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
		require.NoError(t, err)
		require.Len(t, conv.Messages, 2)
		// The final answer's checkpoint, then the commit's.
		cp, err := env.st.LatestCheckpoint(ctx, rn.ID)
		require.NoError(t, err)
		require.Equal(t, 2, cp.Step)

		// An inline chat, which nothing resumes, keeps one checkpoint
		// write for its final answer: the commit's.
		chat, err := env.service(nil).Prepare(ctx, run.ChatParams{Tenant: runsTenant, Agent: "demo", Message: msg})
		require.NoError(t, err)
		_, err = chat.Execute(ctx, nil)
		require.NoError(t, err)
		cp, err = env.st.LatestCheckpoint(ctx, chat.RunID())
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
	})
}
