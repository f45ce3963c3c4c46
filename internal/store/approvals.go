package store

import (
	"context"
	"encoding/json"
	"time"
)

// RunRequiresAction is the state of a run paused until a person decides on
// one or more of its tool calls (see Approvals): no worker holds it and no
// lease is on it. The decision of its last pending call makes it queued
// again (DecideApprovalTx). requires_action → queued | canceled.
const RunRequiresAction RunStatus = "requires_action"

// Decision is what was decided about a tool call waiting for approval.
type Decision string

// Decisions. A timeout is a denial that nobody made: the call's expiry
// passed first. Approve and deny decide calls of kind ApprovalKindApproval,
// result those of kind ApprovalKindCustomTool; timeout either.
const (
	DecisionPending Decision = ""
	DecisionApprove Decision = "approve"
	DecisionDeny    Decision = "deny"
	DecisionTimeout Decision = "timeout"
	DecisionResult  Decision = "result"
)

// ApprovalKind is what a paused run waits for on a tool call.
type ApprovalKind string

// Approval kinds.
const (
	// ApprovalKindApproval: a person's yes or no to agentd running the
	// call.
	ApprovalKindApproval ApprovalKind = "approval"
	// ApprovalKindCustomTool: the client runs the tool (a custom tool of a
	// Managed Agents agent) and sends its result.
	ApprovalKindCustomTool ApprovalKind = "custom_tool"
)

// Approval is a tool call of a paused run that waits, or waited, for a
// person's decision.
type Approval struct {
	RunID     string
	Tenant    string
	ToolUseID string
	// Kind is what the call waits for; empty is ApprovalKindApproval.
	Kind ApprovalKind
	// Step is the run's step (model calls so far) that asked for the call.
	Step  int
	Name  string
	Input json.RawMessage
	// RequestedAt is when the run paused for it; ExpiresAt when it times
	// out if undecided.
	RequestedAt time.Time
	ExpiresAt   time.Time
	Decision    Decision
	Reason      string
	// DecidedBy identifies who decided: an API key id, "" with
	// authentication off, or DecidedByTimeout.
	DecidedBy string
	DecidedAt time.Time
	// Result and IsError are a custom tool's result (DecisionResult): the
	// tool_result content (a JSON string or array of content blocks).
	Result  json.RawMessage
	IsError bool
	// SystemMessage is system text sent with a custom tool's result (a
	// Managed Agents system.message): the run appends it to its system
	// prompt from the model call the result resumes on. "" for none.
	SystemMessage string
}

// DecidedByTimeout is the DecidedBy of a call that timed out.
const DecidedByTimeout = "agentd"

// PauseRunParams are the inputs of PauseRun.
type PauseRunParams struct {
	// Run is the run's row as it pauses: Status must be RunRequiresAction.
	Run UpdateRunParams
	// Checkpoint and Events are written as SaveStep writes them.
	Checkpoint *Checkpoint
	Events     []Event
	// Approvals are the calls the run waits for; a call of the run that
	// already has a row keeps it as it is.
	Approvals []Approval
}

// DecideApprovalParams are the inputs of DecideApprovalTx.
type DecideApprovalParams struct {
	Tenant    string
	RunID     string
	ToolUseID string
	Decision  Decision // approve, deny, result or timeout (see Decision)
	Reason    string
	DecidedBy string
	DecidedAt time.Time // zero: now
	// Result and IsError: a custom tool's result (DecisionResult).
	Result  json.RawMessage
	IsError bool
	// SystemMessage: sent with a custom tool's result (Approval's).
	SystemMessage string
}

// Approvals is the part of the seam that pauses runs for a person's
// decision. Every backend implements it, with DecideApprovalTx in
// ApprovalsTx (it shares the queue's transaction).
type Approvals interface {
	// PauseRun stores a run that stops to wait for decisions, in one
	// transaction: its checkpoint and events (as SaveStep), its approval
	// rows, and its row (status requires_action, lease dropped). The run
	// must be running with no cancellation requested: else ErrConflict
	// and nothing is written (a canceled run stops instead).
	PauseRun(ctx context.Context, p PauseRunParams) error
	// ListApprovals returns the approvals of a run, in the order they were
	// requested (then by tool_use_id). None for an unknown run.
	ListApprovals(ctx context.Context, runID string) ([]Approval, error)
	// ListExpiredApprovals returns up to limit undecided approvals of
	// paused runs whose ExpiresAt is before now, oldest first.
	ListExpiredApprovals(ctx context.Context, now time.Time, limit int) ([]Approval, error)
}

// ApprovalsTx is the part of Approvals that shares a transaction with the
// queue (see TxRuns).
type ApprovalsTx[TTx any] interface {
	// DecideApprovalTx records the decision on one pending call of the
	// tenant's paused run. When it was the run's last pending call, the run
	// becomes queued and fn is called with it in the same transaction (to
	// enqueue it). It returns the decided approval and the run as it is
	// after. ErrNotFound: no such run of the tenant, or no such call;
	// ErrConflict: the call was decided already (the returned Approval
	// shows how), or the run is not paused (canceled meanwhile). A
	// decision of the wrong kind for the call (a result for an approval,
	// approve or deny for a custom tool) is ErrNotFound: no such call
	// waits for it.
	DecideApprovalTx(ctx context.Context, p DecideApprovalParams, fn ReclaimFunc[TTx]) (Approval, Run, error)
}
