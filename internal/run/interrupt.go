package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/store"
)

// ErrInterrupted: the run was asked to stop keeping what it checkpointed
// (Runs.Interrupt; Managed Agents' user.interrupt). It ends in status
// interrupted, and its conversation receives the turn as far as it was
// checkpointed.
var ErrInterrupted = errors.New("run interrupted")

// interruptedMessage is the tool_result of a call the interrupt cut off.
const interruptedMessage = "the run was interrupted before this tool call finished"

// Interrupt stops the tenant's run keeping what it checkpointed: a queued
// run ends interrupted at once (nothing ran); a running one stops at once
// when it runs in this process, else at its worker's next lease renewal;
// a paused one (requires_action) ends here and now, its pending calls
// undecided. The conversation receives the run's turn as far as it was
// checkpointed (a tool call without a result gets an error result saying
// it was interrupted). A finished run is returned unchanged.
func (r *Runs) Interrupt(ctx context.Context, tenant, id string) (store.Run, error) {
	run, err := r.Store.RequestInterrupt(ctx, tenant, id, time.Now().UTC())
	if err != nil {
		return run, err
	}
	switch run.Status {
	case store.RunRunning:
		r.mu.Lock()
		cancel := r.cancels[id]
		r.mu.Unlock()
		if cancel != nil {
			cancel(ErrInterrupted)
		} else {
			r.Service.stopInline(id, ErrInterrupted)
		}
	case store.RunRequiresAction:
		if err := r.Service.keepCheckpointed(ctx, run, true); err != nil {
			return run, fmt.Errorf("interrupt run %s: %w", id, err)
		}
		r.Service.turns.ended(run.ConversationID)
		return r.Store.GetRun(ctx, tenant, id)
	}
	if run.Status.Terminal() {
		r.Service.turns.ended(run.ConversationID)
	}
	return run, nil
}

// stopCause is the cause a worker stops a run with when its cancellation
// was requested: ErrInterrupted when it was an interrupt.
func stopCause(ctx context.Context, st interface {
	GetRun(ctx context.Context, tenant, id string) (store.Run, error)
}, tenant, id string) error {
	if rn, err := st.GetRun(context.WithoutCancel(ctx), tenant, id); err == nil && rn.InterruptRequested {
		return ErrInterrupted
	}
	return ErrCanceled
}

// keepCheckpointed ends an interrupted run: its row becomes interrupted
// and, in the same transaction, its conversation receives the run's turn
// as its latest checkpoint holds it (when a model call had answered at
// all). withEvent stores the run's error event too (a paused run, whose
// loop is not running to emit it).
func (s *Service) keepCheckpointed(ctx context.Context, rn store.Run, withEvent bool) error {
	ctx = context.WithoutCancel(ctx)
	var in runInput
	_ = json.Unmarshal(rn.Input, &in)
	var st state
	cp, err := s.Store.LatestCheckpoint(ctx, rn.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("load checkpoint: %w", err)
	default:
		if err := json.Unmarshal(cp.State, &st); err != nil {
			return fmt.Errorf("decode checkpoint %d: %w", cp.Step, err)
		}
	}
	final := store.UpdateRunParams{
		ID: rn.ID, Status: store.RunInterrupted, Error: "interrupted: " + ClassifyError(ErrInterrupted).Message,
		Attempt: rn.Attempt, Steps: st.Step, InputTokens: st.Usage.InputTokens, OutputTokens: st.Usage.OutputTokens,
		CostUSD: st.CostUSD, StartedAt: rn.StartedAt, FinishedAt: time.Now().UTC(),
	}
	var events []store.Event
	if withEvent {
		last := st.Seq
		for {
			evs, err := s.Store.ListEvents(ctx, rn.ID, last, 1000)
			if err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			if len(evs) == 0 {
				break
			}
			last = evs[len(evs)-1].Seq
		}
		raw, _ := json.Marshal(ClassifyError(ErrInterrupted))
		events = []store.Event{{RunID: rn.ID, Seq: last + 1, Type: EventError, Data: raw, CreatedAt: final.FinishedAt}}
	}
	msgs := closeTurn(st)
	if !hasAssistant(msgs) {
		// Nothing the model said was checkpointed: the conversation is
		// left as it was.
		if err := s.Store.UpdateRun(ctx, final); err != nil {
			return fmt.Errorf("update run: %w", err)
		}
		if len(events) > 0 {
			return s.Store.SaveStep(ctx, nil, events)
		}
		return nil
	}
	conv, err := s.Store.GetConversation(ctx, rn.Tenant, rn.ConversationID)
	create := false
	switch {
	case errors.Is(err, store.ErrNotFound) && in.NewConversation:
		// Created with the interrupted turn, as a commit creates it.
		create = true
		conv = store.Conversation{ID: rn.ConversationID, Tenant: rn.Tenant, Agent: rn.Agent}
	case err != nil:
		return fmt.Errorf("load conversation: %w", err)
	}
	maxMessages := 0
	if a, err := s.agent(ctx, rn.Tenant, rn.Agent, in.AgentVersion, rn.ConversationID); err == nil {
		maxMessages = a.MaxMessages
	}
	stored := make([]store.Message, len(msgs))
	for i, m := range msgs {
		stored[i] = store.Message{Role: m.Role, Content: m.Content}
	}
	p := store.AppendMessagesParams{
		ConversationID: conv.ID, Tenant: rn.Tenant, ExpectedVersion: conv.Version, Messages: stored,
		Create: create, Agent: rn.Agent,
		TrimBeforeSeq: trimBefore(conv.Messages, msgs, maxMessages), FinishRun: &final, Events: events,
	}
	if s.ConversationTTL > 0 {
		p.ExpiresAt = time.Now().UTC().Add(s.ConversationTTL)
	}
	if _, err := s.Store.AppendMessages(ctx, p); err != nil {
		return fmt.Errorf("append the interrupted turn: %w", err)
	}
	s.Metrics.ObserveRun(rn.Agent, string(store.RunInterrupted), st.Step, time.Since(rn.StartedAt))
	return nil
}

// closeTurn returns the checkpointed messages of a turn, closed so that a
// later turn can follow: an assistant message asking for tools gets its
// tool results, the finished ones and, for the others, an error result
// saying the interrupt cut them off.
func closeTurn(st state) []llm.Message {
	msgs := st.Messages
	n := len(msgs)
	if n == 0 || msgs[n-1].Role != "assistant" {
		return msgs
	}
	var blocks []llm.Block
	if json.Unmarshal(msgs[n-1].Content, &blocks) != nil {
		return msgs
	}
	done := make(map[string]llm.Block, len(st.Results))
	for _, r := range st.Results {
		done[r.ToolUseID] = r
	}
	var results []llm.Block
	for _, b := range blocks {
		if b.Type != "tool_use" {
			continue
		}
		r, ok := done[b.ID]
		if !ok {
			r = llm.Block{Type: "tool_result", ToolUseID: b.ID, Content: interruptedMessage, IsError: true}
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		return msgs
	}
	content, _ := json.Marshal(results)
	return append(append([]llm.Message(nil), msgs...), llm.Message{Role: "user", Content: content})
}

func hasAssistant(msgs []llm.Message) bool {
	for _, m := range msgs {
		if m.Role == "assistant" {
			return true
		}
	}
	return false
}
