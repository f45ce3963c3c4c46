// Package gateway is agentd's Anthropic-compatible endpoint: POST
// /v1/messages and POST /v1/messages/count_tokens, forwarded to the
// provider byte for byte, so that an application written against the
// Anthropic API (the Claude Agent SDK, the Anthropic SDKs, curl) gets
// agentd's key pool, retries, breakers, fallbacks, rate limits, budgets and
// usage accounting by changing its base URL.
//
// The gateway reads only model, stream and max_tokens of a request body,
// and only usage (with id, model and stop_reason) of an answer; every other
// byte passes through unread. docs/gateway.md is the operator's reference.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/gateway/reqscan"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/metered"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/ratelimit"
)

// Agent is the agent name of the gateway's usage rows and token metrics.
const Agent = "gateway"

// UnlistedModels names the provider stack (breaker, metrics label) shared
// by the models a client names that agentd has neither a price nor a
// configuration entry for.
const UnlistedModels = "unlisted"

// DefaultMaxBodyBytes caps request bodies when Config.MaxBodyBytes is 0
// (images travel inline, base64-encoded).
const DefaultMaxBodyBytes = 32 << 20

// Upstream returns the model stack for a call to model, falling back to
// fallbacks in order (resilience.Provider does).
type Upstream interface {
	Chain(model string, fallbacks []string) llm.Model
}

// UsageRecorder stores one usage row per call (store.Usage does).
type UsageRecorder = metered.UsageRecorder

// TokenLimiter limits model tokens per tenant and API key
// (ratelimit.Limiter does).
type TokenLimiter = metered.TokenLimiter

// Budgets reserves a call's worst-case cost before it is made and settles
// it after (budget.Enforcer does).
type Budgets = metered.BudgetReserver

// Config configures a Handler.
type Config struct {
	Upstream Upstream
	// Aliases map a model name a client sends to the model called
	// ("claude-sonnet-latest" → "claude-sonnet-4-5").
	Aliases map[string]string
	// Default applies to tenants not in Tenants, whose entries replace it
	// whole.
	Default Policy
	Tenants map[string]Policy
	// Pricing prices calls (nil: cost 0).
	Pricing *cost.Table
	// Usage, Tokens, Budgets: nil means none.
	Usage   UsageRecorder
	Tokens  TokenLimiter
	Budgets Budgets
	// MaxBodyBytes caps request bodies (413 above). 0: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// LogBodies logs request bodies (and non-streamed answers) at debug
	// level. Off by default; the log handler's redaction applies.
	LogBodies bool
	Metrics   *Metrics
	// LLMMetrics receives tokens and cost (agent "gateway"); may be nil.
	LLMMetrics *observe.Metrics
	Log        *slog.Logger
}

// Handler serves the gateway's routes. It expects the server's middleware
// in front: the request id, the principal (auth.FromContext) and the
// request rate limit are theirs.
type Handler struct {
	cfg Config
	log *slog.Logger
	// listed are the models named in the configuration (aliases,
	// allow-lists, fallbacks): they get their own provider stack.
	listed map[string]bool
	sem    chan struct{}
	// meter meters the calls (limits, reservation, usage, settlement).
	meter metered.Meter
	// calls counts calls from their start to the end of their accounting
	// (Wait).
	calls atomic.Int64
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Upstream == nil {
		return nil, errors.New("gateway: no upstream")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listed := map[string]bool{}
	for _, m := range cfg.Aliases {
		listed[m] = true
	}
	for _, p := range append([]Policy{cfg.Default}, slices.Collect(maps.Values(cfg.Tenants))...) {
		for _, m := range p.AllowModels {
			listed[m] = true
		}
		for m, fb := range p.FallbackModels {
			listed[m] = true
			for _, f := range fb {
				listed[f] = true
			}
		}
	}
	h := &Handler{cfg: cfg, log: log, listed: listed, sem: make(chan struct{}, maxBackground)}
	h.meter = metered.Meter{Pricing: cfg.Pricing, Usage: cfg.Usage, Tokens: cfg.Tokens, Metrics: cfg.LLMMetrics, Log: log}
	if cfg.Budgets != nil {
		h.meter.Budget = cfg.Budgets
	}
	return h, nil
}

// ServeHTTP serves POST /v1/messages and POST /v1/messages/count_tokens.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathMessages:
		h.serve(w, r, false)
	case PathCountTokens:
		h.serve(w, r, true)
	default:
		WriteError(w, http.StatusNotFound, "", "no route for "+r.Method+" "+r.URL.Path, w.Header().Get("X-Request-Id"), 0)
	}
}

// bufPool holds the relay's event buffers.
var bufPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 16<<10)) }}

