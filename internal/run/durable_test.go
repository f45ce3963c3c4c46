package run_test

// Crashes at the edges of a run's last step: a queued run whose worker dies
// between its final model answer and the commit of its turn is resumed
// without calling the model again.

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/queue"
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

// readsBack is the store as a worker sees it, counting the reads of what
// a run stored of itself (its decisions, checkpoints and events) and of
// its conversation, which a run's first execution skips (run.Params.Fresh;
// a new conversation's first turn).
type readsBack struct {
	runsStore
	approvals, checkpoints, events, conversations atomic.Int64
}

func (s *readsBack) GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	s.conversations.Add(1)
	return s.runsStore.GetConversation(ctx, tenant, id)
}

func (s *readsBack) ListApprovals(ctx context.Context, runID string) ([]store.Approval, error) {
	s.approvals.Add(1)
	return s.runsStore.ListApprovals(ctx, runID)
}

func (s *readsBack) LatestCheckpoint(ctx context.Context, runID string) (store.Checkpoint, error) {
	s.checkpoints.Add(1)
	return s.runsStore.LatestCheckpoint(ctx, runID)
}

func (s *readsBack) ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error) {
	s.events.Add(1)
	return s.runsStore.ListEvents(ctx, runID, afterSeq, limit)
}

func (s *readsBack) counts() [4]int64 {
	return [4]int64{s.approvals.Load(), s.checkpoints.Load(), s.events.Load(), s.conversations.Load()}
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
		deadReads := &readsBack{runsStore: env.st}
		svc.Store = &diesAtCommit{runsStore: deadReads, die: die}
		svc.Loop.Store = deadReads
		dead := &run.Runs{Service: svc, Store: deadReads, Queue: noEnqueue{env.st}, Owner: "dead", LeaseTTL: 3 * time.Second, Log: env.log}
		rn, _, err := dead.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msg})
		require.NoError(t, err)
		requeue, err := dead.ExecuteRun(wctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.True(t, requeue, "the run is suspended, not finished")
		require.Equal(t, int64(1), env.sim.Load().Requests())
		require.Equal(t, [4]int64{}, deadReads.counts(), "a first attempt reads nothing of itself back, nor its new conversation")
		r, err := env.st.GetRun(ctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, r.Status, "error %q", r.Error)
		// The commit creates a new conversation with its first turn: none
		// was committed, so it does not exist.
		_, err = env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
		require.ErrorIs(t, err, store.ErrNotFound, "no turn was committed")
		stopped := env.runEvents(t, rn.ID)

		// Another worker resumes it: the answer is in the checkpoint.
		liveReads := &readsBack{runsStore: env.st}
		liveSvc := env.service(nil)
		liveSvc.Store, liveSvc.Loop.Store = liveReads, liveReads
		live := &run.Runs{Service: liveSvc, Store: liveReads, Queue: noEnqueue{env.st}, Owner: "live", LeaseTTL: 3 * time.Second, Log: env.log}
		requeue, err = live.ExecuteRun(ctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.False(t, requeue)
		for i, n := range liveReads.counts() {
			require.Positive(t, n, "a resumed run reads its decisions, checkpoint, events and conversation (%d)", i)
		}
		final := env.waitFinished(t, rn.ID)
		require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
		require.Equal(t, 2, final.Attempt)
		require.Equal(t, 1, final.Steps)
		require.Equal(t, int64(1), env.sim.Load().Requests(), "the answered model call is not repeated")

		evs := env.runEvents(t, rn.ID)
		require.Equal(t, stopped, evs[:len(stopped)], "stored events are never rewritten")
		require.Equal(t, []string{"start", "usage", "resumed", "done"}, nonDeltaTypes(evs))
		conv, err := env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
		require.NoError(t, err)
		require.Len(t, conv.Messages, 2)
		// The final answer's checkpoint is the run's last: the commit
		// stores no second copy of the same state.
		cp, err := env.st.LatestCheckpoint(ctx, rn.ID)
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
		var st struct {
			Messages []struct{ Role string } `json:"messages"`
		}
		require.NoError(t, json.Unmarshal(cp.State, &st))
		require.Len(t, st.Messages, 2)
		require.Equal(t, "assistant", st.Messages[1].Role, "it holds the final answer")

		// An inline chat, which nothing resumes, keeps one checkpoint
		// write for its final answer: the commit's.
		chatReads := &readsBack{runsStore: env.st}
		chatSvc := env.service(nil)
		chatSvc.Store, chatSvc.Loop.Store = chatReads, chatReads
		chat, err := chatSvc.Prepare(ctx, run.ChatParams{Tenant: runsTenant, Agent: "demo", Message: msg})
		require.NoError(t, err)
		_, err = chat.Execute(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, [4]int64{}, chatReads.counts(), "an inline chat reads nothing of itself back")
		cp, err = env.st.LatestCheckpoint(ctx, chat.RunID())
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
	})
}

