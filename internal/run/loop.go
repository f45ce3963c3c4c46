// Package run is the agent loop: model call → tools → model call ... until
// the model stops asking for tools, with a checkpoint after every model call
// and every tool result and a numbered event for everything that happens.
//
// The same loop serves synchronous chat (run inline in the API process) and
// queued runs on workers (Runs); a run resumed from a checkpoint repeats no
// finished model call and no finished tool call.
package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/metered"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// Event types.
const (
	EventStart      = "start"       // {run_id, conversation_id, agent, model}
	EventTextDelta  = "text_delta"  // {step, index, text}
	EventToolUse    = "tool_use"    // {step, id, name, input}
	EventToolResult = "tool_result" // {step, tool_use_id, name, content, is_error, duration_ms}
	EventUsage      = "usage"       // {step, model, request_id, stop_reason, input_tokens, ...}
	EventDone       = "done"        // the final answer (see Answer)
	EventError      = "error"       // {type, message}
	// EventResumed: the run continues from its checkpoint after its
	// previous attempt stopped; text deltas of the unfinished step
	// (events after the last usage/tool_result) are superseded.
	EventResumed = "resumed" // {step, after_seq}
)

// Sentinel errors of a run.
var (
	ErrMaxSteps = errors.New("max_steps reached while the model still asked for tools")
	ErrTimeout  = errors.New("run timed out")
	// ErrRestore: the run's checkpoint or events could not be read (the
	// store is unreachable); nothing ran. A queued run is retried.
	ErrRestore = errors.New("load the run's state")
	// ErrCanceled: cancellation was requested through the API.
	ErrCanceled = errors.New("run canceled")
	// ErrSuspended: the run stopped without an outcome (its worker is
	// shutting down or lost its lease); it continues elsewhere from its
	// checkpoint.
	ErrSuspended = errors.New("run suspended")
)

// FlushInterval bounds how long a text delta waits in memory before it is
// stored (and, for followers of the run, published) while a model call
// streams; the events before it are stored with it.
const FlushInterval = 100 * time.Millisecond

// DefaultToolTimeout bounds one tool call.
const DefaultToolTimeout = 30 * time.Second

// Agent is what the loop needs to know about an agent.
type Agent struct {
	Name        string
	Model       string
	System      string
	Tools       []tool.Tool
	MaxSteps    int
	MaxTokens   int
	Timeout     time.Duration
	ToolTimeout time.Duration // 0: DefaultToolTimeout
	// MaxCostUSD caps the run's cost (agents[].max_cost_usd); 0: no cap.
	// Enforced by the Loop's Budget.
	MaxCostUSD float64
	// Client makes the agent's model calls (its resilience stack: cache,
	// fallbacks, breakers, retries, keys); nil: the Loop's Model.
	Client llm.Model
	// FallbackModels are the models Client falls back to, in order
	// (agents[].fallback_models): a model call's budget reservation is the
	// worst case of the dearest of Model and these.
	FallbackModels []string
}

// StepStore is the part of the store the loop uses.
type StepStore interface {
	SaveStep(ctx context.Context, cp *store.Checkpoint, events []store.Event) error
	LatestCheckpoint(ctx context.Context, runID string) (store.Checkpoint, error)
	ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error)
}

// UsageRecorder stores one usage row per model call (see
// metered.UsageRecorder).
type UsageRecorder = metered.UsageRecorder

// Loop executes runs.
type Loop struct {
	Model   llm.Model
	Store   StepStore
	Log     *slog.Logger
	Metrics *observe.Metrics
	// Pricing prices model calls (nil: every call costs 0).
	Pricing *cost.Table
	// Usage, when set, receives a usage row per model call; a failure is
	// logged and never fails the run.
	Usage UsageRecorder
	// Tokens, when set, limits model tokens per tenant and API key.
	Tokens TokenLimiter
	// Budget, when set, reserves each model call's worst-case cost
	// against the budgets of its tenant, key, agent and run before the
	// call and settles the actual cost after it (budget.Enforcer does).
	Budget BudgetReserver
	// Pricing, Usage, Tokens, Budget and Metrics make up the metering of
	// the loop's model calls: see package metered, which does it.
}

