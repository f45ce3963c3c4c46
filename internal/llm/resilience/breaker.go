package resilience

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/agentd/agentd/internal/llm"
)

// Breaker defaults.
const (
	// DefaultBreakerConsecutiveFailures is BreakerConfig.ConsecutiveFailures'
	// default.
	DefaultBreakerConsecutiveFailures = 5
	// DefaultBreakerFailureRatio is BreakerConfig.FailureRatio's default.
	DefaultBreakerFailureRatio = 0.5
	// DefaultBreakerMinRequests is BreakerConfig.MinRequests' default.
	DefaultBreakerMinRequests = 20
	// DefaultBreakerWindow is BreakerConfig.Window's default.
	DefaultBreakerWindow = time.Minute
	// DefaultBreakerOpenTimeout is BreakerConfig.OpenTimeout's default.
	DefaultBreakerOpenTimeout = 30 * time.Second
	// DefaultBreakerHalfOpenProbes is BreakerConfig.HalfOpenProbes' default.
	DefaultBreakerHalfOpenProbes = 3
)

// BreakerConfig configures the circuit breaker of each model of a provider.
// Only availability failures count: 5xx, 529, connection errors, cut
// streams and the call's own timeouts (and 429 with CountRateLimits) — not
// other 4xx, not the caller's cancellation or deadline, not agentd's own
// queue_full.
type BreakerConfig struct {
	// Disabled turns the breaker off. Defaults to false.
	Disabled bool
	// ConsecutiveFailures opens the breaker after that many failed calls in
	// a row. Defaults to 5.
	ConsecutiveFailures uint32
	// FailureRatio opens the breaker when at least that share of the calls
	// in the window failed, once the window holds MinRequests calls.
	// Defaults to 0.5.
	FailureRatio float64
	// MinRequests is the number of calls in the window before FailureRatio
	// applies. Defaults to 20.
	MinRequests uint32
	// Window is the rolling window over which calls are counted while
	// closed. Defaults to 1m.
	Window time.Duration
	// OpenTimeout is how long the breaker stays open (failing fast) before
	// letting probes through. Defaults to 30s.
	OpenTimeout time.Duration
	// HalfOpenProbes is the number of calls let through while half-open;
	// that many successes close the breaker, one failure reopens it.
	// Defaults to 3.
	HalfOpenProbes uint32
	// CountRateLimits counts 429s (after retries) as failures. Off by
	// default: a 429 is a quota signal the retry layer handles with
	// retry-after, and a spent call still falls back. Defaults to false.
	CountRateLimits bool
}

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultBreakerConsecutiveFailures
	}
	if c.FailureRatio <= 0 {
		c.FailureRatio = DefaultBreakerFailureRatio
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultBreakerMinRequests
	}
	if c.Window <= 0 {
		c.Window = DefaultBreakerWindow
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = DefaultBreakerOpenTimeout
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultBreakerHalfOpenProbes
	}
	return c
}

// Breaker states as the agentd_breaker_state gauge shows them.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
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

var (
	errBreakerFailure  = errors.New("availability failure")
	errBreakerExcluded = errors.New("not counted")
)

// breakerModel fails fast while its circuit breaker is open.
type breakerModel struct {
	next     llm.Model
	provider string
	model    string
	cfg      BreakerConfig
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]

	mu    sync.Mutex
	since time.Time
}

// newBreaker wraps next with a breaker named provider/model.
func newBreaker(next llm.Model, provider, model string, cfg BreakerConfig, m *Metrics, log *slog.Logger) *breakerModel {
	cfg = cfg.withDefaults()
	b := &breakerModel{next: next, provider: provider, model: model, cfg: cfg}
	ratio, minReq, consec := cfg.FailureRatio, cfg.MinRequests, cfg.ConsecutiveFailures
	bucket := max(cfg.Window/10, time.Millisecond)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         provider + "/" + model,
		MaxRequests:  cfg.HalfOpenProbes,
		Interval:     cfg.Window,
		BucketPeriod: bucket,
		Timeout:      cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= consec {
				return true
			}
			return c.Requests >= minReq && float64(c.TotalFailures) >= ratio*float64(c.Requests)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errBreakerExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			b.mu.Lock()
			b.since = time.Now()
			b.mu.Unlock()
			m.breakerState(model, int(to))
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "circuit breaker state change",
				"breaker", name, "from", from.String(), "to", to.String())
		},
	})
	m.breakerState(model, int(gobreaker.StateClosed))
	return b
}

func (b *breakerModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if b.cfg.Disabled {
		return b.next.Stream(ctx, req, onDelta)
	}
	done, err := b.cb.Allow()
	if err != nil {
		return llm.Response{}, b.openError()
	}
	resp, err := b.next.Stream(ctx, req, onDelta)
	done(b.classify(ctx, err))
	return resp, err
}

// classify maps a call's outcome to what the breaker counts: nil (success),
// errBreakerFailure or errBreakerExcluded.
func (b *breakerModel) classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return errBreakerExcluded // the caller gave up: says nothing of upstream
	}
	e, ok := llm.AsError(err)
	if !ok {
		return errBreakerExcluded // a local error (encoding, ...)
	}
	switch e.Type {
	case TypeQueueFull, TypeCircuitOpen, TypeNoKey:
		return errBreakerExcluded
	}
	switch {
	case e.Status == http.StatusTooManyRequests:
		if b.cfg.CountRateLimits {
			return errBreakerFailure
		}
		return errBreakerExcluded
	case e.Status == 0, e.Status == http.StatusRequestTimeout, e.Status >= 500:
		return errBreakerFailure
	}
	return nil // 4xx: the provider is up and answered
}

func (b *breakerModel) openError() *llm.Error {
	e := &llm.Error{
		Type:    TypeCircuitOpen,
		Message: "circuit breaker open for " + b.provider + "/" + b.model + ": the model is failing, calls fail fast",
	}
	if b.cb.State() == gobreaker.StateOpen {
		b.mu.Lock()
		left := b.cfg.OpenTimeout - time.Since(b.since)
		b.mu.Unlock()
		e.RetryAfter = max(left, time.Second)
	} else {
		e.Message = "circuit breaker half-open for " + b.provider + "/" + b.model + ": probes in flight, calls fail fast"
		e.RetryAfter = time.Second
	}
	e.Err = gobreaker.ErrOpenState
	return e
}

func (b *breakerModel) status() BreakerStatus {
	c := b.cb.Counts()
	st := BreakerStatus{Provider: b.provider, Model: b.model, State: stateName(b.cb.State()),
		Requests: c.Requests, Failures: c.TotalFailures}
	if b.cfg.Disabled {
		st.State = "disabled"
	}
	b.mu.Lock()
	st.Since = b.since
	b.mu.Unlock()
	return st
}

func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}
