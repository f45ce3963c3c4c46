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
	"go.opentelemetry.io/otel/trace"

	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/metered"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
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
	// Approval says which tool calls wait for a person's decision.
	Approval ApprovalPolicy
	// Runtime, when set, makes the agent a hosted program
	// (agents[].runtime, program.go): its runs execute the program instead
	// of the loop; Model, System, Tools, MaxSteps and MaxTokens do not
	// apply.
	Runtime *Runtime
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

	// Programs serves the model calls of hosted agent programs
	// (Agent.Runtime); nil: agents with a runtime fail.
	Programs *ProgramHost
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
	// (nil for a resumable run, whose final state is checkpointed already)
	// and events (which end with the done event) atomically with whatever
	// it commits. Its error fails the run (an error event instead of done).
	Commit func(ctx context.Context, r Result, cp *store.Checkpoint, events []store.Event) error
	// Resumable: another execution may resume the run from its checkpoint
	// if this one stops without an outcome (a queued run, whose worker may
	// die or drain). The final answer is then checkpointed on its own
	// before Commit, so that a resumed run never pays for that model call
	// again, and Commit stores no second copy of it. Unset (an inline chat,
	// which nothing resumes), the final answer's checkpoint is the one
	// Commit stores: one write fewer.
	Resumable bool
	// OnStored, if set, receives events once they are stored, in seq
	// order: what followers of the run may see (a stored event is never
	// renumbered, also if the run resumes on another worker).
	OnStored func([]store.Event)
	// MaxCostUSD is the request's cap on the run's cost (0: none); the
	// run's cap is the lower of it and Agent.MaxCostUSD.
	MaxCostUSD float64
	// Decisions are the run's decided approvals by tool_use id (a run
	// resumed after a pause): approved calls run, others get an error
	// tool_result.
	Decisions map[string]store.Approval
	// Attempt is the run's attempt (1 for the first); a hosted program
	// sees it.
	Attempt int
	// Fresh: nothing of the run is stored but its row (its first
	// execution: an inline chat, or a queued run's first claim), so it
	// starts from Input without reading a checkpoint or events back.
	Fresh bool
	// Pause, if set, stores the run when a tool call needs a decision
	// that is not in Decisions; Execute then returns a *PausedError. Nil:
	// such a call fails the run.
	Pause PauseFunc
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
	CostUSD money.Nanos
	Steps   int
	LastSeq int64
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
	cpStep int // checkpoint counter: one per model call and per tool result, plus the commit's (see the checkpoint contract)
}

// Execute runs the loop to the end. On error the returned Result holds what
// was done (steps and usage so far); the error is an *llm.Error (upstream),
// ErrMaxSteps, ErrTimeout, ErrCanceled or context.Canceled, ErrSuspended
// (the run goes on elsewhere), ErrRestore (nothing ran), a *PausedError
// (ErrRequiresAction: the run waits for approvals, stored by Params.Pause),
// ErrRateLimited, a *budget.ExceededError (a budget has no room for the next model call),
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
	run := x.loop
	if p.Agent.Runtime != nil {
		run = x.program
	}
	if err := run(ctx); err != nil {
		if errors.Is(err, ErrRequiresAction) {
			return x.result(), err // paused: stored, not stopped
		}
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
	if errors.Is(err, ErrRequiresAction) {
		// Paused, not failed.
		span.SetAttributes(attribute.Bool("agentd.requires_action", true))
		err = nil
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
		case errors.Is(cause, ErrSuspended), errors.Is(cause, ErrCanceled), errors.Is(cause, ErrInterrupted):
			err = cause
		default:
			err = fmt.Errorf("%w (%w)", cause, err)
		}
	}
	// A suspended run (its worker stops or lost it) gets no error event:
	// it goes on elsewhere.
	if !errors.Is(err, ErrSuspended) {
		x.emit(errorData(err))
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
	x.emit(x.answerData())
	return x.checkpoint(ctx)
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
