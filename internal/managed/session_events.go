package managed

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// A session's events ride on agentd's runs: each user.message is a durable
// run on the session's conversation (queued, executed by a worker,
// checkpointed), and the session's history is, run after run, the
// user.message (the run's input) followed by the run's events translated
// (Translator). user.interrupt interrupts the running turn (run.Runs.Interrupt:
// it stops keeping what it checkpointed; a paused turn ends undecided); user.tool_confirmation decides the tool call a paused
// run waits for (agentd's approvals: allow → approve, deny → deny with
// deny_message as the reason the model sees).
//
// Agents of agentd's configuration file run as configured; agents created
// through the API run through the Resolver (Service.Agents), which the run
// service also uses to execute their turns. A custom tool's call pauses the
// run (requires_action) until user.custom_tool_result hands it the result
// (run.Runs.SubmitToolResult).

// Runner is what sessions need of agentd's runs (run.Runs).
type Runner interface {
	Submit(ctx context.Context, p run.SubmitParams) (store.Run, bool, error)
	Interrupt(ctx context.Context, tenant, id string) (store.Run, error)
	Decide(ctx context.Context, p run.DecideParams) (store.Approval, store.Run, error)
	SubmitToolResult(ctx context.Context, p run.ToolResultParams) (store.Approval, store.Run, error)
}

// RunEvents reads runs and their events.
type RunEvents interface {
	GetRun(ctx context.Context, tenant, id string) (store.Run, error)
	ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error)
	// ListApprovals: the system messages sent with a run's custom tools'
	// results are on its decisions.
	ListApprovals(ctx context.Context, runID string) ([]store.Approval, error)
}

// ErrEventsNotBuilt: sessions cannot take events on this process (no
// runs).
var ErrEventsNotBuilt = errors.New("session events need the run API, which this process does not serve")

// SendEventsRequest is the body of POST /v1/sessions/{id}/events.
type SendEventsRequest struct {
	Events []json.RawMessage `json:"events"`
}

// SentEvents answers it (BetaManagedAgentsSendSessionEvents).
type SentEvents struct {
	Data []json.RawMessage `json:"data"`
}

// sessionForEvents returns the session and its agent version.
func (s *Service) sessionForEvents(ctx context.Context, tenant, id string) (store.ManagedSession, store.ManagedAgent, error) {
	if s.Runs == nil || s.RunEvents == nil {
		return store.ManagedSession{}, store.ManagedAgent{}, ErrEventsNotBuilt
	}
	ms, err := s.Store.GetManagedSession(ctx, tenant, id)
	if err != nil {
		return ms, store.ManagedAgent{}, err
	}
	a, err := s.sessionAgentVersion(ctx, tenant, ms.AgentID, ms.AgentVersion)
	if err != nil {
		return ms, a, fmt.Errorf("session %s: its agent: %w", id, err)
	}
	// With the tools and MCP servers the session's updates gave it.
	a, _, err = sessionAgentOf(ms, a)
	return ms, a, err
}

// SendEvents handles events sent to a session: all of them are parsed
// and checked first (ParseSendEvents), then applied in order.
func (s *Service) SendEvents(ctx context.Context, tenant, id, decidedBy string, req SendEventsRequest) (SentEvents, error) {
	evs, err := ParseSendEvents(req)
	if err != nil {
		return SentEvents{}, err
	}
	ms, a, err := s.sessionForEvents(ctx, tenant, id)
	if err != nil {
		return SentEvents{}, err
	}
	if ms.Status == StatusTerminated {
		return SentEvents{}, invalid("session %s is terminated: it takes no more events", id)
	}
	if err := s.checkTexts(evs); err != nil {
		return SentEvents{}, err
	}
	waiting, err := s.checkCalls(ctx, "events", ms, evs)
	if err != nil {
		return SentEvents{}, err
	}
	return s.apply(ctx, ms, a, decidedBy, "events", evs, waiting)
}

// checkTexts runs the message guard over the texts the run service will
// guard when the events are applied (a message, a system message), so
// that one it refuses refuses the request before anything is applied.
func (s *Service) checkTexts(evs []ClientEvent) error {
	if s.Guard == nil {
		return nil
	}
	for _, e := range evs {
		var text []string
		switch e := e.(type) {
		case ClientUserMessage:
			text = e.Text
		case ClientSystemMessage:
			text = e.Text
		default:
			continue
		}
		if _, err := s.Guard.Check(strings.Join(text, "\n\n")); err != nil {
			return err
		}
	}
	return nil
}

// Refusals of an event that answers a tool call (a user.tool_confirmation
// or user.custom_tool_result), the same whether checkCalls finds them
// before any event is applied or the store when the event is applied (a
// request racing another).
func errNoneWaits(f string, custom bool) error {
	if custom {
		return invalid("%s: no custom tool call of this session waits for a result", f)
	}
	return invalid("%s: no tool call of this session waits for a confirmation", f)
}