// deadAfter is the store as a worker sees it that can be killed: once dead
// is set, writes fail (a killed process writes nothing more). It records
// the flushes (SaveStep without a checkpoint) that stored text deltas.
type deadAfter struct {
	run.StepStore
	dead    atomic.Bool
	flushes atomic.Int64
}

func (s *deadAfter) SaveStep(ctx context.Context, cp *store.Checkpoint, evs []store.Event) error {
	if s.dead.Load() {
		return errors.New("the worker is dead")
	}
	if err := s.StepStore.SaveStep(ctx, cp, evs); err != nil {
		return err
	}
	for _, ev := range evs {
		if cp == nil && ev.Type == run.EventTextDelta {
			s.flushes.Add(1)
			break
		}
	}
	return nil
}

// diesMidStream streams the model's answer until the delta after the first
// flush of deltas (a lone delta is never flushed at once: it is not
// FlushInterval old), then kills the worker: its store refuses writes and
// its run's context ends.
type diesMidStream struct {
	llm.Model
	st  *deadAfter
	die func()
}

func (m *diesMidStream) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	after := -1
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err := m.Model.Stream(sctx, req, func(d llm.Delta) {
		if m.st.dead.Load() {
			return
		}
		onDelta(d)
		if after < 0 && m.st.flushes.Load() > 0 {
			after = 0
		}
		if after >= 0 {
			if after++; after == 2 {
				m.st.dead.Store(true)
				m.die()
				cancel()
			}
		}
	})
	<-ctx.Done()
	if err == nil {
		err = errors.New("the stream ended before the worker died")
	}
	return llm.Response{}, err
}

