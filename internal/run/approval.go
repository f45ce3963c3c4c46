package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// DefaultApprovalTimeout is how long a tool call waits for its decision
// when the agent sets no approval_timeout.
const DefaultApprovalTimeout = 24 * time.Hour

// ApprovalTimedOut is the reason of a call denied because nobody decided
// in time; the model sees it in the call's error tool_result.
const ApprovalTimedOut = "approval timed out"

// ErrRequiresAction: the run paused until a person decides on some of its
// tool calls (see PausedError). It is not a failure: the run is stored in
// status requires_action and goes on, as a queued run, once every call is
// decided.
var ErrRequiresAction = errors.New("the run waits for a person's approval of a tool call")

// ErrApprovalTimeout: a call's approval timed out and the agent fails the
// run then (agents[].on_approval_timeout: fail).
var ErrApprovalTimeout = errors.New("a tool call's approval timed out")

// PausedError is the error of a run that paused for approvals; errors.Is
// finds ErrRequiresAction in it.
type PausedError struct {
	// Pending are the calls it waits for, as stored.
	Pending []store.Approval
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("%v (%d tool calls)", ErrRequiresAction, len(e.Pending))
}

// Is makes errors.Is(err, ErrRequiresAction) true.
func (e *PausedError) Is(target error) bool { return target == ErrRequiresAction }

// ApprovalPolicy says which of an agent's tool calls wait for a person's
// decision, and how long.
type ApprovalPolicy struct {
	// Tools are tool names or path.Match globs (agents[].approval_required
	// and the tools that ask for it themselves).
	Tools []string
	// Timeout is how long a call waits (0: DefaultApprovalTimeout).
	Timeout time.Duration
	// FailOnTimeout fails the run when a call times out; else the model
	// gets an error tool_result (ApprovalTimedOut) and the run goes on.
	FailOnTimeout bool
}