func errNotWaiting(f, id string, custom bool) error {
	if custom {
		return invalid("%s.custom_tool_use_id: %q is not a custom tool call waiting for a result", f, id)
	}
	return invalid("%s.tool_use_id: %q is not a tool call waiting for a confirmation", f, id)
}

func errAnswered(f, id string, custom bool) error {
	if custom {
		return invalid("%s.custom_tool_use_id: %q has its result already", f, id)
	}
	return invalid("%s.tool_use_id: %q was decided already", f, id)
}

// checkCalls checks, before any event of a request is applied, what the
// session's state decides of the events that answer tool calls: each names
// a call its paused turn waits for, of its kind (a confirmation for a call
// that needs one, a result for a custom tool's), not answered before or
// earlier in the request, and comes while the turn still waits: not after
// a user.interrupt (which ends the turn) nor after the events answering
// its last waiting call (which resume it). So a request refused for any
// of its events changes nothing. Two requests sent at the same moment may
// still see one refused when applied: the store decides each call once.
// It returns the paused run the answers go to (apply's waiting; zero when
// the request answers no call).
func (s *Service) checkCalls(ctx context.Context, field string, ms store.ManagedSession, evs []ClientEvent) (store.Run, error) {
	firstResult, answers := "", false
	for _, e := range evs {
		switch e := e.(type) {
		case ClientToolConfirmation:
			answers = true
		case ClientCustomToolResult:
			answers = true
			if firstResult == "" {
				firstResult = e.CustomToolUseID
			}
		}
	}
	if !answers {
		return store.Run{}, nil
	}
	var (
		r   store.Run
		err error
	)
	if firstResult != "" {
		r, err = s.pausedFor(ctx, ms, firstResult)
	} else {
		r, _, err = s.activeRun(ctx, ms)
	}
	if err != nil {
		return store.Run{}, err
	}
	paused := r.ID != "" && r.Status == store.RunRequiresAction
	calls := map[string]store.Approval{}
	waiting := 0
	if paused {
		as, err := s.RunEvents.ListApprovals(ctx, r.ID)
		if err != nil {
			return store.Run{}, err
		}
		for _, a := range as {
			calls[a.ToolUseID] = a
			if a.Decision == store.DecisionPending {
				waiting++
			}
		}
	}
	for i, e := range evs {
		f := fmt.Sprintf("%s[%d]", field, i)
		var (
			id     string
			custom bool
		)
		switch e := e.(type) {
		case ClientInterrupt:
			paused = false
			continue
		case ClientToolConfirmation:
			id = e.ToolUseID
		case ClientCustomToolResult:
			id, custom = e.CustomToolUseID, true
		default:
			continue
		}
		if !paused {
			return store.Run{}, errNoneWaits(f, custom)
		}
		a, ok := calls[id]
		if !ok || (a.Kind == store.ApprovalKindCustomTool) != custom {
			return store.Run{}, errNotWaiting(f, id, custom)
		}
		if a.Decision != store.DecisionPending {
			return store.Run{}, errAnswered(f, id, custom)
		}
		a.Decision = store.DecisionResult // answered, whichever way
		calls[id] = a
		if waiting--; waiting == 0 {
			paused = false // the turn resumes
		}
	}
	return r, nil
}

// runnableVersion checks, before any event is applied, that the session's
// agent can run a turn here: an agent created through the API that this
// server cannot run (say, MCP servers by URL) is refused before a run is
// queued. It returns the version a turn pins (0: a configured agent).
func (s *Service) runnableVersion(f string, a store.ManagedAgent) (int, error) {
	if a.Tenant == store.SharedTenant {
		return 0, nil
	}
	if s.Agents == nil {
		return 0, invalid("%s: this process does not run agents created through the API", f)
	}
	c, err := decodeAgent(a)
	if err != nil {
		return 0, err
	}
	if _, err := s.Agents.Build(a.Tenant, a.ID, c); err != nil {
		return 0, err
	}
	return int(a.Version), nil
}

// apply applies parsed events (field names them in errors: events,
// initial_events) in order. A system.message goes with the user.message
// before it (checkOrder): both are one turn. waiting is the paused run
// that confirmations and custom tool results answer (checkCalls'); the
// store refuses a call that no longer waits (a request racing this one).
func (s *Service) apply(ctx context.Context, ms store.ManagedSession, a store.ManagedAgent, decidedBy, field string, evs []ClientEvent, waiting store.Run) (SentEvents, error) {
	out := SentEvents{Data: []json.RawMessage{}}
	version := 0
	for i, e := range evs {
		if _, ok := e.(ClientUserMessage); ok {
			v, err := s.runnableVersion(fmt.Sprintf("%s[%d]", field, i), a)
			if err != nil {
				return out, err
			}
			version = v
			break
		}
	}
	for i := 0; i < len(evs); i++ {
		f := fmt.Sprintf("%s[%d]", field, i)
		var (
			data []json.RawMessage
			err  error
		)
		switch e := evs[i].(type) {
		case ClientUserMessage:
			data, err = s.userMessage(ctx, ms, a, version, e, systemAfter(evs, &i))
		case ClientInterrupt:
			data, err = s.interrupt(ctx, ms)
		case ClientToolConfirmation:
			data, err = s.confirm(ctx, f, ms, waiting, decidedBy, e)
		case ClientCustomToolResult:
			data, err = s.customToolResult(ctx, f, ms, waiting, decidedBy, e, systemAfter(evs, &i))
		default: // a system.message not after a user.message: checkOrder refused it
			err = invalid("%s: %s cannot be applied here", f, e.EventType())
		}
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, data...)
	}
	return out, nil
}