// call is one gateway request in flight.
type call struct {
	h         *Handler
	w         http.ResponseWriter
	rc        *http.ResponseController
	start     time.Time
	tenant    string
	key       string
	requested string // the model the client named
	model     string // the model called first (after aliases)
	count     bool
	stream    bool
	reqID     string
	// scope, when set, attributes the call to a hosted program's run
	// (metered.RunScope): its step in the run.
	scope *metered.RunScope
	step  int

	upstreamHeader http.Header // of the 2xx answer being relayed

	// Set by the relay. The accounting after the answer (account, finish)
	// reads only these, never the ResponseWriter.
	wrote      bool
	status     int
	firstByte  time.Duration
	answered   string // the model that answered (message_start / body)
	msgID      string
	stopReason string
	usage      llm.Usage
	stopped    bool   // message_stop seen
	errEvent   string // an upstream error event's type
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, count bool) {
	h.calls.Add(1)
	handedOff := false // to background, which ends the call
	defer func() {
		if !handedOff {
			h.calls.Add(-1)
		}
	}()
	ctx := r.Context()
	p, _ := auth.FromContext(ctx)
	c := &call{h: h, w: w, rc: http.NewResponseController(w), start: time.Now(), tenant: p.Tenant, key: p.KeyID,
		count: count, reqID: w.Header().Get("X-Request-Id")}
	if sc := metered.RunScopeFrom(ctx); sc != nil {
		// A hosted program's call (agents[].runtime): metered as its run's.
		c.scope, c.tenant, c.key = sc, sc.Tenant, sc.Key
	}
	// A model call outlives any server write timeout: each write gets its
	// own deadline instead (writeTimeout).
	_ = c.rc.SetWriteDeadline(time.Time{})

	// The body is not pooled: the transport may still be reading it after
	// the answer came back (an upstream that answers early).
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 0)+1, h.cfg.MaxBodyBytes+1)))
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.refuse(&Refusal{Status: http.StatusRequestEntityTooLarge,
				Message: fmt.Sprintf("the request body exceeds %d bytes", h.cfg.MaxBodyBytes)})
			return
		}
		c.refuse(&Refusal{Status: http.StatusBadRequest, Message: "could not read the request body: " + err.Error()})
		return
	}
	body := buf.Bytes()
	f, err := reqscan.Scan(body)
	if err != nil {
		c.refuse(&Refusal{Status: http.StatusBadRequest, Message: err.Error()})
		return
	}
	if f.Model == "" {
		c.refuse(&Refusal{Status: http.StatusBadRequest, Message: "model: Field required"})
		return
	}
	c.requested, c.stream = f.Model, f.Stream && !count
	c.model = f.Model
	if to, ok := h.cfg.Aliases[f.Model]; ok {
		c.model = to
	}
	pol := h.policy(c.tenant)
	if !pol.allows(c.model) {
		c.refuse(&Refusal{Status: http.StatusForbidden,
			Message: fmt.Sprintf("model %q is not allowed for this API key", c.requested)})
		return
	}
	_, priceID, priced := h.cfg.Pricing.Lookup(c.model)
	if h.cfg.Budgets != nil && !priced && !count {
		// An unpriced call would cost $0 against every budget.
		c.refuse(&Refusal{Status: http.StatusForbidden, Message: fmt.Sprintf(
			"model %q has no price in agentd's pricing table (pricing.models): with budgets on, only priced models may be called", c.requested)})
		return
	}
	fallbacks := pol.fallbacks(c.model)
	// The provider stack (breaker, metric labels) the call goes through:
	// client strings must not grow the provider's state. A model named in
	// the configuration gets its own; another priced one (a dated id, say)
	// its pricing table entry's; any other name shares one. Only a
	// configured model can have fallbacks, so the stack never renames the
	// model the body asks for.
	stack := c.model
	switch {
	case h.listed[c.model]:
	case priced:
		stack, fallbacks = priceID, nil
	default:
		stack, fallbacks = UnlistedModels, nil
	}
	if h.cfg.LogBodies && h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.DebugContext(ctx, "gateway request body", "body", string(body))
	}

	path := r.URL.Path
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery // e.g. the Agent SDK's ?beta=true
	}
	pt := &llm.Passthrough{
		Path: path, Body: body, Model: f.Model, ModelStart: f.ModelStart, ModelEnd: f.ModelEnd,
		Header: forwardHeader(r.Header), Respond: c.respond,
	}
	req := llm.Request{Model: c.model, MaxTokens: int(min(f.MaxTokens, math.MaxInt32)), Passthrough: pt}
	var mc *metered.Call // nil for count_tokens: not metered
	if !count {
		// Gateway calls count as the agent "gateway" (budgets.agents).
		if c.scope != nil {
			c.step = c.scope.Begin()
		}
		mc, err = h.begin(ctx, c, &req, fallbacks, f.MaxTokens)
		if err != nil {
			if c.scope != nil {
				if _, ok := budget.AsExceeded(err); ok && c.scope.OnRefused != nil {
					c.scope.OnRefused(err)
				}
				c.scope.End(nil)
			}
			c.refuse(refusalOf(err))
			return
		}
	}
	h.cfg.Metrics.inFlight(1)
	_, err = h.cfg.Upstream.Chain(stack, fallbacks).Stream(ctx, req, nil)
	h.cfg.Metrics.inFlight(-1)
	if err != nil {
		c.fail(ctx, err)
	}
	// The usage row, the budget's settlement, the metrics and the log
	// line are written after the answer is complete for the client, so a
	// store write is not part of its latency.
	actx := context.WithoutCancel(ctx)
	handedOff = true
	h.background(func() {
		usd := c.account(actx, mc, err)
		c.finish(actx, usd, err)
		if c.scope != nil && !count {
			c.scope.End(c.report(usd))
		}
	})
}

