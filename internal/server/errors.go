package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/ratelimit"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// Error is the one error type that becomes an HTTP answer:
// {"error":{"type","message","request_id"}} with Status.
type Error struct {
	Status  int
	Type    string
	Message string
	// RetryAfter, when > 0, is sent as the Retry-After header (seconds).
	RetryAfter int
	// RunID names the run that failed, when there is one.
	RunID string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func badRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request", Message: msg}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
	RunID     string `json:"run_id,omitempty"`
}

// toHTTP maps any error to an *Error. Errors that are not the client's say
// little; the log says all.
func toHTTP(err error) *Error {
	var he *Error
	if errors.As(err, &he) {
		return he
	}
	if rl, ok := ratelimit.AsError(err); ok {
		return rateLimited(rl.Decision) // model tokens, checked before a model call
	}
	if rej, ok := admission.AsRejected(err); ok {
		if rej.Reason == admission.ReasonTenant {
			// The tenant's own cap, not the instance's: like a rate
			// limit, the client should slow down (other tenants are
			// served).
			return &Error{Status: http.StatusTooManyRequests, Type: "tenant_concurrency_limited", Message: rej.Error(),
				RetryAfter: int((rej.RetryAfter + time.Second - 1) / time.Second)}
		}
		return &Error{Status: http.StatusServiceUnavailable, Type: "overloaded", Message: rej.Error(),
			RetryAfter: int((rej.RetryAfter + time.Second - 1) / time.Second)}
	}
	if oe, ok := breaker.AsOpen(err); ok && oe.Dependency == breaker.Store {
		// The store's breaker is open: failed at once, nothing written.
		return &Error{Status: http.StatusServiceUnavailable, Type: "store_unavailable",
			Message:    "the store is unavailable (circuit breaker open); retry later",
			RetryAfter: max(1, int((oe.RetryAfter+time.Second-1)/time.Second))}
	}
	if ex, ok := budget.AsExceeded(err); ok {
		return budgetExceeded(ex)
	}
	if im := (*run.IdempotencyMismatchError)(nil); errors.As(err, &im) {
		return &Error{Status: http.StatusUnprocessableEntity, Type: "idempotency_key_reused", Message: im.Error()}
	}
	if inf := (*run.IdempotencyInFlightError)(nil); errors.As(err, &inf) {
		return &Error{Status: http.StatusConflict, Type: "idempotency_key_in_use", Message: inf.Error(), RetryAfter: 1, RunID: inf.RunID}
	}
	if inv, ok := managed.AsInvalid(err); ok {
		return &Error{Status: http.StatusBadRequest, Type: "invalid_request", Message: inv.Message}
	}
	if nf := (*managed.NotFoundError)(nil); errors.As(err, &nf) {
		return &Error{Status: http.StatusNotFound, Type: "not_found", Message: nf.Message}
	}
	switch {
	case errors.Is(err, managed.ErrEventsNotBuilt):
		return &Error{Status: http.StatusBadRequest, Type: "invalid_request", Message: err.Error()}
	case errors.Is(err, managed.ErrVersionMismatch):
		return &Error{Status: http.StatusConflict, Type: "conflict", Message: err.Error()}
	case errors.Is(err, run.ErrSecretInMessage):
		return &Error{Status: http.StatusBadRequest, Type: "secret_in_message", Message: err.Error()}
	case errors.Is(err, run.ErrAgentNotFound):
		return &Error{Status: http.StatusNotFound, Type: "not_found", Message: err.Error()}
	case errors.Is(err, run.ErrConversationNotFound):
		return &Error{Status: http.StatusNotFound, Type: "not_found", Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		// The store's error names the backend and the query: the client
		// gets the resource of the route (writeError), the log the chain.
		return &Error{Status: http.StatusNotFound, Type: "not_found"}
	case errors.Is(err, run.ErrTurnTimeout):
		// The message is queued as a run and runs in its turn (run_id).
		return &Error{Status: http.StatusConflict, Type: "turn_timeout", Message: err.Error()}
	case errors.Is(err, run.ErrConversationAgent), errors.Is(err, run.ErrConversationBusy):
		return &Error{Status: http.StatusConflict, Type: "conflict", Message: err.Error()}
	}
	if sd := storeUnavailable(err); sd != nil {
		return sd
	}
	e := classified(run.ClassifyError(err))
	if e.Type == "upstream_unavailable" {
		if le, ok := llm.AsError(err); ok && le.RetryAfter > 0 {
			e.RetryAfter = int((le.RetryAfter + 999e6) / 1e9)
		}
	}
	return e
}

// classified is the answer to a run's error of a type from
// run.ClassifyError (also a replayed run's stored error event).
func classified(info run.ErrorInfo) *Error {
	e := &Error{Type: info.Type, Message: info.Message}
	switch info.Type {
	case "timeout", "upstream_timeout":
		e.Status = http.StatusGatewayTimeout
	case "canceled":
		// Only seen by clients that are gone; 499 is nginx's "client closed".
		e.Status = 499
	case "upstream_unavailable":
		e.Status = http.StatusServiceUnavailable
		e.RetryAfter = 1
	case "upstream_error", "program_failed", "tools_unavailable":
		e.Status = http.StatusBadGateway
	case "budget_exceeded", "rate_limited":
		e.Status = http.StatusTooManyRequests
	case "max_steps":
		e.Status = http.StatusInternalServerError
	default:
		e.Status = http.StatusInternalServerError
	}
	return e
}

// budgetExceeded answers a model call a budget refused: 429 with
// Retry-After (seconds until the day or month resets) for a tenant, key or
// agent budget, which will have room again; 402 for a run's max_cost_usd,
// which never resets (retrying the same run cannot help).
func budgetExceeded(ex *budget.ExceededError) *Error {
	e := &Error{Status: http.StatusTooManyRequests, Type: "budget_exceeded", Message: ex.Error()}
	if ex.Scope == budget.ScopeRun {
		e.Status = http.StatusPaymentRequired
		return e
	}
	e.RetryAfter = max(1, int((ex.RetryAfter+time.Second-1)/time.Second))
	return e
}

// writeError logs err (server errors at error level, with the full chain)
// and writes its JSON body.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	he := toHTTP(err)
	if he.Message == "" && he.Type == "not_found" {
		he.Message = notFoundMessage(r)
	}
	ctx := r.Context()
	switch {
	case he.Status >= 500:
		s.log.ErrorContext(ctx, "request failed", "status", he.Status, "type", he.Type, "err", err)
	case he.Status == 499:
		s.log.InfoContext(ctx, "client went away", "err", err)
	default:
		s.log.DebugContext(ctx, "request refused", "status", he.Status, "type", he.Type, "err", err)
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.RetryAfter))
	}
	if rl, ok := ratelimit.AsError(err); ok {
		setRateHeaders(w.Header(), rl.Decision)
	}
	if anthropicShaped(r) {
		// The Anthropic SDKs parse their API's error shape (the gateway's
		// and the Managed Agents routes).
		w.Header().Del("Retry-After") // WriteError sets it
		gateway.WriteError(w, he.Status, "", he.Message, requestID(ctx), time.Duration(he.RetryAfter)*time.Second)
		return
	}
	writeJSON(w, he.Status, errorBody{Error: errorDetail{
		Type: he.Type, Message: he.Message, RequestID: requestID(ctx), RunID: he.RunID,
	}})
}

// notFoundMessage names what the route looks up: "GET
// /v1/conversations/{id}" answers "conversation not found".
func notFoundMessage(r *http.Request) string {
	path := r.Pattern
	if _, p, ok := strings.Cut(path, " "); ok {
		path = p
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	what := "resource"
	for i := len(parts) - 1; i >= 0; i-- {
		if strings.HasPrefix(parts[i], "{") && i > 0 {
			what = strings.TrimSuffix(parts[i-1], "s")
			break
		}
	}
	return what + " not found"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	// A failed write means the client went away; there is no one to tell.
	_ = enc.Encode(v)
}

type requestIDKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
