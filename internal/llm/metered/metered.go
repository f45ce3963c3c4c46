// Package metered is the one place a model call is metered: before the
// call, the token rate limit is checked and the call's worst-case cost is
// reserved against its budgets; after it, its tokens and cost go to the
// metrics, the token rate limit, a usage row and the budget's settlement.
//
// Both faces that call models use it: the agent loop (internal/run) around
// each step's model call, and the gateway (internal/gateway) around a
// request it relays byte for byte. The seam is a begin/end pair rather than
// an llm.Model decorator because the gateway learns a call's usage from
// the bytes it relays, after the answer has reached its client:
//
//	ctx, call, err := meter.Begin(ctx, info, &req) // limits, reservation, span
//	resp, err := model.Stream(ctx, req, onDelta)
//	if err != nil { call.Abort(ctx, err) } else { call.Settle(ctx, &resp) }
package metered

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// ErrRateLimited wraps a TokenLimiter's refusal.
var ErrRateLimited = errors.New("model token rate limit exceeded")

// usageWriteTimeout bounds the writes after a call (usage row, token
// debit); they are not cut short by the caller's cancellation.
const usageWriteTimeout = 5 * time.Second

// UsageRecorder stores one usage row per model call (store.Usage and
// usagelog.Log do).
type UsageRecorder interface {
	AppendUsage(ctx context.Context, r store.UsageRecord) error
}

// TokenLimiter limits model tokens per tenant and API key
// (ratelimit.Limiter does). key is the API key's id, "" when unknown
// (queued runs, authentication off).
type TokenLimiter interface {
	// AllowTokens returns an error (a *ratelimit.Error) when the budget
	// of tenant or key is spent; the model call is then not made.
	AllowTokens(ctx context.Context, tenant, key string) error
	// AddTokens debits the tokens a model call used.
	AddTokens(ctx context.Context, tenant, key string, n int64)
}

// BudgetReserver holds a model call's cost against budgets
// (budget.Enforcer does). Reserve returns an error (a
// *budget.ExceededError when a budget has no room) and the model call is
// then not made.
type BudgetReserver interface {
	Reserve(ctx context.Context, s budget.Subject, usd money.Nanos) (*budget.Reservation, error)
}

// Meter meters model calls. Every field may be nil: no pricing prices every
// call at 0; no Usage, Tokens or Budget skips that part. A Meter is a small
// value, safe to copy and to use concurrently.
type Meter struct {
	Pricing *cost.Table
	Usage   UsageRecorder
	Tokens  TokenLimiter
	Budget  BudgetReserver
	// Metrics receives tokens and cost (and, for traced calls, the
	// request count and latency).
	Metrics *observe.Metrics
	Log     *slog.Logger
}

// CallInfo describes a model call about to be made.
type CallInfo struct {
	// Tenant, Key (the API key's id, "" when unknown), Agent ("gateway"
	// for the gateway's calls) and RunID ("" outside runs) attribute the
	// call: its rate limit, budgets, usage row and metric labels.
	Tenant, Key, Agent, RunID string
	// Step is the run's step (model call number), 0 outside runs.
	Step int
	// Model is the model called first; Fallbacks are the models the call
	// may end on when it fails over. The reservation is the worst case of
	// the dearest of them.
	Model     string
	Fallbacks []string
	// MaxTokens is the call's max_tokens.
	MaxTokens int64
	// RunMaxUSD caps the run's cost (0: none).
	RunMaxUSD float64
	// Trace wraps the call in a client span ("chat <model>", GenAI
	// semantic conventions) and counts it in agentd_llm_requests_total and
	// agentd_llm_request_duration_seconds by Model: the agent loop's calls.
	// The gateway has request metrics of its own.
	Trace bool
}

// Call is one metered call in flight. It ends with exactly one of Settle
// (the call answered) or Abort (it did not); a nil *Call ends as a no-op.
type Call struct {
	m     Meter
	info  callInfo
	resv  *budget.Reservation // nil-safe
	span  trace.Span          // nil unless info.Trace
	start time.Time
}

// callInfo is the part of CallInfo a Call keeps.
type callInfo struct {
	Tenant, Key, Agent, RunID, Model string
	Step                             int
	Trace                            bool
}

// Begin checks the call's limits and reserves its worst-case cost, its
// prompt sized from req (see WorstCase; req is only read, and not kept); with
// info.Trace it starts the call's span, and the context returned carries
// it (make the call with that context). Its error is ErrRateLimited
// wrapping the limiter's refusal, or a reservation's error (a
// *budget.ExceededError, or a store error: budgets fail closed); the call
// must then not be made.
func (m *Meter) Begin(ctx context.Context, info CallInfo, req *llm.Request) (context.Context, *Call, error) {
	if m.Tokens != nil {
		if err := m.Tokens.AllowTokens(ctx, info.Tenant, info.Key); err != nil {
			return ctx, nil, fmt.Errorf("%w: %w", ErrRateLimited, err)
		}
	}
	var resv *budget.Reservation
	if m.Budget != nil {
		r, err := m.Budget.Reserve(ctx, budget.Subject{
			Tenant: info.Tenant, Key: info.Key, Agent: info.Agent, Run: info.RunID, RunMaxUSD: info.RunMaxUSD,
		}, m.WorstCase(&info, req))
		if err != nil {
			if info.Step > 0 {
				return ctx, nil, fmt.Errorf("reserve budget for step %d: %w", info.Step, err)
			}
			return ctx, nil, fmt.Errorf("reserve budget: %w", err)
		}
		resv = r
	}
	c := &Call{m: *m, resv: resv, info: callInfo{
		Tenant: info.Tenant, Key: info.Key, Agent: info.Agent, RunID: info.RunID, Model: info.Model,
		Step: info.Step, Trace: info.Trace,
	}}
	if info.Trace {
		ctx, c.span = startSpan(ctx, &info)
	}
	c.start = time.Now()
	return ctx, c, nil
}