// begin checks the call's limits and reserves its worst case: that of the
// dearest model the call may end on.
func (h *Handler) begin(ctx context.Context, c *call, req *llm.Request, fallbacks []string, maxTokens int64) (*metered.Call, error) {
	info := metered.CallInfo{
		Tenant: c.tenant, Key: c.key, Agent: Agent,
		Model: c.model, Fallbacks: fallbacks, MaxTokens: maxTokens,
	}
	if sc := c.scope; sc != nil {
		info.Agent, info.RunID, info.Step, info.RunMaxUSD = sc.Agent, sc.RunID, c.step, sc.RunMaxUSD
	}
	_, mc, err := h.meter.Begin(ctx, info, req)
	return mc, err
}

// report is what a run-scoped call reports to its run: nil when it
// answered nothing.
func (c *call) report(usd money.Nanos) *metered.CallReport {
	if c.usage == (llm.Usage{}) {
		return nil
	}
	model := c.answered
	if model == "" {
		model = c.model
	}
	return &metered.CallReport{Step: c.step, Model: model, RequestID: c.msgID, StopReason: c.stopReason, Usage: c.usage, CostUSD: usd}
}

// maxBackground bounds the accounting jobs running after their answers;
// past it a handler does its accounting before it returns (back-pressure
// on a slow store instead of an unbounded pile of goroutines).
const maxBackground = 1024

// background runs a call's last work fn after the handler returns, or now
// when too many are pending, then ends the call.
func (h *Handler) background(fn func()) {
	select {
	case h.sem <- struct{}{}:
	default:
		fn()
		h.calls.Add(-1)
		return
	}
	go func() {
		defer func() {
			<-h.sem
			h.calls.Add(-1)
		}()
		fn()
	}()
}