// BudgetReserver holds a model call's cost against budgets (see
// metered.BudgetReserver).
type BudgetReserver = metered.BudgetReserver

// TokenLimiter limits model tokens (see metered.TokenLimiter).
type TokenLimiter = metered.TokenLimiter

// ErrRateLimited wraps a TokenLimiter's refusal.
var ErrRateLimited = metered.ErrRateLimited

// Params are the inputs of Execute.
type Params struct {
	// Tenant owns the run; tools see it in their tool.CallInfo.
	Tenant         string
	RunID          string
	ConversationID string
	Agent          *Agent
	// History is the conversation before this run.
	History []llm.Message
	// Input is the new user message; ignored when resuming from a
	// checkpoint, which already holds it.
	Input llm.Message
	// OnEvent, if set, receives every event as it happens (before it is
	// stored), from one goroutine at a time and in seq order.
	OnEvent func(store.Event)
	// Commit, if set, runs when the model has answered: it must store cp
	// and events (which end with the done event) atomically with whatever
	// it commits. Its error fails the run (an error event instead of done).
	Commit func(ctx context.Context, r Result, cp *store.Checkpoint, events []store.Event) error
	// OnStored, if set, receives events once they are stored, in seq
	// order: what followers of the run may see (a stored event is never
	// renumbered, also if the run resumes on another worker).
	OnStored func([]store.Event)
	// MaxCostUSD is the request's cap on the run's cost (0: none); the
	// run's cap is the lower of it and Agent.MaxCostUSD.
	MaxCostUSD float64
}

// Result is a finished run.
type Result struct {
	// Messages are the messages this run adds to the conversation: the
	// user input, then assistant and tool_result messages in order.
	Messages   []llm.Message
	Output     []llm.Block // content of the final assistant message
	StopReason string
	Usage      llm.Usage
	// CostUSD is the priced cost of the run's model calls.
	CostUSD float64
	Steps   int
	LastSeq int64
}

// state is what a checkpoint holds.
type state struct {
	// Step counts finished model calls.
	Step     int           `json:"step"`
	Messages []llm.Message `json:"messages"`
	Usage    llm.Usage     `json:"usage"`
	// CostUSD sums the priced cost of the finished model calls.
	CostUSD float64 `json:"cost_usd,omitempty"`
	// Seq is the last persisted event seq.
	Seq int64 `json:"seq"`
	// Results are the finished tool results of the pending tool_use turn
	// (the last message is an assistant message with tool_use blocks).
	Results []llm.Block `json:"results,omitempty"`
	// StopReason of the last model call.
	StopReason string `json:"stop_reason"`
}

// execution is one Execute call's mutable state.
type execution struct {
	l       *Loop
	p       Params
	mu      sync.Mutex // guards st, pending, and event emission
	st      state
	seq     int64 // last emitted seq (>= st.Seq)
	pending []store.Event
	// stored are events written but not yet handed to OnStored (guarded
	// by mu); pubMu orders the hand-offs.
	stored []store.Event
	pubMu  sync.Mutex
	// deltaSince is when the oldest text delta not yet stored was emitted
	// (zero: none).
	deltaSince time.Time
	// ctx is Execute's context, for flushes from emit.
	ctx    context.Context
	cpStep int // checkpoint counter: one per model call (the final answer's is the commit's) and per tool result
}

