package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// The checkpoint contract, implemented in this file:
//
//   - A checkpoint (store.Checkpoint, numbered 1, 2, ... per run by
//     execution.cpStep) holds a state: the run's messages so far, its
//     usage and cost, the finished tool results of the pending turn, and
//     Seq, the last event seq stored with it.
//   - One is written after every model call (finishCall) and after every
//     tool result (runTools), together with the events queued before it, in
//     one store transaction (SaveStep): a checkpoint is never stored
//     without the events that led to it.
//   - The final answer (a model call that asks for no tool) ends with
//     commitDone, which hands the queued events and the done event, and
//     for a run that is not resumable the final checkpoint, to Commit;
//     Commit stores them with the conversation's turn and the run's status
//     in one transaction.
//   - A run that can be resumed (Params.Resumable: a queued run, which a
//     worker holds with a lease and another worker takes over when it dies
//     or drains) also checkpoints the final answer on its own, like every
//     other model call, before Commit: resumed between the two writes, it
//     finds the answer in its checkpoint and commits it without calling the
//     model again; Commit then stores no second checkpoint of it (the
//     run's latest checkpoint holds its final state). An inline chat
//     (POST /v1/chat under concurrency_policy reject) is resumed only
//     when its process dies: it holds a lease from its insert on
//     (Runs.PrepareChat) and a worker takes it over once the lease
//     lapses. Its final answer's checkpoint is only the
//     one Commit stores, one write fewer per chat; a crash between that
//     answer and the commit makes the takeover call the model for it
//     again (the only call it repeats).
//   - Events may be stored between checkpoints (a flush while a model call
//     streams, FlushInterval; the error event of a stopped run). A seq once
//     stored is never reused: restore numbers new events after the last
//     stored event, not after the checkpoint's Seq.
//   - Resuming (restore): the newest checkpoint's state is loaded; model
//     calls and tool results it holds are not repeated; a model call
//     without a checkpoint is made again, after a resumed event that
//     tells followers its streamed deltas are superseded.
//   - Followers (OnStored) see events only once they are stored, in seq
//     order (publish). With the rule above, an event id a follower saw
//     never carries other data, also across a crash: what a dead worker
//     emitted and did not store reached no follower, and the resumed run
//     numbers after what it stored. Only OnEvent (a synchronous chat's own
//     stream) sees events before they are stored; its client is gone
//     with its process when a worker takes its run over.

// state is what a checkpoint holds.
type state struct {
	// Step counts finished model calls.
	Step     int           `json:"step"`
	Messages []llm.Message `json:"messages"`
	Usage    llm.Usage     `json:"usage"`
	// CostUSD sums the priced cost of the finished model calls.
	CostUSD money.Nanos `json:"cost_usd,omitempty"`
	// Seq is the last persisted event seq.
	Seq int64 `json:"seq"`
	// Results are the finished tool results of the pending tool_use turn
	// (the last message is an assistant message with tool_use blocks).
	Results []llm.Block `json:"results,omitempty"`
	// StopReason of the last model call.
	StopReason string `json:"stop_reason"`
	// Decided are the tool_use ids of the pending turn whose approval
	// decision was announced (an approval_decided event).
	Decided []string `json:"decided,omitempty"`
	// SDKSession is the Agent SDK session id a hosted program reported
	// (agents[].runtime): a retried run passes it back to the program.
	SDKSession string `json:"sdk_session_id,omitempty"`
}

// restore loads the newest checkpoint, or starts fresh.
func (x *execution) restore(ctx context.Context) error {
	if x.p.Fresh {
		x.st = state{Messages: []llm.Message{x.p.Input}}
		x.emit(StartEvent{
			RunID: x.p.RunID, ConversationID: x.p.ConversationID, Agent: x.p.Agent.Name, Model: x.p.Agent.Model,
		})
		return nil
	}
	cp, err := x.l.Store.LatestCheckpoint(ctx, x.p.RunID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No step finished; events may still have been stored (flushed
		// during the first model call of an attempt that died).
		x.st = state{Messages: []llm.Message{x.p.Input}}
	case err != nil:
		return fmt.Errorf("load checkpoint of run %s: %w", x.p.RunID, err)
	default:
		if err := json.Unmarshal(cp.State, &x.st); err != nil {
			return fmt.Errorf("decode checkpoint %d of run %s: %w", cp.Step, x.p.RunID, err)
		}
		x.cpStep = cp.Step
	}
	// Events may have been stored after the checkpoint (flushed during a
	// model call, or the record of how the last attempt stopped): number
	// new events after the last stored one, never reusing a seq a client
	// may have seen.
	x.seq = x.st.Seq
	for {
		evs, err := x.l.Store.ListEvents(ctx, x.p.RunID, x.seq, 1000)
		if err != nil {
			return fmt.Errorf("read events of run %s: %w", x.p.RunID, err)
		}
		if len(evs) == 0 {
			break
		}
		x.seq = evs[len(evs)-1].Seq
	}
	if x.seq == 0 {
		x.emit(StartEvent{
			RunID: x.p.RunID, ConversationID: x.p.ConversationID, Agent: x.p.Agent.Name, Model: x.p.Agent.Model,
		})
		return nil
	}
	x.l.Log.InfoContext(ctx, "resuming run", "checkpoint", x.cpStep, "step", x.st.Step, "last_seq", x.seq)
	// Text deltas of a model call that did not finish were already sent;
	// this tells followers that the step starts over.
	x.emit(ResumedEvent{Step: x.st.Step + 1, AfterSeq: x.seq})
	return nil
}

// commitDone hands the final checkpoint and the events still queued, done
// included, to Commit, which stores them with the turn and the run's final
// status in one transaction. Nobody sees done before it is stored: a client
// that saw done finds the turn in the conversation, and a crash leaves
// either all of it or none of it.
func (x *execution) commitDone(ctx context.Context) error {
	res := x.result()
	raw, err := json.Marshal(x.answerData())
	if err != nil {
		return fmt.Errorf("encode done event: %w", err)
	}
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	done := store.Event{RunID: x.p.RunID, Seq: x.seq + 1, Type: EventDone, Data: raw, CreatedAt: time.Now().UTC()}
	events := append(append(make([]store.Event, 0, len(x.pending)+1), x.pending...), done)
	// A resumable run's final answer is in its latest checkpoint already
	// (finishCall, the program's result, or the checkpoint it resumed
	// from): Commit stores no second copy of the same state.
	var cp *store.Checkpoint
	if !x.p.Resumable {
		st := x.st
		st.Seq = done.Seq
		state, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("encode checkpoint: %w", err)
		}
		cp = &store.Checkpoint{RunID: x.p.RunID, Step: x.cpStep + 1, State: state, CreatedAt: done.CreatedAt}
	}
	if err := x.p.Commit(ctx, res, cp, events); err != nil {
		return err
	}
	x.seq, x.st.Seq = done.Seq, done.Seq
	if cp != nil {
		x.cpStep++
	}
	x.pending, x.deltaSince = x.pending[:0], time.Time{}
	if x.p.OnEvent != nil {
		x.p.OnEvent(done)
	}
	x.stored = append(x.stored, events...)
	return nil
}