// Wait waits until no call is in flight or being accounted for (usage
// rows, budget settlements, logs): call it on shutdown after the server
// has drained, before the store closes.
func (h *Handler) Wait() {
	for h.calls.Load() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

// refusalOf maps a limit's error to a Refusal.
func refusalOf(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	if ex, ok := budget.AsExceeded(err); ok {
		// rate_limit_error: the type the SDKs raise for a 429.
		return &Refusal{Status: http.StatusTooManyRequests, Type: "rate_limit_error",
			Message: ex.Error(), RetryAfter: max(ex.RetryAfter, time.Second)}
	}
	if rl, ok := ratelimit.AsError(err); ok {
		d := rl.Decision
		return &Refusal{Status: http.StatusTooManyRequests, RetryAfter: max(d.RetryAfter, time.Second),
			Message: fmt.Sprintf("rate limit exceeded: %s %s per minute (%d)", d.Scope, d.Kind, d.Limit)}
	}
	return &Refusal{Status: http.StatusServiceUnavailable, Type: "api_error", Message: "could not check the limits of this call; try again"}
}

// refuse answers a call that is not made.
func (c *call) refuse(r *Refusal) {
	WriteError(c.w, r.Status, r.Type, r.Message, c.reqID, r.RetryAfter)
	c.wrote, c.status = true, r.Status
	c.h.cfg.Metrics.request(c.labelModel(), r.Status, c.stream, time.Since(c.start))
	c.h.log.Info("gateway call refused", "model", c.requested, "status", r.Status, "reason", r.Message)
}

// fail answers a call whose upstream exchange failed. Before anything was
// relayed, the provider's own error answer is relayed as it came (status,
// headers, body); errors of agentd's layers get Anthropic's shape. After
// output was relayed, a stream gets an error event (unless the upstream
// sent one).
func (c *call) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		if !c.wrote {
			c.status = 499 // the client went away
		}
		return
	}
	if c.wrote {
		if c.stream && c.errEvent == "" {
			msg := "the upstream stream ended early"
			if le, ok := llm.AsError(err); ok {
				msg = "the upstream stream failed: " + le.Message
			}
			_ = c.writeEvent(errorEvent("api_error", msg), true)
		}
		return
	}
	var raw *llm.RawAnswer
	if errors.As(err, &raw) && raw.Status == http.StatusUnauthorized {
		// The provider refused agentd's key, not the client's: a 401
		// would send the client's developer looking at the wrong key.
		le, _ := llm.AsError(err)
		c.h.log.ErrorContext(ctx, "the provider refused every upstream API key tried", "model", c.model, "err", err)
		WriteError(c.w, http.StatusBadGateway, "api_error",
			"the provider refused agentd's upstream API key ("+le.Message+"); the operator must fix the key pool", c.reqID, 0)
		c.wrote, c.status = true, http.StatusBadGateway
		return
	}
	if raw != nil {
		copyHeader(c.w.Header(), raw.Header)
		c.w.Header().Del("Content-Length")
		c.w.WriteHeader(raw.Status)
		_, _ = c.w.Write(raw.Body)
		c.wrote, c.status = true, raw.Status
		return
	}
	status, typ, msg, after := http.StatusBadGateway, "api_error", "the upstream call failed", time.Duration(0)
	if le, ok := llm.AsError(err); ok {
		after = le.RetryAfter
		switch le.Type {
		case "circuit_open", "queue_full":
			status, typ, msg = 529, "overloaded_error", le.Message
		case "no_api_key":
			status, msg = http.StatusInternalServerError, "agentd has no upstream API key to call the model with"
		case "timeout":
			status, typ, msg = http.StatusGatewayTimeout, "timeout_error", "the upstream call timed out"
		default:
			msg = "the upstream call failed: " + le.Message
		}
	}
	c.h.log.WarnContext(ctx, "gateway upstream call failed", "model", c.model, "err", err)
	WriteError(c.w, status, typ, msg, c.reqID, after)
	c.wrote, c.status = true, status
}

// account ends the call's metering (see metered.Call.Settle) and returns
// its cost. A call that answered nothing (no message_start, no body) used
// nothing.
func (c *call) account(ctx context.Context, mc *metered.Call, err error) money.Nanos {
	if c.usage == (llm.Usage{}) {
		mc.Abort(ctx, err)
		return 0
	}
	return mc.Settle(ctx, &llm.Response{Model: c.answered, ID: c.msgID, StopReason: c.stopReason, Usage: c.usage})
}

// finish writes the call's metrics and its log line.
func (c *call) finish(ctx context.Context, usd money.Nanos, err error) {
	d := time.Since(c.start)
	m := c.h.cfg.Metrics
	m.request(c.labelModel(), c.status, c.stream, d)
	if c.stream && c.firstByte > 0 {
		m.firstByte(c.firstByte)
	}
	attrs := []slog.Attr{
		slog.String("model", c.model), slog.Bool("stream", c.stream), slog.Int("status", c.status),
		slog.Int64("input_tokens", c.usage.InputTokens), slog.Int64("output_tokens", c.usage.OutputTokens),
		slog.Float64("cost_usd", usd.USD()), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	}
	if c.requested != c.model {
		attrs = append(attrs, slog.String("requested_model", c.requested))
	}
	if c.answered != "" && c.answered != c.model {
		attrs = append(attrs, slog.String("answered_model", c.answered))
	}
	if c.count {
		attrs = append(attrs, slog.Bool("count_tokens", true))
	}
	if c.scope != nil {
		attrs = append(attrs, slog.String("run_id", c.scope.RunID), slog.String("agent", c.scope.Agent))
	}
	if id := c.upstreamID(err); id != "" {
		attrs = append(attrs, slog.String("upstream_request_id", id))
	}
	if c.stream && !c.stopped && c.wrote && c.status < 300 {
		attrs = append(attrs, slog.Bool("ended_early", true))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	c.h.log.LogAttrs(ctx, slog.LevelInfo, "gateway call", attrs...)
}

// upstreamID is the provider's request id of the answer relayed, or of the
// last failed attempt.
func (c *call) upstreamID(err error) string {
	if c.upstreamHeader != nil {
		return c.upstreamHeader.Get("Request-Id")
	}
	if le, ok := llm.AsError(err); ok {
		return le.RequestID
	}
	return ""
}

// labelModel is the model label of the metrics: the pricing table's id of
// the model (bounded by the table), or "other".
func (c *call) labelModel() string {
	if c.model == "" {
		return "none"
	}
	if _, id, ok := c.h.cfg.Pricing.Lookup(c.model); ok {
		return id
	}
	return "other"
}
