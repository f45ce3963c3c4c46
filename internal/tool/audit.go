package tool

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/store"
)

// AuditAppender is the part of store.Audit Audited writes to.
type AuditAppender interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) error
}

// AuditOptions configure Audited.
type AuditOptions struct {
	Store   AuditAppender
	Secrets *Secrets
	Log     *slog.Logger
	Metrics *Metrics
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// maxAuditInputBytes caps the input stored in an audit row.
const maxAuditInputBytes = 8 << 10

// Audited wraps a consequential tool: each call writes a store.AuditCall row
// (tenant, agent, run, step, tool_use id, idempotency key, redacted input)
// before it runs and a store.AuditResult row (outcome, error, duration)
// after. If the first row cannot be written the tool is not called (error
// kind "audit_failed"): a consequential call never happens unaudited. A
// failure to write the second row is logged and counted; the call's result
// stands. Wrap the guarded tool (Audited(Guard(t, ...), ...)) so that the
// result row sees timeouts and scrubbed errors.
func Audited(t Tool, o AuditOptions) Tool {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &audited{inner: t, o: o}
}

type audited struct {
	inner Tool
	o     AuditOptions
}

func (a *audited) Spec() llm.ToolSpec { return a.inner.Spec() }

// Unwrap returns the audited tool.
func (a *audited) Unwrap() Tool { return a.inner }

func (a *audited) Call(ctx context.Context, input json.RawMessage) (string, error) {
	name := a.inner.Spec().Name
	ci := CallInfoFrom(ctx)
	e := store.AuditEntry{
		Tenant: ci.Tenant, Agent: ci.Agent, RunID: ci.RunID, Step: ci.Step, ToolUseID: ci.ToolUseID,
		Tool: name, IdempotencyKey: ci.IdempotencyKey(), Input: RedactInput(input, a.o.Secrets),
	}
	call := e
	call.Phase, call.Outcome, call.Time = store.AuditCall, "started", a.o.Now().UTC()
	// The audit write must not be cut short by a tool deadline that is
	// about to expire; it gets its own bound.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	err := a.o.Store.AppendAudit(wctx, call)
	cancel()
	if err != nil {
		a.o.Metrics.auditFailure(name)
		a.o.Log.ErrorContext(ctx, "audit: cannot record consequential tool call; call refused", "tool", name, "run_id", ci.RunID, "err", err)
		return "", Errorf(KindAudit, "tool %s was not called: its call could not be written to the audit log", name)
	}
	start := time.Now()
	out, callErr := a.inner.Call(ctx, input)
	res := e
	res.Phase, res.Time, res.Duration = store.AuditResult, a.o.Now().UTC(), time.Since(start)
	res.Outcome = Outcome(callErr)
	if callErr != nil {
		res.Error = Truncate(a.o.Secrets.Scrub(callErr.Error()), maxErrorBytes)
		if errors.Is(callErr, context.Canceled) {
			res.Outcome = "canceled"
		}
	}
	wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	err = a.o.Store.AppendAudit(wctx, res)
	cancel()
	if err != nil {
		a.o.Metrics.auditFailure(name)
		a.o.Log.ErrorContext(ctx, "audit: cannot record the result of a consequential tool call", "tool", name, "run_id", ci.RunID, "outcome", res.Outcome, "err", err)
	}
	return out, callErr
}

// sensitiveKey matches input property names whose values are never stored.
var sensitiveKey = regexp.MustCompile(`(?i)(pass(word)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key)`)

// RedactInput returns input for the audit log: values of properties whose
// name looks sensitive (password, token, api_key, ...) become "[redacted]",
// secret values are scrubbed, and input longer than 8 KiB is stored as a
// truncated JSON string. nil for empty input.
func RedactInput(input json.RawMessage, secrets *Secrets) json.RawMessage {
	if len(input) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(input, &v); err != nil {
		s, _ := json.Marshal(Truncate(secrets.Scrub(string(input)), maxAuditInputBytes))
		return s
	}
	v = redactValue(v)
	out, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	if scrubbed := secrets.Scrub(string(out)); scrubbed != string(out) {
		if json.Valid([]byte(scrubbed)) {
			out = []byte(scrubbed)
		} else {
			out, _ = json.Marshal(scrubbed)
		}
	}
	if len(out) > maxAuditInputBytes {
		out, _ = json.Marshal(Truncate(string(out), maxAuditInputBytes) + "[truncated]")
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if sensitiveKey.MatchString(k) {
				x[k] = "[redacted]"
			} else {
				x[k] = redactValue(e)
			}
		}
	case []any:
		for i, e := range x {
			x[i] = redactValue(e)
		}
	}
	return v
}