// systemAfter returns the system.message right after evs[*i], if there
// is one, and moves *i past it: it goes with the event before it.
func systemAfter(evs []ClientEvent, i *int) *ClientSystemMessage {
	if *i+1 < len(evs) {
		if m, ok := evs[*i+1].(ClientSystemMessage); ok {
			*i++
			return &m
		}
	}
	return nil
}

// turnInput is what a session reads of its runs' input (run.SubmitParams
// as stored).
type turnInput struct {
	Message       string   `json:"message"`
	System        []string `json:"system"`
	SystemMessage string   `json:"system_message"`
}

func inputOf(r store.Run) turnInput {
	var in turnInput
	_ = json.Unmarshal(r.Input, &in)
	return in
}

// userMessage submits a turn: the message, with the session's system
// messages so far (those of its latest turn, which carries every earlier
// one) and the one sent with it (sys, if any).
func (s *Service) userMessage(ctx context.Context, ms store.ManagedSession, a store.ManagedAgent, version int, m ClientUserMessage, sys *ClientSystemMessage) ([]json.RawMessage, error) {
	runs, err := s.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID)
	if err != nil {
		return nil, err
	}
	busy := false
	for _, r := range runs {
		if !r.Status.Terminal() {
			busy = true
			break
		}
	}
	// Every message of a session takes a turn (concurrency policy
	// enqueue): one sent while a turn runs is queued and runs after it, in
	// the order they were sent; its user.message has processed_at null
	// until then (Managed Agents' documented behaviour).
	p := run.SubmitParams{Tenant: ms.Tenant, Agent: a.ID, AgentVersion: version,
		ConversationID: ms.ConversationID, Message: strings.Join(m.Text, "\n\n"), ConcurrencyPolicy: run.PolicyEnqueue}
	if n := len(runs); n > 0 {
		system, err := s.sessionSystem(ctx, runs)
		if err != nil {
			return nil, err
		}
		p.System = system
	}
	if sys != nil {
		p.SystemMessage = strings.Join(sys.Text, "\n\n")
	}
	var r store.Run
	if t, ok := s.Runs.(sessionSubmitter); ok {
		r, _, err = t.SubmitSession(ctx, ms, p) // the session as read above, not read again
	} else {
		r, _, err = s.Runs.Submit(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	um, err := userMessageEvent(r, busy)
	if err != nil {
		return nil, err
	}
	data := []json.RawMessage{um}
	if sm, ok, err := systemMessageEvent(r, busy); err != nil {
		return nil, err
	} else if ok {
		data = append(data, sm)
	}
	return data, nil
}

// sessionSystem is the session's system text so far, which a new turn
// carries: the latest turn's (its input's, which carries every earlier
// turn's, and what was sent with its custom tools' results), then what was
// sent with the results of an earlier turn's custom tools after the
// latest turn was submitted (an earlier turn that paused while a message
// was queued behind it), in the order they were decided.
func (s *Service) sessionSystem(ctx context.Context, runs []store.Run) ([]string, error) {
	last := runs[len(runs)-1]
	approvals, err := s.RunEvents.ListApprovals(ctx, last.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range runs[:len(runs)-1] {
		if r.Status.Terminal() && r.FinishedAt.Before(last.CreatedAt) {
			continue // decided, if ever, before the latest turn took its text
		}
		earlier, err := s.RunEvents.ListApprovals(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		for _, a := range earlier {
			if a.DecidedAt.After(last.CreatedAt) {
				approvals = append(approvals, a)
			}
		}
	}
	in := inputOf(last)
	return run.SessionSystem(in.System, in.SystemMessage, approvals), nil
}

// sessionSubmitter submits a turn of a session already read (Turns).
type sessionSubmitter interface {
	SubmitSession(ctx context.Context, ms store.ManagedSession, p run.SubmitParams) (store.Run, bool, error)
}

// userMessageEvent is the user.message of run r (its input), the first
// event of its turn.
// A message queued behind an unfinished turn (queued) has processed_at
// null: Managed Agents' sign that it is handled after the events before it.
func userMessageEvent(r store.Run, queued bool) (json.RawMessage, error) {
	type userMessage struct {
		ID          string      `json:"id"`
		Type        string      `json:"type"`
		ProcessedAt *string     `json:"processed_at"`
		Content     []textBlock `json:"content"`
	}
	um := userMessage{ID: userMessageID(r.ID), Type: EvUserMessage, Content: []textBlock{{Type: "text", Text: inputOf(r).Message}},
		ProcessedAt: turnProcessedAt(r, queued)}
	return json.Marshal(um)
}

// turnProcessedAt is when the turn's input was taken: null while it is
// queued behind an unfinished turn.
func turnProcessedAt(r store.Run, queued bool) *string {
	if queued && r.Status == store.RunQueued {
		return nil
	}
	at := mustTimestamp(r.CreatedAt)
	return &at
}

// systemMessageEvent is the system.message sent with run r's
// user.message, if one was (BetaManagedAgentsSystemMessageEvent): it
// follows the user.message, processed with it.
func systemMessageEvent(r store.Run, queued bool) (json.RawMessage, bool, error) {
	in := inputOf(r)
	if in.SystemMessage == "" {
		return nil, false, nil
	}
	b, err := json.Marshal(systemMessage{systemMessageID(r.ID), EvSystemMessage, turnProcessedAt(r, queued),
		[]textBlock{{Type: "text", Text: in.SystemMessage}}})
	return b, err == nil, err
}

func systemMessageID(runID string) string { return "sevt_" + runID + "_system" }

// inputEvents are the events of run r's input: its user.message, and the
// system.message sent with it.
func inputEvents(r store.Run, queued bool) ([]Out, error) {
	um, err := userMessageEvent(r, queued)
	if err != nil {
		return nil, err
	}
	outs := []Out{{ID: userMessageID(r.ID), Type: EvUserMessage, Data: um}}
	sm, ok, err := systemMessageEvent(r, queued)
	if err != nil {
		return nil, err
	}
	if ok {
		outs = append(outs, Out{ID: systemMessageID(r.ID), Type: EvSystemMessage, Data: sm})
	}
	return outs, nil
}

func userMessageID(runID string) string { return "sevt_" + runID + "_0" }

// activeRun is the session's oldest unfinished run (its turn is the one
// that runs, or waits for a decision; messages sent meanwhile are queued
// behind it), else its latest run, finished.
func (s *Service) activeRun(ctx context.Context, ms store.ManagedSession) (store.Run, bool, error) {
	runs, err := s.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID)
	if err != nil || len(runs) == 0 {
		return store.Run{}, false, err
	}
	for _, r := range runs {
		if !r.Status.Terminal() {
			return r, true, nil
		}
	}
	return runs[len(runs)-1], false, nil
}

func (s *Service) interrupt(ctx context.Context, ms store.ManagedSession) ([]json.RawMessage, error) {
	r, active, err := s.activeRun(ctx, ms)
	if err != nil {
		return nil, err
	}
	if active {
		if _, err := s.Runs.Interrupt(ctx, ms.Tenant, r.ID); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(evBase{ID: newID("sevt"), Type: EvUserInterrupt, ProcessedAt: mustTimestamp(time.Now())})
	return []json.RawMessage{b}, err
}

// confirm decides the call ev names of the paused run r.
func (s *Service) confirm(ctx context.Context, f string, ms store.ManagedSession, r store.Run, decidedBy string, ev ClientToolConfirmation) ([]json.RawMessage, error) {
	decision, result := store.DecisionApprove, "allow"
	if !ev.Allow {
		decision, result = store.DecisionDeny, "deny"
	}
	if r.ID == "" || r.Status != store.RunRequiresAction {
		return nil, errNoneWaits(f, false)
	}
	_, _, err := s.Runs.Decide(ctx, run.DecideParams{Tenant: ms.Tenant, RunID: r.ID, ToolUseID: ev.ToolUseID,
		Decision: decision, Reason: ev.DenyMessage, DecidedBy: decidedBy})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNotWaiting(f, ev.ToolUseID, false)
	case errors.Is(err, store.ErrConflict):
		return nil, errAnswered(f, ev.ToolUseID, false)
	case err != nil:
		return nil, err
	}
	b, err := json.Marshal(struct {
		evBase
		ToolUseID   string `json:"tool_use_id"`
		Result      string `json:"result"`
		DenyMessage string `json:"deny_message,omitempty"`
	}{evBase{ID: newID("sevt"), Type: EvToolConfirmation, ProcessedAt: mustTimestamp(time.Now())}, ev.ToolUseID, result, ev.DenyMessage})
	return []json.RawMessage{b}, err
}

// customToolResult hands the paused run r the client's result of a custom
// tool's call: its text blocks, joined, are the tool_result the model gets;
// sys, the system.message sent with it (nil: none), is appended to the
// turn's system prompt from the model call it resumes on, and to every
// later turn's.
func (s *Service) customToolResult(ctx context.Context, f string, ms store.ManagedSession, r store.Run, by string, ev ClientCustomToolResult, sys *ClientSystemMessage) ([]json.RawMessage, error) {
	if r.ID == "" || r.Status != store.RunRequiresAction {
		return nil, errNoneWaits(f, true)
	}
	content := strings.Join(ev.Text, "\n\n")
	var system string
	if sys != nil {
		system = strings.Join(sys.Text, "\n\n")
	}
	decided, _, err := s.Runs.SubmitToolResult(ctx, run.ToolResultParams{Tenant: ms.Tenant, RunID: r.ID, ToolUseID: ev.CustomToolUseID,
		Content: content, IsError: ev.IsError, SystemMessage: system, By: by})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNotWaiting(f, ev.CustomToolUseID, true)
	case errors.Is(err, store.ErrConflict):
		return nil, errAnswered(f, ev.CustomToolUseID, true)
	case err != nil:
		return nil, err
	}
	// As the history shows it once the run applied it (events.go).
	id := CustomToolResultID(r.ID, ev.CustomToolUseID)
	at := mustTimestamp(time.Now())
	b, err := json.Marshal(evCustomResult{evBase: evBase{ID: id, Type: EvCustomToolResult, ProcessedAt: at},
		CustomToolUseID: ev.CustomToolUseID, Content: []textBlock{{Type: "text", Text: content}}, IsError: ev.IsError})
	if err != nil || sys == nil {
		return []json.RawMessage{b}, err
	}
	// As stored (the message guard may have scrubbed it), as the history shows it.
	sb, err := json.Marshal(systemMessage{CustomToolSystemID(r.ID, ev.CustomToolUseID), EvSystemMessage, &at,
		[]textBlock{{Type: "text", Text: decided.SystemMessage}}})
	return []json.RawMessage{b, sb}, err
}

// maxPauseWait bounds how long a custom tool's result waits for its run
// to pause.
const maxPauseWait = 10 * time.Second

// pausedFor returns the session's latest run, once paused when it has just
// called tool toolUseID: a run stores a model call's events (the
// agent.custom_tool_use a client, like the SDK's tool runner, answers at
// once) at the checkpoint before the one that pauses it, so a result can
// arrive in between; it is held until the pause.
func (s *Service) pausedFor(ctx context.Context, ms store.ManagedSession, toolUseID string) (store.Run, error) {
	deadline := time.Now().Add(maxPauseWait)
	for {
		r, active, err := s.activeRun(ctx, ms)
		if err != nil || !active || r.Status == store.RunRequiresAction {
			return r, err
		}
		called, err := s.calledNotAnswered(ctx, r.ID, toolUseID)
		if err != nil || !called || time.Now().After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// calledNotAnswered reports whether run runID called toolUseID and has no
// result for it yet.
func (s *Service) calledNotAnswered(ctx context.Context, runID, toolUseID string) (bool, error) {
	evs, err := s.RunEvents.ListEvents(ctx, runID, 0, 0)
	if err != nil {
		return false, err
	}
	called := false
	for _, e := range evs {
		var d struct {
			ID        string `json:"id"`
			ToolUseID string `json:"tool_use_id"`
		}
		switch e.Type {
		case run.EventToolUse:
			if json.Unmarshal(e.Data, &d) == nil && d.ID == toolUseID {
				called = true
			}
		case run.EventToolResult:
			if json.Unmarshal(e.Data, &d) == nil && d.ToolUseID == toolUseID {
				return false, nil
			}
		}
	}
	return called, nil
}

// History translates the session's runs: every event of the session so
// far (stream-only previews left out).
func (s *Service) history(ctx context.Context, ms store.ManagedSession, a store.ManagedAgent) ([]Out, error) {
	runs, err := s.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID)
	if err != nil {
		return nil, err
	}
	tr, se, base, err := s.translator(ctx, ms, a)
	if err != nil {
		return nil, err
	}
	var all []Out
	unfinished := false // an earlier turn is unfinished
	for _, r := range runs {
		outs, err := se.passTo(tr, s, base, r.CreatedAt)
		if err != nil {
			return nil, err
		}
		all = append(all, outs...)
		outs, err = s.turn(ctx, tr, r, 0, unfinished)
		unfinished = unfinished || !r.Status.Terminal()
		if err != nil {
			return nil, err
		}
		for _, o := range outs {
			if !o.StreamOnly {
				all = append(all, o)
			}
		}
	}
	outs, err := se.passTo(tr, s, base, time.Time{})
	return append(all, outs...), err
}

// turn translates run r's events after seq after (its user.message first
// when after is 0), and its pause when it waits.
func (s *Service) turn(ctx context.Context, tr *Translator, r store.Run, after int64, behind bool) ([]Out, error) {
	var all []Out
	if after == 0 {
		in, err := inputEvents(r, behind)
		if err != nil {
			return nil, err
		}
		all = append(all, in...)
	}
	evs, err := s.RunEvents.ListEvents(ctx, r.ID, after, 0)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		outs, err := tr.Translate(e)
		if err != nil {
			return nil, err
		}
		all = append(all, outs...)
	}
	if r.Status == store.RunRequiresAction {
		if o, ok, err := tr.Paused(); err != nil {
			return nil, err
		} else if ok {
			all = append(all, o)
		}
	}
	if end, ok, err := tr.Ended(r); err != nil {
		return nil, err
	} else if ok {
		all = append(all, end...)
	}
	return all, nil
}

// translator is a Translator for session ms, whose agent (with the
// session's tools) is a, at the session's start: with the agent version's
// tools and the session's first budget. The session's events (se), passed
// in order, change its tools and budget as the updates did; base is the
// agent version's configuration they apply to.
func (s *Service) translator(ctx context.Context, ms store.ManagedSession, a store.ManagedAgent) (*Translator, *sessionEvents, AgentConfig, error) {
	var d SessionData
	if err := json.Unmarshal(ms.Data, &d); err != nil {
		return nil, nil, AgentConfig{}, fmt.Errorf("decode session %s: %w", ms.ID, err)
	}
	if d.Agent != nil { // a is the session's agent: read the version's
		v, err := s.sessionAgentVersion(ctx, ms.Tenant, ms.AgentID, ms.AgentVersion)
		if err != nil {
			return nil, nil, AgentConfig{}, fmt.Errorf("session %s: its agent: %w", ms.ID, err)
		}
		a = v
	}
	base, err := decodeAgent(a)
	if err != nil {
		return nil, nil, base, err
	}
	evs, err := s.Store.ListManagedSessionEvents(ctx, ms.Tenant, ms.ID)
	if err != nil {
		return nil, nil, base, err
	}
	budget, err := initialBudget(d, evs)
	if err != nil {
		return nil, nil, base, err
	}
	return &Translator{Tools: s.toolsOf(ms.Tenant, base), Budget: budget}, &sessionEvents{evs: evs, tenant: ms.Tenant}, base, nil
}

// toolsOf is how the stream reports the tool calls of agent c of tenant.
func (s *Service) toolsOf(tenant string, c AgentConfig) func(string) ToolInfo {
	// agentd's tools are reported as the toolsets they were configured
	// in; a name in no toolset is a server tool.
	byName := map[string]string{}
	for _, t := range c.Tools {
		if t.Type == ToolMCPToolset {
			for _, tc := range t.Configs {
				byName[tc.Name] = t.MCPServerName
			}
		}
	}
	byURL := s.Agents.MCPServerOf(tenant, c) // tools of its MCP servers by URL
	return ToolsOf(c, func(name string) (string, bool) {
		if server, ok := byName[name]; ok {
			return server, ok
		}
		return byURL(name)
	})
}

// ListEvents lists a session's events, oldest first.
func (s *Service) ListEvents(ctx context.Context, tenant, id string, q url.Values) (Page[json.RawMessage], error) {
	var out Page[json.RawMessage]
	for k := range q {
		switch k {
		case "limit", "page", "order":
		default:
			return out, invalid("unknown query parameter %q", k)
		}
	}
	limit, offset := 1000, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return out, invalid("limit: want an integer from 1 to 1000, got %q", v)
		}
		limit = n
	}
	if v := q.Get("page"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || err2 != nil || n < 0 || !strings.HasPrefix(string(b), "o:") {
			return out, invalid("page: not a cursor this server returned")
		}
		offset = n
	}
	ms, a, err := s.sessionForEvents(ctx, tenant, id)
	if err != nil {
		return out, err
	}
	all, err := s.history(ctx, ms, a)
	if err != nil {
		return out, err
	}
	if q.Get("order") == "desc" {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	} else if o := q.Get("order"); o != "" && o != "asc" {
		return out, invalid("order: want asc or desc, got %q", o)
	}
	out.Data = []json.RawMessage{}
	for i := offset; i < len(all) && i < offset+limit; i++ {
		out.Data = append(out.Data, all[i].Data)
	}
	if offset+limit < len(all) {
		next := base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset+limit)))
		out.NextPage = &next
	}
	return out, nil
}