// Requires reports whether calls of the tool need a decision.
func (p *ApprovalPolicy) Requires(name string) bool {
	for _, g := range p.Tools {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (p *ApprovalPolicy) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultApprovalTimeout
}

// Approval events.
const (
	// EventApprovalRequired: a tool call waits for a decision; the run
	// pauses (status requires_action) after the events of its step.
	EventApprovalRequired = "approval_required" // ApprovalRequiredEvent
	// EventApprovalDecided: the run resumed with the decision on a call:
	// approved (the call runs), denied or timed out (the model gets an
	// error tool_result with the reason).
	EventApprovalDecided = "approval_decided" // ApprovalDecidedEvent
	// EventToolResultRequired: a call of a tool the client executes (a
	// custom tool) waits for its result; the run pauses.
	EventToolResultRequired = "tool_result_required" // ToolResultRequiredEvent
)

// ApprovalRequiredEvent is a tool call that waits for a decision.
type ApprovalRequiredEvent struct {
	ExpiresAt time.Time       `json:"expires_at"`
	Input     json.RawMessage `json:"input"`
	Name      string          `json:"name"`
	Step      int             `json:"step"`
	ToolUseID string          `json:"tool_use_id"`
}

// ToolResultRequiredEvent is a call of a tool the client executes (a
// custom tool): the run pauses until the client sends its result.
type ToolResultRequiredEvent ApprovalRequiredEvent

// ApprovalDecidedEvent is the decision a resumed run applies.
type ApprovalDecidedEvent struct {
	DecidedBy string         `json:"decided_by"`
	Decision  store.Decision `json:"decision"`
	Name      string         `json:"name"`
	Reason    string         `json:"reason,omitempty"`
	Step      int            `json:"step"`
	ToolUseID string         `json:"tool_use_id"`
}

// EventType implements EventData.
func (ApprovalRequiredEvent) EventType() string { return EventApprovalRequired }

// EventType implements EventData.
func (ApprovalDecidedEvent) EventType() string { return EventApprovalDecided }

// EventType implements EventData.
func (ToolResultRequiredEvent) EventType() string { return EventToolResultRequired }

// PauseFunc stores a run that pauses for approvals: its checkpoint, its
// events (ending with the approval_required events) and the approvals,
// atomically with the run's status (store.Approvals.PauseRun).
type PauseFunc func(ctx context.Context, r Result, cp *store.Checkpoint, events []store.Event, approvals []store.Approval) error

// gate sorts a step's pending tool calls: those that may run now (no
// approval needed, or approved), those decided against (their error result
// is recorded here), and those that still wait. Decisions are announced
// once (an approval_decided event each, then a checkpoint) and a timed-out
// call fails the run when the agent says so.
func (x *execution) gate(ctx context.Context, calls []llm.Block, done map[string]bool) (run, waiting []llm.Block, err error) {
	a := x.p.Agent
	announced := false
	for _, c := range calls {
		if done[c.ID] {
			continue
		}
		if x.clientTool(c.Name) {
			// The client runs it: its result, or wait for it.
			if d, ok := x.p.Decisions[c.ID]; ok && d.Decision != store.DecisionPending {
				x.clientResult(c, d)
				announced = true // checkpointed below
			} else {
				waiting = append(waiting, c)
			}
			continue
		}
		if !a.Approval.Requires(c.Name) {
			run = append(run, c)
			continue
		}
		d, ok := x.p.Decisions[c.ID]
		if !ok || d.Decision == store.DecisionPending {
			waiting = append(waiting, c)
			continue
		}
		if d.Decision == store.DecisionTimeout && a.Approval.FailOnTimeout {
			return nil, nil, fmt.Errorf("%w: %s (%s)", ErrApprovalTimeout, c.Name, c.ID)
		}
		if !x.st.announced(c.ID) {
			x.emit(ApprovalDecidedEvent{DecidedBy: d.DecidedBy, Decision: d.Decision, Name: c.Name, Reason: d.Reason, Step: x.st.Step, ToolUseID: c.ID})
			x.mu.Lock()
			x.st.Decided = append(x.st.Decided, c.ID)
			x.mu.Unlock()
			announced = true
		}
		if d.Decision == store.DecisionApprove {
			run = append(run, c)
			continue
		}
		x.deny(c, d)
	}
	if announced {
		// Announced once: a resume after this does not repeat them.
		if err := x.checkpoint(ctx); err != nil {
			return nil, nil, err
		}
	}
	return run, waiting, nil
}

// clientTool reports whether the agent's tool name is executed by the
// client (tool.Client).
func (x *execution) clientTool(name string) bool {
	for _, t := range x.p.Agent.Tools {
		if t.Spec().Name == name {
			return tool.IsClient(t)
		}
	}
	return false
}

// clientResult records the result the client sent for its tool's call (or
// the timeout's error).
func (x *execution) clientResult(c llm.Block, d store.Approval) {
	var content string
	isError := d.IsError
	switch {
	case d.Decision == store.DecisionTimeout:
		content, isError = fmt.Sprintf("tool %s was not run: the client sent no result in time", c.Name), true
	case json.Unmarshal(d.Result, &content) != nil:
		content = string(d.Result)
	}
	outcome := "ok"
	if isError {
		outcome = "error"
	}
	x.l.Metrics.ObserveTool(c.Name, outcome, d.DecidedAt.Sub(d.RequestedAt))
	x.emit(ToolResultEvent{Step: x.st.Step, ToolUseID: c.ID, Name: c.Name, Content: content, IsError: isError,
		DurationMS: d.DecidedAt.Sub(d.RequestedAt).Milliseconds(), SystemMessage: d.SystemMessage})
	x.mu.Lock()
	x.st.Results = append(x.st.Results, llm.Block{Type: "tool_result", ToolUseID: c.ID, Content: content, IsError: isError})
	x.mu.Unlock()
}

// announced reports whether the decision on the call was announced.
func (s *state) announced(id string) bool {
	for _, d := range s.Decided {
		if d == id {
			return true
		}
	}
	return false
}

// deny records the error result of a call decided against (it never ran).
func (x *execution) deny(c llm.Block, d store.Approval) {
	reason := d.Reason
	msg := "denied by a person"
	switch {
	case d.Decision == store.DecisionTimeout:
		msg = ApprovalTimedOut
	case reason != "":
		msg += ": " + reason
	}
	content := fmt.Sprintf("tool %s was not run: %s", c.Name, msg)
	x.l.Metrics.ObserveTool(c.Name, "denied", 0)
	x.emit(ToolResultEvent{Step: x.st.Step, ToolUseID: c.ID, Name: c.Name, Content: content, IsError: true})
	x.mu.Lock()
	x.st.Results = append(x.st.Results, llm.Block{Type: "tool_result", ToolUseID: c.ID, Content: content, IsError: true})
	x.mu.Unlock()
}

// pause stops the run until the waiting calls are decided: an
// approval_required event each, then the checkpoint, the events and the
// approvals go to Params.Pause in one transaction. It returns a
// *PausedError.
func (x *execution) pause(ctx context.Context, waiting []llm.Block) error {
	if x.p.Pause == nil {
		return fmt.Errorf("tool %s needs a person's approval, and this run cannot pause", waiting[0].Name)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	expires := now.Add(x.p.Agent.Approval.timeout())
	approvals := make([]store.Approval, len(waiting))
	for i, c := range waiting {
		kind := store.ApprovalKindApproval
		ev := EventData(ApprovalRequiredEvent{ExpiresAt: expires, Input: c.Input, Name: c.Name, Step: x.st.Step, ToolUseID: c.ID})
		if x.clientTool(c.Name) {
			kind, ev = store.ApprovalKindCustomTool, ToolResultRequiredEvent(ev.(ApprovalRequiredEvent))
		}
		x.emit(ev)
		approvals[i] = store.Approval{
			RunID: x.p.RunID, Tenant: x.p.Tenant, ToolUseID: c.ID, Kind: kind, Step: x.st.Step, Name: c.Name, Input: c.Input,
			RequestedAt: now, ExpiresAt: expires,
		}
	}
	res := x.result()
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	st := x.st
	st.Seq = x.seq
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	cp := &store.Checkpoint{RunID: x.p.RunID, Step: x.cpStep + 1, State: raw, CreatedAt: now}
	events := append([]store.Event(nil), x.pending...)
	if err := x.p.Pause(ctx, res, cp, events, approvals); err != nil {
		return err
	}
	x.st.Seq, x.cpStep = x.seq, x.cpStep+1
	x.pending, x.deltaSince = x.pending[:0], time.Time{}
	x.stored = append(x.stored, events...)
	return &PausedError{Pending: approvals}
}
