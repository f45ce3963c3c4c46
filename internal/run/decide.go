package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// DecideParams are the inputs of Runs.Decide.
type DecideParams struct {
	Tenant    string
	RunID     string
	ToolUseID string
	// Decision is store.DecisionApprove or store.DecisionDeny (a timeout
	// is ExpireApprovals').
	Decision store.Decision
	Reason   string
	// DecidedBy identifies who decided (the API key id; "" with
	// authentication off).
	DecidedBy string
}

// Decide records a person's decision on a tool call that a paused run
// waits for. The run goes on (queued, then executed by a worker) once every
// call of its step is decided: an approved call runs exactly once, a denied
// one gives the model an error tool_result with the reason. Errors:
// store.ErrNotFound (no such run of the tenant, or no such call),
// store.ErrConflict (decided already — the returned Approval says how —,
// or the run is no longer paused).
func (r *Runs) Decide(ctx context.Context, p DecideParams) (store.Approval, store.Run, error) {
	if p.Decision != store.DecisionApprove && p.Decision != store.DecisionDeny {
		return store.Approval{}, store.Run{}, fmt.Errorf("decision %q: want approve or deny", p.Decision)
	}
	return r.decide(ctx, store.DecideApprovalParams{
		Tenant: p.Tenant, RunID: p.RunID, ToolUseID: p.ToolUseID, Decision: p.Decision, Reason: p.Reason, DecidedBy: p.DecidedBy,
	})
}

// ToolResultParams are the inputs of Runs.SubmitToolResult.
type ToolResultParams struct {
	Tenant    string
	RunID     string
	ToolUseID string
	// Content is the tool_result the model gets.
	Content string
	IsError bool
	// SystemMessage is system text sent with the result (a Managed Agents
	// system.message): appended to the run's system prompt from the model
	// call the result resumes on. "" for none.
	SystemMessage string
	// By identifies the client (the API key id).
	By string
}

// SubmitToolResult hands a paused run the result of a call of a tool the
// client executes (tool.Client: a Managed Agents custom tool). The run
// goes on once every call it waits for is decided, as with Decide, whose
// errors it has.
func (r *Runs) SubmitToolResult(ctx context.Context, p ToolResultParams) (store.Approval, store.Run, error) {
	content, err := json.Marshal(p.Content)
	if err != nil {
		return store.Approval{}, store.Run{}, fmt.Errorf("encode tool result: %w", err)
	}
	// The guard a run's message and system texts pass (Submit's).
	if _, p.SystemMessage, err = r.Service.checkSystem(nil, p.SystemMessage); err != nil {
		return store.Approval{}, store.Run{}, err
	}
	return r.decide(ctx, store.DecideApprovalParams{
		Tenant: p.Tenant, RunID: p.RunID, ToolUseID: p.ToolUseID, Decision: store.DecisionResult,
		DecidedBy: p.By, Result: content, IsError: p.IsError, SystemMessage: p.SystemMessage,
	})
}

func (r *Runs) decide(ctx context.Context, p store.DecideApprovalParams) (store.Approval, store.Run, error) {
	p.DecidedAt = time.Now().UTC().Truncate(time.Microsecond)
	a, run, err := r.Queue.DecideApproval(ctx, p)
	if err != nil {
		return a, run, err
	}
	if a.Kind != store.ApprovalKindCustomTool {
		s := r.Service
		waited := a.DecidedAt.Sub(a.RequestedAt)
		s.Metrics.ObserveApproval(string(a.Decision), waited)
		s.auditApproval(ctx, run.Agent, a, string(a.Decision), a.Reason, a.DecidedBy, waited)
	}
	r.Log.InfoContext(ctx, "tool call decided", "run_id", a.RunID, "tool_use_id", a.ToolUseID, "tool", a.Name,
		"decision", a.Decision, "decided_by", a.DecidedBy, "run_status", run.Status)
	return a, run, nil
}

// ExpireApprovals denies, as timed out, the calls whose approval expired
// before now (a run's agent may fail it instead: on_approval_timeout); it
// returns how many it decided. Every worker runs it (Reclaim); a call
// another worker decided first is skipped.
func (r *Runs) ExpireApprovals(ctx context.Context, now time.Time) (int, error) {
	expired, err := r.Store.ListExpiredApprovals(ctx, now, 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range expired {
		_, _, err := r.decide(ctx, store.DecideApprovalParams{
			Tenant: a.Tenant, RunID: a.RunID, ToolUseID: a.ToolUseID, Decision: store.DecisionTimeout,
			Reason: ApprovalTimedOut, DecidedBy: store.DecidedByTimeout,
		})
		switch {
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		case err != nil:
			return n, fmt.Errorf("time out approval %s of run %s: %w", a.ToolUseID, a.RunID, err)
		default:
			n++
		}
	}
	return n, nil
}
