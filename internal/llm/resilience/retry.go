package resilience

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// Retry defaults.
const (
	// DefaultMaxAttempts is RetryConfig.MaxAttempts' default: the first call
	// and up to two retries.
	DefaultMaxAttempts = 3
	// DefaultRetryBaseDelay is RetryConfig.BaseDelay's default.
	DefaultRetryBaseDelay = 500 * time.Millisecond
	// DefaultRetryMaxDelay is RetryConfig.MaxDelay's default.
	DefaultRetryMaxDelay = 20 * time.Second
)

// RetryConfig configures retries of one model call.
type RetryConfig struct {
	// MaxAttempts caps the attempts of one call, the first included; 1
	// disables retries. Defaults to 3.
	MaxAttempts int
	// BaseDelay is the back-off before the first retry; it doubles at each
	// retry, and the wait is drawn uniformly in [0, back-off) (full jitter).
	// Defaults to 500ms.
	BaseDelay time.Duration
	// MaxDelay caps the back-off (not the provider's retry-after, which is
	// honoured as given). Defaults to 20s.
	MaxDelay time.Duration
}

func (c RetryConfig) withDefaults() RetryConfig {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = DefaultRetryBaseDelay
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultRetryMaxDelay
	}
	c.MaxDelay = max(c.MaxDelay, c.BaseDelay)
	return c
}

// retryModel retries failed attempts of the inner model.
type retryModel struct {
	next    llm.Model
	cfg     RetryConfig
	metrics *Metrics
	// sleep waits d or until ctx is done (a seam for tests).
	sleep func(ctx context.Context, d time.Duration) bool
}

// Retry returns next with retries: connection errors, timeouts of the call,
// 408, 429, 5xx and 529 are retried with exponential back-off and full
// jitter, or after the provider's retry-after when it gave one. A retry never
// waits past ctx's deadline: when the wait would, the last error is returned
// at once. A call whose output already reached onDelta (or whose error says
// Streamed) is never retried.
func Retry(next llm.Model, cfg RetryConfig, m *Metrics) llm.Model {
	return &retryModel{next: next, cfg: cfg.withDefaults(), metrics: m, sleep: sleepCtx}
}

func (r *retryModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	for attempt := 1; ; attempt++ {
		streamed := false
		resp, err := r.next.Stream(ctx, req, func(d llm.Delta) {
			streamed = true
			if onDelta != nil {
				onDelta(d)
			}
		})
		if err == nil {
			return resp, nil
		}
		e, ok := llm.AsError(err)
		if !ok || streamed || e.Streamed || !retryable(e) || attempt >= r.cfg.MaxAttempts || ctx.Err() != nil {
			return resp, err
		}
		wait := e.RetryAfter
		if wait <= 0 {
			wait = r.backoff(attempt)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			// The wait would outlive the caller: give up now, with the
			// provider's answer rather than a deadline error later.
			return resp, err
		}
		r.metrics.retry(req.Model, retryReason(e))
		if !r.sleep(ctx, wait) {
			return resp, err
		}
	}
}

// backoff is the full-jitter wait before retry number attempt (1-based).
func (r *retryModel) backoff(attempt int) time.Duration {
	ceil := r.cfg.BaseDelay
	for i := 1; i < attempt && ceil < r.cfg.MaxDelay; i++ {
		ceil *= 2
	}
	ceil = min(ceil, r.cfg.MaxDelay)
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// retryable reports whether an attempt that failed with e may be repeated.
// Errors of agentd's own layers (circuit_open, queue_full) never are: they
// are outside the retry layer and would only spin.
func retryable(e *llm.Error) bool {
	switch e.Type {
	case TypeCircuitOpen, TypeQueueFull, TypeNoKey:
		return false
	}
	switch {
	case e.Status == 0, e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests, e.Status >= 500:
		return true
	}
	return false
}

func retryReason(e *llm.Error) string {
	switch {
	case e.Status == http.StatusTooManyRequests:
		return "rate_limit"
	case e.Status == 529 || e.Type == "overloaded_error":
		return "overloaded"
	case e.Status == http.StatusRequestTimeout || e.Type == "timeout":
		return "timeout"
	case e.Status >= 500:
		return "server_error"
	}
	return "connection"
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