// Execute runs the loop to the end. On error the returned Result holds what
// was done (steps and usage so far); the error is an *llm.Error (upstream),
// ErrMaxSteps, ErrTimeout, ErrCanceled or context.Canceled, ErrSuspended
// (the run goes on elsewhere), ErrRestore (nothing ran), ErrRateLimited,
// a *budget.ExceededError (a budget has no room for the next model call),
// or a store error; a cancellation cause other than these is wrapped as
// "cause (error)".
//
// Its parts before and after the loop are in functions that are not
// inlined, so that little of Execute's frame is on the stack while a step
// waits for its model (see callModel).
func (l *Loop) Execute(ctx context.Context, p *Params) (res Result, err error) {
	ctx, span := startRunSpan(ctx, p)
	defer func() { endRunSpan(span, &res, err) }()
	if p.Agent.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, p.Agent.Timeout, ErrTimeout)
		defer cancel()
	}
	x := &execution{l: l, p: *p, ctx: ctx}
	// Restoring is not cut short by cancellation: a run canceled before it
	// starts still ends through the loop, with its error event.
	if err := x.restore(context.WithoutCancel(ctx)); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrRestore, err)
	}
	if err := x.loop(ctx); err != nil {
		return x.stopped(ctx, err)
	}
	return x.result(), nil
}

// startRunSpan starts the run's span: child of the request's (a chat) or
// of the submitting request's remote span context (a queued run, see
// Runs.ExecuteRun).
//
//go:noinline
func startRunSpan(ctx context.Context, p *Params) (context.Context, trace.Span) {
	a := p.Agent
	return observe.Tracer().Start(ctx, "invoke_agent "+a.Name, trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "invoke_agent"),
		attribute.String("gen_ai.agent.name", a.Name),
		attribute.String("gen_ai.request.model", a.Model),
		attribute.String("gen_ai.conversation.id", p.ConversationID),
		attribute.String("agentd.run_id", p.RunID),
		attribute.String("agentd.tenant", p.Tenant),
	))
}

//go:noinline
func endRunSpan(span trace.Span, res *Result, err error) {
	span.SetAttributes(attribute.Int("agentd.steps", res.Steps),
		attribute.Int64("gen_ai.usage.input_tokens", res.Usage.InputTokens),
		attribute.Int64("gen_ai.usage.output_tokens", res.Usage.OutputTokens))
	if res.StopReason != "" {
		span.SetAttributes(attribute.String("agentd.stop_reason", res.StopReason))
	}
	observe.EndSpan(span, err)
}

// stopped ends a loop that returned err: the error as Execute reports it,
// its error event, and what was done, persisted even though ctx may be
// done.
//
//go:noinline
func (x *execution) stopped(ctx context.Context, err error) (Result, error) {
	cause := context.Cause(ctx)
	if ctx.Err() != nil && cause != nil {
		switch {
		case errors.Is(cause, ErrTimeout):
			err = ErrTimeout
		case errors.Is(cause, ErrSuspended), errors.Is(cause, ErrCanceled):
			err = cause
		default:
			err = fmt.Errorf("%w (%w)", cause, err)
		}
	}
	// A suspended run (its worker stops or lost it) gets no error event:
	// it goes on elsewhere.
	if !errors.Is(err, ErrSuspended) {
		x.emit(EventError, errorData(err))
	}
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ferr := x.flush(flushCtx); ferr != nil {
		x.l.Log.ErrorContext(ctx, "persist events of a stopped run", "err", ferr)
	}
	return x.result(), err
}

func (x *execution) result() Result {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := Result{
		Messages:   x.st.Messages,
		StopReason: x.st.StopReason,
		Usage:      x.st.Usage,
		CostUSD:    x.st.CostUSD,
		Steps:      x.st.Step,
		LastSeq:    x.seq,
	}
	if n := len(x.st.Messages); n > 0 && x.st.Messages[n-1].Role == "assistant" {
		_ = json.Unmarshal(x.st.Messages[n-1].Content, &r.Output)
	}
	return r
}