// emit numbers an event, hands it to OnEvent and queues it for storage,
// which happens with the next checkpoint or after FlushInterval. Its
// payload is marshalled once, here.
func (x *execution) emit(data EventData) {
	typ := data.EventType()
	raw, err := json.Marshal(data)
	if err != nil {
		raw, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
	}
	x.mu.Lock()
	x.seq++
	now := time.Now().UTC()
	ev := store.Event{RunID: x.p.RunID, Seq: x.seq, Type: typ, Data: raw, CreatedAt: now}
	x.pending = append(x.pending, ev)
	if x.p.OnEvent != nil {
		x.p.OnEvent(ev)
	}
	flushed := false
	if typ == EventTextDelta && x.deltaSince.IsZero() {
		x.deltaSince = now
	}
	// Measured from the first unstored delta, not from the oldest pending
	// event: after a long wait for the first token (the start event is
	// pending since the run began) the first delta does not write to the
	// store on the token path, and an answer that streams in less than
	// FlushInterval is stored once, with the step's checkpoint.
	if typ == EventTextDelta && now.Sub(x.deltaSince) >= FlushInterval {
		// A long stream: store (and publish) its deltas so far. A
		// failure here is retried with the next flush or checkpoint.
		if err := x.saveLocked(x.ctx, nil); err != nil {
			x.l.Log.WarnContext(x.ctx, "flush events", "err", err)
		}
		flushed = true
	}
	x.mu.Unlock()
	if flushed {
		// On the token stream's path: never wait for a publisher that is
		// busy; it (or the next flush) hands these events on.
		x.publish(true)
	}
}

// publish hands stored events to OnStored, in order, outside mu: a slow
// fan-out (a NOTIFY round trip on PostgreSQL) holds neither the model
// stream nor the tools' checkpoints. With try, it gives way to a publisher
// already at work.
func (x *execution) publish(try bool) {
	if x.p.OnStored == nil {
		return
	}
	if try {
		if !x.pubMu.TryLock() {
			return
		}
	} else {
		x.pubMu.Lock()
	}
	defer x.pubMu.Unlock()
	for {
		x.mu.Lock()
		evs := x.stored
		x.stored = nil
		x.mu.Unlock()
		if len(evs) == 0 {
			return
		}
		x.p.OnStored(evs)
	}
}

// checkpoint stores the state and the queued events in one transaction.
func (x *execution) checkpoint(ctx context.Context) error {
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.st.Seq = x.seq
	raw, err := json.Marshal(x.st)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	cp := &store.Checkpoint{RunID: x.p.RunID, Step: x.cpStep + 1, State: raw, CreatedAt: time.Now().UTC()}
	if err := x.saveLocked(ctx, cp); err != nil {
		return err
	}
	x.cpStep++
	return nil
}

// flush stores the queued events without a checkpoint.
func (x *execution) flush(ctx context.Context) error {
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.pending) == 0 {
		return nil
	}
	return x.saveLocked(ctx, nil)
}

// saveLocked writes cp (if any) and the queued events, and queues them for
// publish (which the caller runs after releasing mu). Holding mu across the
// write keeps checkpoints and events in order when tools finish together.
func (x *execution) saveLocked(ctx context.Context, cp *store.Checkpoint) error {
	if err := x.l.Store.SaveStep(ctx, cp, x.pending); err != nil {
		return fmt.Errorf("save step of run %s: %w", x.p.RunID, err)
	}
	x.stored = append(x.stored, x.pending...)
	x.pending = make([]store.Event, 0, len(x.pending))
	x.deltaSince = time.Time{}
	return nil
}