// StreamParams are a stream's options.
type StreamParams struct {
	// Deltas: send agent.message previews (event_deltas=agent.message).
	Deltas bool
	// LastEventID resumes after that event (a reconnect); empty: from the
	// current turn (a finished one is not replayed).
	LastEventID string
	// Poll is how often the session is read for new events.
	Poll time.Duration
}

// ParseStream reads a stream's query.
func ParseStream(q url.Values, lastEventID string) (StreamParams, error) {
	p := StreamParams{LastEventID: lastEventID}
	for k, vs := range q {
		switch k {
		case "event_deltas[]", "event_deltas":
			for _, v := range vs {
				switch v {
				case "agent.message":
					p.Deltas = true
				case "agent.thinking":
				default:
					return p, invalid("event_deltas: unknown delta type %q", v)
				}
			}
		default:
			return p, invalid("unknown query parameter %q", k)
		}
	}
	return p, nil
}

// SessionStream is a session read for its event stream (OpenStream).
type SessionStream struct {
	s  *Service
	ms store.ManagedSession
	a  store.ManagedAgent // the session's agent version
}

// OpenStream reads session id (and its agent version) for a stream, so
// that a stream that cannot start is refused before it starts; its errors
// are GetSession's. It reads no runs: the stream does.
func (s *Service) OpenStream(ctx context.Context, tenant, id string) (*SessionStream, error) {
	ms, err := s.Store.GetManagedSession(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	a, err := s.sessionAgentVersion(ctx, ms.Tenant, ms.AgentID, ms.AgentVersion)
	if err != nil {
		return nil, fmt.Errorf("session %s: its agent %s v%d: %w", ms.ID, ms.AgentID, ms.AgentVersion, err)
	}
	return &SessionStream{s: s, ms: ms, a: a}, nil
}

// Stream is OpenStream then SessionStream.Stream.
func (s *Service) Stream(ctx context.Context, tenant, id string, p StreamParams, send func([]Out) error) error {
	st, err := s.OpenStream(ctx, tenant, id)
	if err != nil {
		return err
	}
	return st.Stream(ctx, p, send)
}

// Stream sends the session's events to send as they happen until ctx
// ends or send fails. Each turn is translated from its first event (so the
// translation's state and ids are those of the history); only events after
// the resume point are sent.
//
// What it reads, per turn, when nothing is missed: the session's runs
// when woken for a new turn (that run's row is the first read's status),
// the run's events (once subscribed to the run's hub events, so nothing
// stored after the read is missed), and, after a hub event that comes
// with a change of the run's status, the run and its events again.
//
// send gets the events in batches, in order: those ready at the same
// moment (a store read's, the hub's pending ones) come in one call, so a
// writer can flush them together.
func (st *SessionStream) Stream(ctx context.Context, p StreamParams, send func([]Out) error) error {
	s, ms := st.s, st.ms
	if s.Runs == nil || s.RunEvents == nil {
		return ErrEventsNotBuilt
	}
	if p.Poll <= 0 {
		p.Poll = s.pollInterval()
	}
	tr, se, base, err := s.translator(ctx, ms, st.a)
	if err != nil {
		return err
	}
	// Woken from here on: a turn submitted after the read below wakes it.
	tick := time.NewTicker(p.Poll)
	defer tick.Stop()
	follow, unfollow := s.follow(ms.ConversationID, tick.C)
	defer unfollow()
	runs, err := s.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID)
	if err != nil {
		return err
	}
	// Where to start: after LastEventID, else at the current turn.
	startRun, skipThrough := len(runs), ""
	afterSessionEvent := false // resuming after a session event (session.updated)
	if p.LastEventID != "" {
		for i, r := range runs {
			if strings.HasPrefix(p.LastEventID, "sevt_"+r.ID+"_") {
				startRun, skipThrough = i, p.LastEventID
			}
		}
		if skipThrough == "" {
			if i := se.index(p.LastEventID); i >= 0 {
				// Its place: before the first turn created after it.
				startRun, skipThrough, afterSessionEvent = len(runs), p.LastEventID, true
				for j, r := range runs {
					if se.evs[i].CreatedAt.Before(r.CreatedAt) {
						startRun = j
						break
					}
				}
			}
		}
	} else {
		// The oldest unfinished turn: the one that runs (messages sent
		// meanwhile are queued behind it).
		for i, r := range runs {
			if !r.Status.Terminal() {
				startRun = i
				break
			}
		}
	}
	// The translator's state must be that of the history before startRun.
	createdAt := func(i int) time.Time { // of runs[i]; zero: after the last
		if i < len(runs) {
			return runs[i].CreatedAt
		}
		return time.Time{}
	}
	for i, r := range runs[:startRun] {
		if _, err := se.passTo(tr, s, base, createdAt(i)); err != nil {
			return err
		}
		if _, err := s.turn(ctx, tr, r, 0, false); err != nil {
			return err
		}
	}
	// The session's events before runs[passed] are sent (or were seen).
	passed := -1
	if !afterSessionEvent { // else sent from the start of startRun's, skipped through LastEventID
		if _, err := se.passTo(tr, s, base, createdAt(startRun)); err != nil {
			return err
		}
		passed = startRun
	}
	sent := map[string]bool{}
	skipping := skipThrough != ""
	emit := func(outs []Out) error {
		batch := outs[:0:0]
		for _, o := range outs {
			if skipping {
				if o.ID == skipThrough {
					skipping = false
				}
				continue
			}
			if o.StreamOnly && !p.Deltas {
				continue
			}
			if o.ID != "" {
				if sent[o.ID] {
					continue
				}
				sent[o.ID] = true
			}
			batch = append(batch, o)
		}
		if len(batch) == 0 {
			return nil
		}
		return send(batch)
	}
	idx := startRun
	var seq int64 // events of runs[idx] translated
	paused := false
	// fresh: runs[idx] was just read with the session's runs (its status
	// is as recent as a read of the run would be).
	fresh := true
	umID := "" // runs[idx]'s user.message id
	for {
		if idx >= len(runs) || passed != idx {
			// The session's events before this turn (all, between
			// turns): the session's updates.
			if se.evs, err = s.Store.ListManagedSessionEvents(ctx, ms.Tenant, ms.ID); err != nil {
				return err
			}
			outs, err := se.passTo(tr, s, base, createdAt(idx))
			if err != nil {
				return err
			}
			if err := emit(outs); err != nil {
				return err
			}
			passed = idx
		}
		if idx < len(runs) {
			if umID == "" {
				umID = userMessageID(runs[idx].ID)
			}
			// Subscribed before the read below: what is stored after it
			// is announced.
			follow.watch(runs[idx].ID)
		}
		// current: the hub's events just sent are all there is to send;
		// the store read is skipped (the tick still reads).
		current := false
		if idx < len(runs) && sent[umID] {
			// The hub's events that continue the turn's sequence, sent
			// without waiting for the read below (stream_wake.go).
			var outs []Out
			live := follow.take()
			current = len(live) > 0
			for _, e := range live {
				if statusEvent(e.Type) {
					current = false // the run's status is read with it
				}
				if e.RunID == runs[idx].ID && e.Seq <= seq {
					continue // read already (published after the subscription, stored before the read)
				}
				if e.RunID != runs[idx].ID || e.Seq != seq+1 {
					current = false
					break // a gap: the read fills it
				}
				// As the store keeps it (microseconds; sqlstore.NormTime).
				e.CreatedAt = time.UnixMicro(e.CreatedAt.UnixMicro()).UTC()
				o, err := tr.Translate(e)
				if err != nil {
					return err
				}
				outs = append(outs, o...)
				seq = e.Seq
				paused = false
			}
			if err := emit(outs); err != nil {
				return err
			}
		}
		if idx < len(runs) && !current {
			r := runs[idx]
			if !fresh {
				if r, err = s.RunEvents.GetRun(ctx, ms.Tenant, runs[idx].ID); err != nil {
					return err
				}
			}
			var outs []Out
			if seq == 0 && !sent[umID] { // once sent, emit would skip it
				in, err := inputEvents(r, false)
				if err != nil {
					return err
				}
				outs = append(outs, in...)
			}
			evs, err := s.RunEvents.ListEvents(ctx, r.ID, seq, 0)
			if err != nil {
				return err
			}
			if fresh {
				fresh = false
				for _, e := range evs {
					if statusEvent(e.Type) {
						// It changed status since the runs were read:
						// read it now.
						if r, err = s.RunEvents.GetRun(ctx, ms.Tenant, r.ID); err != nil {
							return err
						}
						break
					}
				}
			}
			for _, e := range evs {
				o, err := tr.Translate(e)
				if err != nil {
					return err
				}
				outs = append(outs, o...)
				seq = e.Seq
				paused = false
			}
			if seq == 0 && r.Status == store.RunRunning {
				// A worker runs the turn, whose start event is stored
				// with its first checkpoint: say so now, under the start
				// event's id (the translated one is then skipped).
				id := fmt.Sprintf("sevt_%s_1", r.ID)
				o, err := out(id, "session.status_running", false, evBase{ID: id, Type: "session.status_running",
					ProcessedAt: mustTimestamp(r.StartedAt)})
				if err != nil {
					return err
				}
				outs = append(outs, o)
			}
			if r.Status == store.RunRequiresAction && !paused {
				if o, ok, err := tr.Paused(); err != nil {
					return err
				} else if ok {
					outs = append(outs, o)
				}
				paused = true
			}
			if err := emit(outs); err != nil { // a repeated user.message is skipped by its id
				return err
			}
			if r.Status.Terminal() && len(evs) == 0 {
				end, _, err := tr.Ended(r)
				if err != nil {
					return err
				}
				if err := emit(end); err != nil {
					return err
				}
				idx, seq, umID = idx+1, 0, ""
				continue
			}
			if r.Status.Terminal() {
				// It ended, with events still to read, or read
				// before the subscription: no hub event may wake the
				// stream for its end; read again now.
				continue
			}
		}
		var cur string
		if idx < len(runs) {
			cur = runs[idx].ID
		}
		if !follow.wait(ctx, cur) {
			return nil
		}
		fresh = false
		if idx >= len(runs) {
			if runs, err = s.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID); err != nil {
				return err
			}
			fresh = true
		}
	}
}

// statusEvent reports whether a run event of type typ comes with a change
// of the run's status (it ends, or pauses for the client): a stream reads
// the run from the store after it.
func statusEvent(typ string) bool {
	switch typ {
	case run.EventDone, run.EventError, run.EventApprovalRequired, run.EventToolResultRequired:
		return true
	}
	return false
}