// restore loads the newest checkpoint, or starts fresh.
func (x *execution) restore(ctx context.Context) error {
	cp, err := x.l.Store.LatestCheckpoint(ctx, x.p.RunID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No step finished; events may still have been stored (flushed
		// during the first model call of an attempt that died).
		x.st = state{Messages: []llm.Message{x.p.Input}}
	case err != nil:
		return fmt.Errorf("load checkpoint of run %s: %w", x.p.RunID, err)
	default:
		if err := json.Unmarshal(cp.State, &x.st); err != nil {
			return fmt.Errorf("decode checkpoint %d of run %s: %w", cp.Step, x.p.RunID, err)
		}
		x.cpStep = cp.Step
	}
	// Events may have been stored after the checkpoint (flushed during a
	// model call, or the record of how the last attempt stopped): number
	// new events after the last stored one, never reusing a seq a client
	// may have seen.
	x.seq = x.st.Seq
	for {
		evs, err := x.l.Store.ListEvents(ctx, x.p.RunID, x.seq, 1000)
		if err != nil {
			return fmt.Errorf("read events of run %s: %w", x.p.RunID, err)
		}
		if len(evs) == 0 {
			break
		}
		x.seq = evs[len(evs)-1].Seq
	}
	if x.seq == 0 {
		x.emit(EventStart, map[string]any{
			"run_id": x.p.RunID, "conversation_id": x.p.ConversationID,
			"agent": x.p.Agent.Name, "model": x.p.Agent.Model,
		})
		return nil
	}
	x.l.Log.InfoContext(ctx, "resuming run", "checkpoint", x.cpStep, "step", x.st.Step, "last_seq", x.seq)
	// Text deltas of a model call that did not finish were already sent;
	// this tells followers that the step starts over.
	x.emit(EventResumed, map[string]any{"step": x.st.Step + 1, "after_seq": x.seq})
	return nil
}

func (x *execution) loop(ctx context.Context) error {
	a := x.p.Agent
	for {
		if calls := x.pendingToolUses(); len(calls) > 0 {
			if err := x.runTools(ctx, calls); err != nil {
				return err
			}
		} else if x.lastRole() == "assistant" {
			break // the model answered without asking for tools
		}
		if x.st.Step >= a.MaxSteps {
			return ErrMaxSteps
		}
		if err := x.callModel(ctx); err != nil {
			return err
		}
	}
	if x.p.Commit != nil {
		return x.commitDone(ctx)
	}
	x.emit(EventDone, x.answerData())
	return x.checkpoint(ctx)
}

// commitDone hands the final checkpoint and the events still queued, done
// included, to Commit, which stores them with the turn and the run's final
// status in one transaction. Nobody sees done before it is stored: a client
// that saw done finds the turn in the conversation, and a crash leaves
// either all of it or none of it.
func (x *execution) commitDone(ctx context.Context) error {
	res := x.result()
	raw, err := json.Marshal(x.answerData())
	if err != nil {
		return fmt.Errorf("encode done event: %w", err)
	}
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	done := store.Event{RunID: x.p.RunID, Seq: x.seq + 1, Type: EventDone, Data: raw, CreatedAt: time.Now().UTC()}
	events := append(append(make([]store.Event, 0, len(x.pending)+1), x.pending...), done)
	st := x.st
	st.Seq = done.Seq
	state, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	cp := &store.Checkpoint{RunID: x.p.RunID, Step: x.cpStep + 1, State: state, CreatedAt: done.CreatedAt}
	if err := x.p.Commit(ctx, res, cp, events); err != nil {
		return err
	}
	x.seq, x.st.Seq, x.cpStep = done.Seq, done.Seq, x.cpStep+1
	x.pending, x.deltaSince = x.pending[:0], time.Time{}
	if x.p.OnEvent != nil {
		x.p.OnEvent(done)
	}
	x.stored = append(x.stored, events...)
	return nil
}

func (x *execution) lastRole() string {
	if n := len(x.st.Messages); n > 0 {
		return x.st.Messages[n-1].Role
	}
	return ""
}

// pendingToolUses returns the tool_use blocks of the last message if it is
// an assistant message asking for tools.
func (x *execution) pendingToolUses() []llm.Block {
	n := len(x.st.Messages)
	if n == 0 || x.st.Messages[n-1].Role != "assistant" {
		return nil
	}
	var blocks []llm.Block
	if err := json.Unmarshal(x.st.Messages[n-1].Content, &blocks); err != nil {
		return nil
	}
	var calls []llm.Block
	for _, b := range blocks {
		if b.Type == "tool_use" {
			calls = append(calls, b)
		}
	}
	return calls
}

// callModel makes the step's model call. It is three functions so that
// the frame on the stack while the model is awaited is small: prepareCall
// and finishCall are not inlined, and their locals (the request being
// built, the span's attributes, the events' data) are gone during the
// wait. That depth decides the stack size of a held chat's goroutine (see
// docs/benchmarks.md, memory per chat).
func (x *execution) callModel(ctx context.Context) error {
	c, err := x.prepareCall(ctx)
	if err != nil {
		return err
	}
	resp, err := c.model.Stream(c.sctx, c.req, c.onDelta)
	return x.finishCall(ctx, c, &resp, err)
}

// modelCall is one step's model call, between prepareCall and finishCall.
type modelCall struct {
	step    int
	req     llm.Request
	model   llm.Model
	metered *metered.Call
	sctx    context.Context
	onDelta llm.DeltaFunc
}

//go:noinline
func (x *execution) prepareCall(ctx context.Context) (*modelCall, error) {
	a := x.p.Agent
	step := x.st.Step + 1
	req := llm.Request{
		Model:     a.Model,
		System:    a.System,
		MaxTokens: a.MaxTokens,
		Messages:  append(append(make([]llm.Message, 0, len(x.p.History)+len(x.st.Messages)), x.p.History...), x.st.Messages...),
	}
	for _, t := range a.Tools {
		req.Tools = append(req.Tools, t.Spec())
	}
	model := a.Client
	if model == nil {
		model = x.l.Model
	}
	var keyID string
	if pr, ok := auth.FromContext(ctx); ok {
		keyID = pr.KeyID
	}
	m := x.l.meter()
	sctx, mc, err := m.Begin(ctx, metered.CallInfo{
		Tenant: x.p.Tenant, Key: keyID, Agent: a.Name, RunID: x.p.RunID, Step: step,
		Model: a.Model, Fallbacks: a.FallbackModels, MaxTokens: int64(a.MaxTokens), Request: &req,
		RunMaxUSD: runCap(a.MaxCostUSD, x.p.MaxCostUSD), Trace: true,
	})
	if err != nil {
		return nil, err
	}
	return &modelCall{
		step: step, req: req, model: model, metered: mc, sctx: sctx,
		onDelta: func(d llm.Delta) {
			x.emit(EventTextDelta, textDelta{Step: step, Index: d.Index, Text: d.Text})
		},
	}, nil
}

//go:noinline
func (x *execution) finishCall(ctx context.Context, c *modelCall, r *llm.Response, err error) error {
	if err != nil {
		c.metered.Abort(ctx, err)
		return err
	}
	step, resp := c.step, r
	usd := c.metered.Settle(ctx, resp)
	u := resp.Usage

	content, err := json.Marshal(resp.Content)
	if err != nil {
		return fmt.Errorf("encode model output: %w", err)
	}
	if len(resp.Content) == 0 {
		content = json.RawMessage(`[{"type":"text","text":""}]`)
	}
	x.mu.Lock()
	x.st.Step = step
	x.st.Usage = x.st.Usage.Add(u)
	x.st.CostUSD += usd
	x.st.StopReason = resp.StopReason
	x.st.Messages = append(x.st.Messages, llm.Message{Role: "assistant", Content: content})
	x.st.Results = nil
	x.mu.Unlock()
	toolUse := false
	for _, b := range resp.Content {
		if b.Type == "tool_use" {
			toolUse = true
			x.emit(EventToolUse, map[string]any{"step": step, "id": b.ID, "name": b.Name, "input": b.Input})
		}
	}
	x.emit(EventUsage, map[string]any{
		"step": step, "model": resp.Model, "request_id": resp.RequestID, "stop_reason": resp.StopReason,
		"input_tokens": u.InputTokens, "output_tokens": u.OutputTokens,
		"cache_creation_input_tokens": u.CacheCreationInputTokens, "cache_read_input_tokens": u.CacheReadInputTokens,
		"cost_usd": usd,
	})
	if !toolUse && x.p.Commit != nil {
		// The final answer: the loop ends and commitDone stores this
		// step's checkpoint and events with the turn, in one transaction,
		// right after this. A checkpoint of its own would be one more
		// write per chat; what it would save is one model call, for a run
		// resumed after a crash between the two writes.
		return nil
	}
	return x.checkpoint(ctx)
}

// runCap is the lower of two caps, 0 meaning none.
func runCap(a, b float64) float64 {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}

// meter is the Loop's metering of model calls.
func (l *Loop) meter() metered.Meter {
	return metered.Meter{Pricing: l.Pricing, Usage: l.Usage, Tokens: l.Tokens, Budget: l.Budget, Metrics: l.Metrics, Log: l.Log}
}

// runTools runs the tool calls of one model turn in parallel, checkpointing
// each result as it arrives, then appends the tool_result message.
func (x *execution) runTools(ctx context.Context, calls []llm.Block) error {
	done := make(map[string]bool, len(x.st.Results))
	for _, r := range x.st.Results {
		done[r.ToolUseID] = true
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(calls))
	for _, c := range calls {
		if done[c.ID] {
			continue // finished before a restart: not repeated
		}
		wg.Add(1)
		go func(c llm.Block) {
			defer wg.Done()
			res := x.callTool(ctx, c)
			x.mu.Lock()
			x.st.Results = append(x.st.Results, res)
			x.mu.Unlock()
			if err := x.checkpoint(ctx); err != nil {
				errs <- err
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Results go back in the order the model asked for them.
	x.mu.Lock()
	byID := make(map[string]llm.Block, len(x.st.Results))
	for _, r := range x.st.Results {
		byID[r.ToolUseID] = r
	}
	ordered := make([]llm.Block, 0, len(calls))
	for _, c := range calls {
		ordered = append(ordered, byID[c.ID])
	}
	content, err := json.Marshal(ordered)
	if err == nil {
		x.st.Messages = append(x.st.Messages, llm.Message{Role: "user", Content: content})
		x.st.Results = nil
	}
	x.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode tool results: %w", err)
	}
	return nil
}

func (x *execution) callTool(ctx context.Context, c llm.Block) llm.Block {
	a := x.p.Agent
	ctx, span := observe.Tracer().Start(ctx, "execute_tool "+c.Name, trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "execute_tool"),
		attribute.String("gen_ai.tool.name", c.Name),
		attribute.String("gen_ai.tool.call.id", c.ID),
	))
	defer span.End()
	start := time.Now()
	res := llm.Block{Type: "tool_result", ToolUseID: c.ID}
	outcome := "ok"
	var t tool.Tool
	for _, cand := range a.Tools {
		if cand.Spec().Name == c.Name {
			t = cand
			break
		}
	}
	if t == nil {
		res.Content, res.IsError, outcome = fmt.Sprintf("tool %q is not available to this agent", c.Name), true, "unknown"
	} else {
		timeout := a.ToolTimeout
		if timeout <= 0 {
			timeout = DefaultToolTimeout
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		// Tools get the call's identity: idempotency keys and audit rows
		// of consequential tools.
		tctx = tool.WithCallInfo(tctx, tool.CallInfo{
			Tenant: x.p.Tenant, Agent: a.Name, RunID: x.p.RunID, Step: x.st.Step, ToolUseID: c.ID,
		})
		out, err := t.Call(tctx, c.Input)
		cancel()
		switch {
		case err != nil && tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
			res.Content, res.IsError, outcome = fmt.Sprintf("tool %s timed out after %s", c.Name, timeout), true, "timeout"
		case err != nil:
			// tool.Outcome: "error", or the kind of a *tool.Error
			// (timeout, unavailable, http_status, blocked, ...).
			res.Content, res.IsError, outcome = fmt.Sprintf("tool %s failed: %v", c.Name, err), true, tool.Outcome(err)
		default:
			res.Content = out
		}
	}
	d := time.Since(start)
	x.l.Metrics.ObserveTool(c.Name, outcome, d)
	span.SetAttributes(attribute.String("agentd.tool.outcome", outcome))
	if res.IsError {
		span.SetAttributes(attribute.String("error.type", outcome))
		span.SetStatus(codes.Error, observe.ScrubSpanText(res.Content))
	}
	x.emit(EventToolResult, map[string]any{
		"step": x.st.Step, "tool_use_id": c.ID, "name": c.Name, "content": res.Content,
		"is_error": res.IsError, "duration_ms": d.Milliseconds(),
	})
	return res
}

// emit numbers an event, hands it to OnEvent and queues it for storage,
// which happens with the next checkpoint or after FlushInterval.
func (x *execution) emit(typ string, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		raw, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
	}
	x.mu.Lock()
	x.seq++
	now := time.Now().UTC()
	ev := store.Event{RunID: x.p.RunID, Seq: x.seq, Type: typ, Data: raw, CreatedAt: now}
	x.pending = append(x.pending, ev)
	if x.p.OnEvent != nil {
		x.p.OnEvent(ev)
	}
	flushed := false
	if typ == EventTextDelta && x.deltaSince.IsZero() {
		x.deltaSince = now
	}
	// Measured from the first unstored delta, not from the oldest pending
	// event: after a long wait for the first token (the start event is
	// pending since the run began) the first delta does not write to the
	// store on the token path, and an answer that streams in less than
	// FlushInterval is stored once, with the step's checkpoint.
	if typ == EventTextDelta && now.Sub(x.deltaSince) >= FlushInterval {
		// A long stream: store (and publish) its deltas so far. A
		// failure here is retried with the next flush or checkpoint.
		if err := x.saveLocked(x.ctx, nil); err != nil {
			x.l.Log.WarnContext(x.ctx, "flush events", "err", err)
		}
		flushed = true
	}
	x.mu.Unlock()
	if flushed {
		// On the token stream's path: never wait for a publisher that is
		// busy; it (or the next flush) hands these events on.
		x.publish(true)
	}
}

// publish hands stored events to OnStored, in order, outside mu: a slow
// fan-out (a NOTIFY round trip on PostgreSQL) holds neither the model
// stream nor the tools' checkpoints. With try, it gives way to a publisher
// already at work.
func (x *execution) publish(try bool) {
	if x.p.OnStored == nil {
		return
	}
	if try {
		if !x.pubMu.TryLock() {
			return
		}
	} else {
		x.pubMu.Lock()
	}
	defer x.pubMu.Unlock()
	for {
		x.mu.Lock()
		evs := x.stored
		x.stored = nil
		x.mu.Unlock()
		if len(evs) == 0 {
			return
		}
		x.p.OnStored(evs)
	}
}

// checkpoint stores the state and the queued events in one transaction.
func (x *execution) checkpoint(ctx context.Context) error {
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.st.Seq = x.seq
	raw, err := json.Marshal(x.st)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	cp := &store.Checkpoint{RunID: x.p.RunID, Step: x.cpStep + 1, State: raw, CreatedAt: time.Now().UTC()}
	if err := x.saveLocked(ctx, cp); err != nil {
		return err
	}
	x.cpStep++
	return nil
}

// flush stores the queued events without a checkpoint.
func (x *execution) flush(ctx context.Context) error {
	defer x.publish(false)
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.pending) == 0 {
		return nil
	}
	return x.saveLocked(ctx, nil)
}

