package tool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// CallInfo says which run step called a tool. The run loop puts it in the
// context of every Call (WithCallInfo); tools use it for idempotency keys and
// the audit log. It is the zero value outside of a run (tests, CLI).
type CallInfo struct {
	Tenant    string
	Agent     string
	RunID     string
	Step      int
	ToolUseID string
}

// IdempotencyKey is "run id:step:tool_use id": the same for a repeated call
// of the same tool_use (a run resumed after its worker died), different for
// every other call. Empty when the run id or the tool_use id is unknown.
func (c CallInfo) IdempotencyKey() string {
	if c.RunID == "" || c.ToolUseID == "" {
		return ""
	}
	return c.RunID + ":" + strconv.Itoa(c.Step) + ":" + c.ToolUseID
}

type callInfoKey struct{}

// WithCallInfo returns ctx carrying ci.
func WithCallInfo(ctx context.Context, ci CallInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

// CallInfoFrom returns the CallInfo of ctx, or the zero value.
func CallInfoFrom(ctx context.Context) CallInfo {
	ci, _ := ctx.Value(callInfoKey{}).(CallInfo)
	return ci
}

// Error kinds: the outcome label of a failed call in
// agentd_tool_calls_total{tool,outcome} (see Outcome).
const (
	KindTimeout       = "timeout"        // the tool's own timeout expired
	KindBusy          = "busy"           // no concurrency slot before the deadline
	KindUnavailable   = "unavailable"    // MCP server down / connection lost, network error
	KindToolError     = "tool_error"     // the tool reported an error (MCP isError)
	KindHTTPStatus    = "http_status"    // HTTP tool answered with status >= 400
	KindBlocked       = "blocked"        // SSRF guard refused the destination
	KindInvalidInput  = "invalid_input"  // the model's input does not fit the tool
	KindInvalidOutput = "invalid_output" // output failed the output schema
	KindProtocol      = "protocol"       // malformed answer (JSON-RPC, content)
	KindAudit         = "audit_failed"   // a consequential call could not be audited
	KindCircuitOpen   = "circuit_open"   // the tool's (or its MCP server's) breaker is open: not called
)

// Error is a tool failure of a known kind. Its message is what the model
// reads in the is_error tool_result.
type Error struct {
	Kind string
	// Status is the HTTP status of a KindHTTPStatus error (0 otherwise).
	Status int
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind.
func Errorf(kind, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// Outcome returns the metric outcome of a Call's error: "ok" for nil, the
// kind of an *Error, "timeout" for a deadline, else "error".
func Outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var te *Error
	if errors.As(err, &te) && te.Kind != "" {
		return te.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindTimeout
	}
	return "error"
}