// TestResumedRunNeverReusesAnEventID: followers of a run whose worker died
// in the middle of a model call's stream, some deltas stored and some not,
// see each event id with one data only, also when they reconnect with the
// last id they saw: the run resumed elsewhere numbers its events after the
// stored ones, and followers never saw the unstored ones.
func TestResumedRunNeverReusesAnEventID(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{EventDelay: run.FlushInterval / 4, Words: 60})
		ctx := t.Context()
		const msg = "hello there"
		dead := &run.Runs{Service: env.service(nil), Store: env.st, Queue: noEnqueue{env.st}, Owner: "dead", Log: env.log}
		rn, _, err := dead.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msg})
		require.NoError(t, err)
		now := time.Now().UTC()
		_, err = env.st.ClaimRun(ctx, store.ClaimRunParams{ID: rn.ID, Owner: "dead", LeaseUntil: now.Add(-time.Second), Now: now})
		require.NoError(t, err)

		// Followers: one through the crash, one that drops at the crash
		// and reconnects with the last id it saw.
		type seen struct {
			typ  string
			data string
		}
		var mu sync.Mutex
		byID := map[int64][]seen{} // every delivery of every id
		record := func(ev store.Event) {
			mu.Lock()
			defer mu.Unlock()
			byID[ev.Seq] = append(byID[ev.Seq], seen{ev.Type, string(ev.Data)})
		}
		follow := func(after int64, send func(store.Event) error) error {
			fctx, cancel := context.WithTimeout(ctx, runsTimeout)
			defer cancel()
			return events.Follow(fctx, env.hub, env.st, rn.ID, after, send, events.FollowOptions{Poll: 50 * time.Millisecond})
		}
		var wg sync.WaitGroup
		var throughLast, droppedLast atomic.Int64
		st := &deadAfter{StepStore: env.st}
		errDropped := errors.New("dropped")
		wg.Add(2)
		go func() {
			defer wg.Done()
			assert.NoError(t, follow(0, func(ev store.Event) error {
				record(ev)
				throughLast.Store(ev.Seq)
				return nil
			}))
		}()
		go func() {
			defer wg.Done()
			err := follow(0, func(ev store.Event) error {
				if st.dead.Load() {
					return errDropped
				}
				record(ev)
				droppedLast.Store(ev.Seq)
				return nil
			})
			assert.ErrorIs(t, err, errDropped)
		}()
		time.Sleep(100 * time.Millisecond) // both subscribed

		dctx, die := context.WithCancelCause(ctx)
		defer die(nil)
		var emitted atomic.Int64
		deadLoop := &run.Loop{Model: &diesMidStream{Model: env.model, st: st, die: func() { die(run.ErrSuspended) }}, Store: st, Log: env.log}
		_, err = deadLoop.Execute(dctx, &run.Params{RunID: rn.ID, ConversationID: rn.ConversationID,
			Agent: &env.agents["demo"].Agent, Input: userText(msg),
			OnEvent:  func(ev store.Event) { emitted.Store(ev.Seq) },
			OnStored: func(evs []store.Event) { env.hub.Publish(ctx, evs) }})
		require.ErrorIs(t, err, run.ErrSuspended)
		stored := env.runEvents(t, rn.ID)
		require.Contains(t, nonDeltaTypes(stored), run.EventStart)
		require.Equal(t, run.EventTextDelta, stored[len(stored)-1].Type, "deltas were stored mid-stream")
		lastStored := stored[len(stored)-1].Seq
		require.Greater(t, emitted.Load(), lastStored, "the dead worker had emitted deltas it never stored")

		// Another worker resumes the run; the dropped follower comes back
		// with the last id it saw.
		live := &run.Runs{Service: env.service(nil), Store: env.st, Queue: noEnqueue{env.st}, Owner: "live", LeaseTTL: 3 * time.Second, Log: env.log}
		resumed := make(chan error, 1)
		go func() {
			_, err := live.ExecuteRun(ctx, runsTenant, rn.ID)
			resumed <- err
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, follow(droppedLast.Load(), func(ev store.Event) error {
				record(ev)
				droppedLast.Store(ev.Seq)
				return nil
			}))
		}()
		require.NoError(t, <-resumed)
		final := env.waitFinished(t, rn.ID)
		require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
		wg.Wait()

		evs := env.runEvents(t, rn.ID)
		require.Equal(t, stored, evs[:len(stored)], "stored events are never rewritten")
		require.Equal(t, []string{"start", "resumed", "usage", "done"}, nonDeltaTypes(evs))
		last := evs[len(evs)-1].Seq
		require.Equal(t, last, throughLast.Load())
		require.Equal(t, last, droppedLast.Load())
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			want := seen{ev.Type, string(ev.Data)}
			for _, got := range byID[ev.Seq] {
				require.Equal(t, want, got, "event id %d was delivered with other data than the run's", ev.Seq)
			}
		}
		for seq := range byID {
			require.LessOrEqual(t, seq, last, "event id %d was delivered but is not the run's", seq)
		}
	})
}

// Two jobs of one run on one worker (a drain's requeue and a reclaim both
// enqueued it: agentd chaos r2b found it): ClaimRun accepts the second,
// since the worker holds the lease, so the worker itself must not start
// the run twice. The second job ends at once; the run executes once, with
// one model call, and succeeds.
func TestWorkerExecutesARunOnceForTwoJobs(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{Latency: 500 * time.Millisecond})
		ctx := t.Context()
		w := &run.Runs{Service: env.service(nil), Store: env.st, Queue: noEnqueue{env.st}, Owner: "w", LeaseTTL: 3 * time.Second, Log: env.log}
		rn, _, err := w.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: "hello there"})
		require.NoError(t, err)

		first := make(chan error, 1)
		go func() {
			_, err := w.ExecuteRun(ctx, runsTenant, rn.ID)
			first <- err
		}()
		require.Eventually(t, func() bool { return env.sim.Load().Requests() == 1 }, 10*time.Second, 5*time.Millisecond,
			"the first job calls the model")
		// The second job is snoozed at once (it may be the run's
		// resumption after a pause): it neither waits nor runs the run.
		requeue, err := w.ExecuteRun(ctx, runsTenant, rn.ID)
		var snooze queue.Snoozer
		require.ErrorAs(t, err, &snooze)
		require.False(t, requeue)
		select {
		case err := <-first:
			t.Fatalf("the second job returned after the first execution ended (%v): it waited for or ran the run", err)
		default:
		}
		require.NoError(t, <-first)
		// Snoozed, it runs again: the run is finished, the job is done.
		requeue, err = w.ExecuteRun(ctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.False(t, requeue)

		final := env.waitFinished(t, rn.ID)
		require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
		require.Equal(t, 1, final.Attempt)
		require.Equal(t, int64(1), env.sim.Load().Requests(), "one execution, one model call")
		require.Equal(t, []string{"start", "usage", "done"}, nonDeltaTypes(env.runEvents(t, rn.ID)))
	})
}