// saveLocked writes cp (if any) and the queued events, and queues them for
// publish (which the caller runs after releasing mu). Holding mu across the
// write keeps checkpoints and events in order when tools finish together.
func (x *execution) saveLocked(ctx context.Context, cp *store.Checkpoint) error {
	if err := x.l.Store.SaveStep(ctx, cp, x.pending); err != nil {
		return fmt.Errorf("save step of run %s: %w", x.p.RunID, err)
	}
	x.stored = append(x.stored, x.pending...)
	x.pending = make([]store.Event, 0, len(x.pending))
	x.deltaSince = time.Time{}
	return nil
}

type textDelta struct {
	Step  int    `json:"step"`
	Index int    `json:"index"`
	Text  string `json:"text"`
}

// Answer is the data of a done event and the body of a chat answer.
type Answer struct {
	RunID          string      `json:"run_id"`
	ConversationID string      `json:"conversation_id"`
	Agent          string      `json:"agent"`
	Content        []llm.Block `json:"content"`
	Text           string      `json:"text"`
	StopReason     string      `json:"stop_reason"`
	Steps          int         `json:"steps"`
	Usage          llm.Usage   `json:"usage"`
	// CostUSD is the run's cost (agentd's pricing table).
	CostUSD float64 `json:"cost_usd"`
}

