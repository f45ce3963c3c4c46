package resilience

import (
	"context"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm"
)

// BreakerConfig configures the circuit breaker of each model of a provider:
// the fields and defaults every dependency's breaker has (breaker.Config),
// and CountRateLimits. Only availability failures count: 5xx, 529,
// connection errors, cut streams and the call's own timeouts (and 429 with
// CountRateLimits) — not other 4xx, not the caller's cancellation or
// deadline, not agentd's own queue_full.
type BreakerConfig struct {
	breaker.Config
	// CountRateLimits counts 429s (after retries) as failures. Off by
	// default: a 429 is a quota signal the retry layer handles with
	// retry-after, and a spent call still falls back. Defaults to false.
	CountRateLimits bool
}

// Breaker states as the agentd_breaker_state gauge shows them.
const (
	BreakerClosed   = breaker.StateClosed
	BreakerHalfOpen = breaker.StateHalfOpen
	BreakerOpen     = breaker.StateOpen
)

// BreakerStatus is a breaker's state for /healthz.
type BreakerStatus struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// State is "closed", "half-open" or "open".
	State string `json:"state"`
	// Since is when the breaker entered State (zero: never changed).
	Since time.Time `json:"since,omitzero"`
	// Requests and Failures count the calls of the current window.
	Requests uint32 `json:"requests"`
	Failures uint32 `json:"failures"`
}

// breakerModel fails fast while its circuit breaker is open. The breaker
// itself is the process's one for "model:NAME" (package breaker).
type breakerModel struct {
	next     llm.Model
	provider string
	model    string
	cfg      BreakerConfig
	b        *breaker.Breaker
}

// newBreaker wraps next with the breaker "model:"+model of set.
func newBreaker(next llm.Model, provider, model string, cfg BreakerConfig, set *breaker.Set) *breakerModel {
	cfg.Config = cfg.Config.WithDefaults()
	b := set.GetWith(breaker.PrefixModel+model, cfg.Config)
	return &breakerModel{next: next, provider: provider, model: model, cfg: cfg, b: b}
}

func (b *breakerModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	done, err := b.b.Allow()
	if err != nil {
		return llm.Response{}, b.openError(err)
	}
	resp, err := b.next.Stream(ctx, req, onDelta)
	done(b.classify(ctx, err))
	return resp, err
}

// classify maps a call's outcome to what the breaker counts.
func (b *breakerModel) classify(ctx context.Context, err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	if ctx.Err() != nil {
		return breaker.Ignore // the caller gave up: says nothing of upstream
	}
	e, ok := llm.AsError(err)
	if !ok {
		return breaker.Ignore // a local error (encoding, ...)
	}
	switch e.Type {
	case TypeQueueFull, TypeCircuitOpen, TypeNoKey:
		return breaker.Ignore
	}
	switch {
	case e.Status == http.StatusTooManyRequests:
		if b.cfg.CountRateLimits {
			return breaker.Failure
		}
		return breaker.Ignore
	case e.Status == 0, e.Status == http.StatusRequestTimeout, e.Status >= 500:
		return breaker.Failure
	}
	return breaker.Success // 4xx: the provider is up and answered
}

func (b *breakerModel) openError(err error) *llm.Error {
	e := &llm.Error{
		Type:       TypeCircuitOpen,
		Message:    "circuit breaker open for " + b.provider + "/" + b.model + ": the model is failing, calls fail fast",
		RetryAfter: time.Second,
		Err:        err,
	}
	if oe, ok := breaker.AsOpen(err); ok {
		e.RetryAfter = oe.RetryAfter
		if oe.HalfOpen {
			e.Message = "circuit breaker half-open for " + b.provider + "/" + b.model + ": probes in flight, calls fail fast"
		}
	}
	return e
}

func (b *breakerModel) status() BreakerStatus {
	st := b.b.Status()
	return BreakerStatus{Provider: b.provider, Model: b.model, State: st.State, Since: st.Since,
		Requests: st.Requests, Failures: st.Failures}
}