// WorstCase is the most the call may cost: its prompt (req's, estimated
// from its bytes, see cost.EstimateTokens; nil: empty) and MaxTokens of
// output, at the price of the dearest model of its fallback chain (the
// call may end on any of them).
func (m *Meter) WorstCase(info *CallInfo, req *llm.Request) money.Nanos {
	tokens := cost.EstimateTokens(promptBytes(req))
	worst := m.Pricing.WorstCase(info.Model, tokens, info.MaxTokens)
	for _, f := range info.Fallbacks {
		worst = max(worst, m.Pricing.WorstCase(f, tokens, info.MaxTokens))
	}
	return worst
}

// promptBytes is the size of req's prompt: a passthrough's body, or the
// JSON of its system prompt, messages and tools.
func promptBytes(req *llm.Request) int {
	if req == nil {
		return 0
	}
	if req.Passthrough != nil {
		return len(req.Passthrough.Body)
	}
	n := len(req.System)
	if b, err := json.Marshal(req.Messages); err == nil {
		n += len(b)
	}
	if b, err := json.Marshal(req.Tools); err == nil {
		n += len(b)
	}
	return n
}

//go:noinline
func startSpan(ctx context.Context, info *CallInfo) (context.Context, trace.Span) {
	// GenAI semantic conventions: "{operation} {request model}", client.
	return observe.Tracer().Start(ctx, "chat "+info.Model, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("gen_ai.operation.name", "chat"),
			attribute.String("gen_ai.system", "anthropic"),
			attribute.String("gen_ai.provider.name", "anthropic"),
			attribute.String("gen_ai.request.model", info.Model),
			attribute.Int64("gen_ai.request.max_tokens", info.MaxTokens),
			attribute.Int("agentd.step", info.Step),
		))
}

// Settle ends a call that answered with resp (its Model is the model that
// answered, "" for info.Model; a response cache hit, resp.Cached, costs
// nothing): its tokens and cost go to the metrics, the token rate limit
// and a usage row, and the reservation is settled at the cost, which it
// returns. The writes are not cut short by ctx's cancellation (the call
// was made); a failed usage row is logged.
func (c *Call) Settle(ctx context.Context, resp *llm.Response) money.Nanos {
	if c == nil {
		return 0
	}
	m, info, u := &c.m, &c.info, resp.Usage
	answered := resp.Model // a fallback model may have answered
	if answered == "" {
		answered = info.Model
	}
	if info.Trace {
		m.Metrics.ObserveLLM(info.Model, "ok", time.Since(c.start))
		endSpan(c.span, answered, resp)
	}
	m.Metrics.AddTokens(info.Agent, answered, u.InputTokens, u.OutputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), usageWriteTimeout)
	defer cancel()
	if m.Tokens != nil {
		m.Tokens.AddTokens(wctx, info.Tenant, info.Key, u.InputTokens+u.OutputTokens+u.CacheCreationInputTokens)
	}
	usd, known := m.Pricing.Cost(answered, u)
	if resp.Cached {
		usd, known = 0, true
	}
	m.Metrics.AddCost(info.Agent, answered, usd.USD(), !known && m.Pricing != nil)
	if m.Usage != nil {
		rec := store.UsageRecord{
			Time: time.Now().UTC(), Tenant: info.Tenant, Key: info.Key, Agent: info.Agent, Model: answered,
			RunID: info.RunID, Step: info.Step,
			InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
			CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens,
			CostUSD: usd, Cached: resp.Cached,
		}
		if err := m.Usage.AppendUsage(wctx, rec); err != nil && m.Log != nil {
			m.Log.ErrorContext(ctx, "record usage of a model call", "agent", info.Agent, "step", info.Step,
				"model", answered, "cost_usd", usd, "err", err)
		}
	}
	c.resv.Settle(ctx, usd)
	return usd
}

//go:noinline
func endSpan(span trace.Span, answered string, resp *llm.Response) {
	u := resp.Usage
	span.SetAttributes(
		attribute.String("gen_ai.response.model", answered),
		attribute.Int64("gen_ai.usage.input_tokens", u.InputTokens),
		attribute.Int64("gen_ai.usage.output_tokens", u.OutputTokens),
		attribute.Int64("gen_ai.usage.cache_creation.input_tokens", u.CacheCreationInputTokens),
		attribute.Int64("gen_ai.usage.cache_read.input_tokens", u.CacheReadInputTokens),
		attribute.StringSlice("gen_ai.response.finish_reasons", []string{resp.StopReason}),
		attribute.Bool("agentd.cached", resp.Cached),
	)
	if resp.ID != "" {
		span.SetAttributes(attribute.String("gen_ai.response.id", resp.ID))
	}
	span.End()
}

// Abort ends a call that used nothing: it failed with err (nil: it
// answered nothing), reports no usage, and its reservation is released.
// ctx is the caller's: when it is done and err is no *llm.Error, a traced
// call's outcome is "canceled".
func (c *Call) Abort(ctx context.Context, err error) {
	if c == nil {
		return
	}
	if c.info.Trace {
		outcome := "error"
		if e, ok := llm.AsError(err); ok {
			outcome = e.Type
		} else if ctx.Err() != nil {
			outcome = "canceled"
		}
		c.m.Metrics.ObserveLLM(c.info.Model, outcome, time.Since(c.start))
		c.span.SetAttributes(attribute.String("error.type", outcome))
		observe.EndSpan(c.span, err)
	}
	// A failed call reports no usage: nothing is recorded as spent.
	c.resv.Settle(ctx, 0)
}