func (x *execution) answerData() Answer {
	r := x.result()
	return NewAnswer(x.p.RunID, x.p.ConversationID, x.p.Agent.Name, r)
}

// NewAnswer builds the answer of a finished run.
func NewAnswer(runID, conversationID, agent string, r Result) Answer {
	a := Answer{
		RunID: runID, ConversationID: conversationID, Agent: agent,
		Content: r.Output, StopReason: r.StopReason, Steps: r.Steps, Usage: r.Usage, CostUSD: r.CostUSD,
	}
	if a.Content == nil {
		a.Content = []llm.Block{}
	}
	for _, b := range r.Output {
		if b.Type == "text" {
			a.Text += b.Text
		}
	}
	return a
}

// ErrorInfo classifies a run error for events, run rows and HTTP answers.
type ErrorInfo struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func errorData(err error) ErrorInfo { return ClassifyError(err) }

// ClassifyError maps a run error to a stable type and a message safe to show
// clients.
func ClassifyError(err error) ErrorInfo {
	switch {
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ErrorInfo{Type: "timeout", Message: "the run exceeded its time limit"}
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		return ErrorInfo{Type: "canceled", Message: "the run was canceled"}
	case errors.Is(err, ErrMaxSteps):
		return ErrorInfo{Type: "max_steps", Message: ErrMaxSteps.Error()}
	case errors.Is(err, ErrRateLimited):
		return ErrorInfo{Type: "rate_limited", Message: err.Error()}
	}
	if ex, ok := budget.AsExceeded(err); ok {
		return ErrorInfo{Type: "budget_exceeded", Message: ex.Error()}
	}
	if e, ok := llm.AsError(err); ok {
		switch {
		case e.Status == 429 || e.Status == 529 || e.Type == "overloaded_error" || e.Type == "rate_limit_error":
			return ErrorInfo{Type: "upstream_unavailable", Message: "the model provider is overloaded or rate-limiting: " + e.Message}
		case e.Type == "circuit_open" || e.Type == "queue_full":
			return ErrorInfo{Type: "upstream_unavailable", Message: "every model of the agent is unavailable (" + e.Type + ")"}
		case e.Type == "timeout":
			return ErrorInfo{Type: "upstream_timeout", Message: "the model call timed out"}
		case e.Status == 0:
			return ErrorInfo{Type: "upstream_error", Message: "the model provider could not be reached or cut the stream"}
		default:
			return ErrorInfo{Type: "upstream_error", Message: fmt.Sprintf("the model provider answered %d %s", e.Status, e.Type)}
		}
	}
	return ErrorInfo{Type: "internal_error", Message: "internal error"}
}
