package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// Errors of Prepare, each with its own HTTP meaning.
var (
	ErrAgentNotFound        = errors.New("agent not found")
	ErrConversationNotFound = errors.New("conversation not found")
	// ErrConversationAgent: the conversation belongs to another agent.
	ErrConversationAgent = errors.New("conversation belongs to another agent")
	// ErrConversationBusy: another message to the conversation is in
	// flight (concurrency policy "reject"), or the conversation changed
	// while this run executed.
	ErrConversationBusy = errors.New("conversation is busy with another message")
	// ErrToolsUnavailable: the tools of the agent could not be made ready
	// when its run was to execute (ChatAgent.Prepare failed: say, an MCP
	// server by URL is unreachable). The run fails with the reason.
	ErrToolsUnavailable = errors.New("the agent's tools are unavailable")
)

// ChatStore is the part of the store synchronous chat uses.
type ChatStore interface {
	StepStore
	GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error)
	AppendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error)
	CreateRun(ctx context.Context, r store.Run) error
	UpdateRun(ctx context.Context, p store.UpdateRunParams) error
	PauseRun(ctx context.Context, p store.PauseRunParams) error
	GetRun(ctx context.Context, tenant, id string) (store.Run, error)
	UnfinishedRuns(ctx context.Context, tenant, conversationID string) ([]store.Run, error)
	replayStore
}

// ChatAgent is an agent as chat sees it: the loop's view plus conversation
// limits.
type ChatAgent struct {
	Agent
	// MaxMessages caps the stored conversation (whole turns are trimmed).
	MaxMessages int
	// EnqueueWhenUnavailable accepts a chat as a queued run when every
	// model is unavailable (agents[].on_unavailable: enqueue).
	EnqueueWhenUnavailable bool
	// ConcurrencyPolicy is what happens to a message sent while the
	// conversation is busy (agents[].concurrency_policy; "": reject).
	ConcurrencyPolicy Policy
	// Prepare, when set, returns the agent a run executes with, made on
	// the process that executes it each time the run starts or resumes,
	// rather than wherever the agent is resolved (a submit resolves it
	// too): an agent created through the Managed Agents API connects to
	// its MCP servers by URL there. An error fails the run
	// (ErrToolsUnavailable) with its message.
	Prepare func(ctx context.Context) (*ChatAgent, error)
}

// prepared is a's Prepare'd agent (a itself without a Prepare).
func prepared(ctx context.Context, a *ChatAgent) (*ChatAgent, error) {
	if a == nil || a.Prepare == nil {
		return a, nil
	}
	p, err := a.Prepare(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToolsUnavailable, err)
	}
	return p, nil
}

// Service runs chat turns: it owns the conversation around a run.
//
// Consistency: a conversation only ever receives whole turns. The user
// message and the assistant/tool messages of a run are appended in one
// transaction when the run succeeds; when it fails, the conversation is left
// exactly as it was (the run row, its events and its checkpoints keep what
// happened).
type Service struct {
	Loop            *Loop
	Store           ChatStore
	Agents          map[string]*ChatAgent
	ConversationTTL time.Duration
	Log             *slog.Logger
	Metrics         *observe.Metrics
	// Hub, when set, receives every event live (followers of
	// GET /v1/runs/{id}/events).
	Hub Publisher
	// Secrets, when set, refuses or scrubs messages that contain a
	// configured secret value, before they are stored or sent.
	Secrets *MessageGuard
	// IdempotencyTTL is how long a chat's Idempotency-Key maps to its
	// run (0: DefaultIdempotencyTTL).
	IdempotencyTTL time.Duration
	// Audit, when set, records approval requests (and Approvals records
	// the decisions).
	Audit AuditAppender
	// Redact, when set, redacts a tool input before it is audited.
	Redact func(json.RawMessage) json.RawMessage

	// Resolver, when set, finds agents that are not in Agents (agents
	// defined through the API, stored per tenant and version: the Managed
	// Agents face).
	Resolver AgentResolver
	// Definitions, when set, keeps the definition of the configured agent
	// each run was submitted under, so that the run executes with it on
	// any worker (definition.go); nil: runs execute with the executing
	// instance's configuration.
	Definitions store.AgentDefinitions
	defs        definitions

	mu   sync.Mutex
	busy map[string]struct{}
	// turns wakes the chats of this process waiting for their turn.
	turns turnWaiters
	// inline are the inline chats executing here, by run id.
	inline map[string]context.CancelCauseFunc
}

func (s *Service) trackInline(id string, cancel context.CancelCauseFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inline == nil {
		s.inline = make(map[string]context.CancelCauseFunc)
	}
	s.inline[id] = cancel
}

func (s *Service) untrackInline(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inline, id)
}

// stopInline stops the inline chat of run id if it executes here.
func (s *Service) stopInline(id string, cause error) {
	s.mu.Lock()
	cancel := s.inline[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// AgentResolver finds an agent that is not in the configuration.
type AgentResolver interface {
	// ResolveAgent returns the tenant's agent name at version (0: its
	// latest), or an error wrapping ErrAgentNotFound.
	ResolveAgent(ctx context.Context, tenant, name string, version int) (*ChatAgent, error)
}

// ConversationAgentResolver is an AgentResolver whose agent may depend on
// the conversation it runs on (a Managed Agents session whose tools were
// changed mid-session): the Service asks it instead of ResolveAgent when
// it knows the conversation.
type ConversationAgentResolver interface {
	ResolveConversationAgent(ctx context.Context, tenant, name string, version int, conversationID string) (*ChatAgent, error)
}

// agent finds an agent: the configuration's, else the Resolver's (for
// conversation conv, when known).
func (s *Service) agent(ctx context.Context, tenant, name string, version int, conv string) (*ChatAgent, error) {
	if a, ok := s.Agents[name]; ok {
		return a, nil
	}
	if s.Resolver != nil {
		if cr, ok := s.Resolver.(ConversationAgentResolver); ok && conv != "" {
			return cr.ResolveConversationAgent(ctx, tenant, name, version, conv)
		}
		return s.Resolver.ResolveAgent(ctx, tenant, name, version)
	}
	return nil, fmt.Errorf("%w: %q", ErrAgentNotFound, name)
}

// Publisher receives stored events of a run, in order.
type Publisher interface {
	Publish(ctx context.Context, evs []store.Event)
}

// ChatParams are the inputs of Prepare.
type ChatParams struct {
	Tenant         string
	Agent          string
	ConversationID string // empty: start a new conversation
	Message        string
	// MaxCostUSD caps this run's cost (0: only the agent's max_cost_usd);
	// it can lower the agent's cap, never raise it.
	MaxCostUSD float64
	// IdempotencyKey, when set, is bound to the chat's run (see Replayed).
	IdempotencyKey string
	// ConcurrencyPolicy, when set, overrides the agent's for this message
	// (see Policy and Runs.PrepareChat).
	ConcurrencyPolicy Policy
}

// Chat is a prepared chat turn: its run row exists and its conversation is
// held. Call Execute exactly once.
type Chat struct {
	s      *Service
	agent  *ChatAgent
	tenant string
	conv   store.Conversation
	isNew  bool
	// fresh: nothing of the run is stored but its row (Params.Fresh).
	fresh   bool
	run     store.Run
	input   llm.Message
	started time.Time
	// held: the in-process busy mark is ours to release.
	held bool
	// message is the user's text.
	message string
	// queued: the run came from the queue (not an inline chat).
	queued bool
	// maxCostUSD is the request's cap on the run's cost (0: none).
	maxCostUSD float64
	// committed: the turn is in the conversation (set by the loop's
	// Commit).
	committed bool
	// decisions are the run's decided approvals (a run resumed after a
	// pause).
	decisions map[string]store.Approval
	// turn, when set, is the chat's turn in its conversation (policies
	// other than reject; Runs.PrepareChat).
	turn *heldChat
	// lease, when set, is the lease an inline chat holds on its run from
	// its insert on (Runs.PrepareChat under reject): renewed while it
	// executes, taken over by a worker once it lapses (its process died).
	lease *chatLease
}

// chatLease is an inline chat's lease on its run.
type chatLease struct {
	runs  *Runs
	owner string
}

// Agent returns the chat's agent name.
func (c *Chat) Agent() string { return c.agent.Name }

// RequestedConversationID returns the conversation the request named, or ""
// when it started a new one.
func (c *Chat) RequestedConversationID() string {
	if c.isNew {
		return ""
	}
	return c.conv.ID
}

// Message returns the chat's user message.
func (c *Chat) Message() string { return c.message }

// EnqueueWhenUnavailable reports the agent's last rung (see ChatAgent).
func (c *Chat) EnqueueWhenUnavailable() bool { return c.agent.EnqueueWhenUnavailable }

// RunID returns the id of the chat's run.
func (c *Chat) RunID() string { return c.run.ID }

// ConversationID returns the id of the chat's conversation (new or not).
func (c *Chat) ConversationID() string { return c.conv.ID }

// resolve finds the agent and the conversation (new when convID is empty).
func (s *Service) resolve(ctx context.Context, tenant, agentName string, version int, convID string) (*ChatAgent, store.Conversation, bool, error) {
	agent, err := s.agent(ctx, tenant, agentName, version, convID)
	if err != nil {
		return nil, store.Conversation{}, false, err
	}
	if convID == "" {
		return agent, store.Conversation{ID: "conv_" + newID(), Tenant: tenant, Agent: agent.Name}, true, nil
	}
	conv, err := s.Store.GetConversation(ctx, tenant, convID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, conv, false, fmt.Errorf("%w: %q", ErrConversationNotFound, convID)
	}
	if err != nil {
		return nil, conv, false, fmt.Errorf("load conversation %s: %w", convID, err)
	}
	if conv.Agent != agent.Name {
		return nil, conv, false, fmt.Errorf("%w: conversation %s belongs to agent %q", ErrConversationAgent, conv.ID, conv.Agent)
	}
	return agent, conv, false, nil
}

// runInput is what a run row keeps of its request.
type runInput struct {
	Message string `json:"message"`
	// NewConversation: the run creates its conversation when it succeeds.
	NewConversation bool   `json:"new_conversation,omitempty"`
	Webhook         string `json:"webhook,omitempty"`
	// MaxCostUSD is the request's cap on the run's cost (0: none).
	MaxCostUSD float64 `json:"max_cost_usd,omitempty"`
	// AgentVersion pins the version of an agent the Resolver finds (0:
	// its latest when the run executes).
	AgentVersion int `json:"agent_version,omitempty"`
	// System and SystemMessage are SubmitParams'.
	System        []string `json:"system,omitempty"`
	SystemMessage string   `json:"system_message,omitempty"`
}

func userMessage(text string) llm.Message {
	content, _ := json.Marshal([]llm.Block{{Type: "text", Text: text}})
	return llm.Message{Role: "user", Content: content}
}

// Prepare checks the request, holds the conversation and records the run.
// The run holds no lease: nothing takes it over should this process die
// (Runs.PrepareChat gives it one).
func (s *Service) Prepare(ctx context.Context, p ChatParams) (*Chat, error) {
	return s.prepare(ctx, p, nil)
}

// prepare is Prepare; with leases set the run is inserted with a lease of
// leases' (in the insert: no extra write) that the chat renews while it
// executes (Chat.execute), so that a worker of leases' takes the run over
// once it lapses.
func (s *Service) prepare(ctx context.Context, p ChatParams, leases *Runs) (*Chat, error) {
	msg, err := s.Secrets.Check(p.Message)
	if err != nil {
		return nil, err
	}
	p.Message = msg
	agent, conv, isNew, err := s.resolve(ctx, p.Tenant, p.Agent, 0, p.ConversationID)
	if err != nil {
		return nil, err
	}
	if agent, err = prepared(ctx, agent); err != nil {
		return nil, err
	}
	c := &Chat{s: s, agent: agent, tenant: p.Tenant, conv: conv, isNew: isNew, started: time.Now(), held: true, fresh: true}
	if !s.hold(c.conv.ID) {
		return nil, fmt.Errorf("%w: %s", ErrConversationBusy, c.conv.ID)
	}
	if err := s.checkTurns(ctx, c); err != nil {
		s.release(c.conv.ID)
		return nil, err
	}
	c.input, c.message = userMessage(p.Message), p.Message
	c.maxCostUSD = p.MaxCostUSD
	digest, err := s.pinAgent(ctx, agent)
	if err != nil {
		s.release(c.conv.ID)
		return nil, err
	}
	input, _ := json.Marshal(runInput{Message: p.Message, NewConversation: isNew, MaxCostUSD: p.MaxCostUSD})
	now := time.Now().UTC()
	c.run = store.Run{
		ID: "run_" + newID(), Tenant: p.Tenant, Agent: agent.Name, ConversationID: c.conv.ID,
		Status: store.RunRunning, Input: input, Attempt: 1, CreatedAt: now, StartedAt: now,
		IdempotencyKey: p.IdempotencyKey, AgentDigest: digest,
	}
	if leases != nil {
		c.lease = &chatLease{runs: leases, owner: leases.Owner + "/chat/" + c.run.ID}
		c.run.HeldBy, c.run.HeldUntil = c.lease.owner, now.Add(leases.leaseTTL())
	}
	if err := s.Store.CreateRun(ctx, c.run); err != nil {
		s.release(c.conv.ID)
		return nil, s.chatKeyConflict(ctx, p, err)
	}
	return c, nil
}

// checkTurns refuses a message under reject to a conversation whose
// messages under the other policies (they take turns, see Policy) are not
// all finished: run now, it would make the one in progress, or the next,
// fail at its commit. (Runs outside the order are seen by the in-process
// mark and by the commit's version check, as before.)
func (s *Service) checkTurns(ctx context.Context, c *Chat) error {
	if c.isNew {
		return nil
	}
	runs, err := s.Store.UnfinishedRuns(ctx, c.tenant, c.conv.ID)
	if err != nil {
		return fmt.Errorf("look for unfinished turns: %w", err)
	}
	for _, r := range runs {
		if r.Turn > 0 {
			return fmt.Errorf("%w: %s: its message in turn %d (run %s) is %s; send with concurrency_policy enqueue to queue after it",
				ErrConversationBusy, c.conv.ID, r.Turn, r.ID, r.Status)
		}
	}
	return nil
}

// Execute runs the turn. onEvent (may be nil) sees every event live. A
// turn that pauses for a person's approval returns its answer so far
// (StopReason StopApprovalRequired, with PendingApprovals) and an error
// that errors.Is ErrRequiresAction.
func (c *Chat) Execute(ctx context.Context, onEvent func(store.Event)) (Answer, error) {
	res, err := c.execute(ctx, onEvent)
	if pe := (*PausedError)(nil); errors.As(err, &pe) {
		// Paused for approval: the answer so far, and what it waits for.
		a := c.answer(&res)
		a.StopReason = StopApprovalRequired
		for _, p := range pe.Pending {
			a.PendingApprovals = append(a.PendingApprovals, NewApprovalBody(p))
		}
		return a, err
	}
	if err != nil {
		return Answer{}, err
	}
	return c.answer(&res), nil
}

//go:noinline
func (c *Chat) answer(res *Result) Answer {
	return NewAnswer(c.run.ID, c.conv.ID, c.agent.Name, *res)
}

// execute runs the loop, commits a successful turn to the conversation and
// records the outcome, for chat and queued runs alike. Its parts are in
// functions that are not inlined, so that its frame is small while the
// loop waits for the model (see Loop.Execute).
func (c *Chat) execute(ctx context.Context, onEvent func(store.Event)) (Result, error) {
	if c.turn != nil {
		return c.turn.execute(ctx, c, onEvent)
	}
	defer c.s.turns.ended(c.conv.ID)
	if c.held {
		defer c.s.release(c.conv.ID)
	}
	if !c.queued {
		// An inline chat stops at once when its cancellation or interrupt
		// is requested in this process (Runs.Cancel, Runs.Interrupt; the
		// policies interrupt and rollback); one with a lease also learns
		// of a request made elsewhere when it renews the lease.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		c.s.trackInline(c.run.ID, cancel)
		defer c.s.untrackInline(c.run.ID)
		if c.lease != nil {
			defer c.lease.renew(ctx, c.run, cancel)()
		}
	}
	ctx, p := c.params(ctx, onEvent)
	res, err := c.s.Loop.Execute(ctx, p)
	return c.ended(ctx, res, err)
}

// params are the loop's parameters for this turn, and the context with
// the run's log attributes.
//
//go:noinline
func (c *Chat) params(ctx context.Context, onEvent func(store.Event)) (context.Context, *Params) {
	ctx = observe.WithAttrs(ctx, slog.String("run_id", c.run.ID), slog.String("conversation_id", c.conv.ID), slog.String("agent", c.agent.Name))
	history := make([]llm.Message, len(c.conv.Messages))
	for i, m := range c.conv.Messages {
		history[i] = llm.Message{Role: m.Role, Content: m.Content}
	}
	p := &Params{
		Tenant: c.tenant, RunID: c.run.ID, ConversationID: c.conv.ID, Agent: &c.agent.Agent,
		History: history, Input: c.input, OnEvent: onEvent, MaxCostUSD: c.maxCostUSD,
		// Queued runs checkpoint their final answer too (a worker claims
		// them with a lease; ReclaimExpiredRuns and a drain hand them to
		// another worker). An inline chat is taken over only if its
		// process dies (with a lease) or never (without): it saves that
		// write, and a takeover repeats at most its last model call.
		Resumable: c.queued,
		// Before done is announced: the turn is in the conversation and
		// the run row says succeeded, so a client that saw done reads
		// both.
		Commit: func(ctx context.Context, res Result, cp *store.Checkpoint, events []store.Event) error {
			err := c.commit(ctx, res, cp, events)
			c.committed = err == nil
			return err
		},
		Decisions: c.decisions,
		Pause:     c.pause,
		Attempt:   c.run.Attempt,
		Fresh:     c.fresh,
	}
	if c.s.Hub != nil {
		hub := c.s.Hub
		p.OnStored = func(evs []store.Event) { hub.Publish(ctx, evs) }
	}
	return ctx, p
}

// ended records the outcome of a loop that is not committed: a failed run
// is marked so; a suspended one, or one that could not restore, is left to
// go on elsewhere or to be retried. Not inlined, to keep execute's frame
// small (see Loop.Execute).
//
//go:noinline
func (c *Chat) ended(ctx context.Context, res Result, err error) (Result, error) {
	s := c.s
	switch {
	case c.committed:
		// Succeeded; an error now (storing the done event) is logged by
		// the loop and does not change the outcome.
		if err != nil {
			s.Log.WarnContext(ctx, "run committed, but storing its last events failed", "err", err)
		}
		return res, nil
	case errors.Is(err, ErrSuspended), errors.Is(err, ErrRequiresAction):
		// Goes on elsewhere; or paused, stored by pause.
	case errors.Is(err, ErrInterrupted):
		if kerr := s.keepCheckpointed(ctx, c.run, false); kerr != nil {
			s.Log.ErrorContext(ctx, "keep what an interrupted run checkpointed", "err", kerr)
			c.fail(ctx, res, err)
		}
	case errors.Is(err, ErrRestore) && c.queued:
		// Nothing ran: the queue retries the job (the lease is released
		// by the caller), rather than failing the run for a store blip.
	default:
		c.fail(ctx, res, err)
	}
	return res, err
}

// commit appends the run's messages to the conversation, trimming it, and
// in the same transaction marks the run succeeded and stores its last
// events (done) and checkpoint: a run resumed after a crash finds itself
// finished and never appends its turn twice, and whoever sees done finds
// the turn.
func (c *Chat) commit(ctx context.Context, res Result, cp *store.Checkpoint, events []store.Event) error {
	s := c.s
	msgs := make([]store.Message, len(res.Messages))
	for i, m := range res.Messages {
		msgs[i] = store.Message{Role: m.Role, Content: m.Content}
	}
	// The assistant's output tokens are known per run, not per message:
	// charge them to the final message.
	if n := len(msgs); n > 0 {
		msgs[n-1].Tokens = res.Usage.OutputTokens
	}
	final := c.outcome(res, nil)
	p := store.AppendMessagesParams{
		ConversationID: c.conv.ID, Tenant: c.tenant, ExpectedVersion: c.conv.Version,
		// A new conversation is created with its first turn.
		Create: c.isNew, Agent: c.agent.Name,
		Messages: msgs, TrimBeforeSeq: trimBefore(c.conv.Messages, res.Messages, c.agent.MaxMessages),
		FinishRun: &final, Checkpoint: cp, Events: events,
	}
	if s.ConversationTTL > 0 {
		p.ExpiresAt = time.Now().UTC().Add(s.ConversationTTL)
	}
	_, err := s.Store.AppendMessages(ctx, p)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %s changed while the run executed", ErrConversationBusy, c.conv.ID)
	}
	if err != nil {
		return fmt.Errorf("append messages: %w", err)
	}
	s.Metrics.ObserveRun(c.agent.Name, string(final.Status), res.Steps, time.Since(c.started))
	return nil
}

// pause stores the run as it stops to wait for approvals (see PauseFunc)
// and audits each request. A run whose cancellation was requested meanwhile
// is not paused: it ends canceled.
func (c *Chat) pause(ctx context.Context, res Result, cp *store.Checkpoint, events []store.Event, approvals []store.Approval) error {
	s := c.s
	err := s.Store.PauseRun(ctx, store.PauseRunParams{
		Run: store.UpdateRunParams{
			ID: c.run.ID, Status: store.RunRequiresAction, Attempt: c.run.Attempt, Steps: res.Steps,
			InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens, CostUSD: res.CostUSD,
			StartedAt: c.run.StartedAt,
		},
		Checkpoint: cp, Events: events, Approvals: approvals,
	})
	if errors.Is(err, store.ErrConflict) {
		// Its cancellation or interrupt was requested meanwhile.
		if rn, gerr := s.Store.GetRun(context.WithoutCancel(ctx), c.tenant, c.run.ID); gerr == nil && rn.InterruptRequested {
			return fmt.Errorf("%w: while it paused for approval", ErrInterrupted)
		}
		return fmt.Errorf("%w: while it paused for approval", ErrCanceled)
	}
	if err != nil {
		return fmt.Errorf("pause run: %w", err)
	}
	for _, a := range approvals {
		if a.Kind == store.ApprovalKindApproval {
			s.auditApproval(ctx, c.agent.Name, a, "requested", "", "", 0)
		}
	}
	s.Metrics.ObserveRun(c.agent.Name, string(store.RunRequiresAction), res.Steps, time.Since(c.started))
	return nil
}

// auditApproval writes an approval row to the audit log (store.AuditApproval);
// a failure is logged, the request or decision stands.
func (s *Service) auditApproval(ctx context.Context, agent string, a store.Approval, outcome, reason, actor string, waited time.Duration) {
	if s.Audit == nil {
		return
	}
	input := a.Input
	if s.Redact != nil {
		input = s.Redact(input)
	}
	e := store.AuditEntry{
		Tenant: a.Tenant, Agent: agent, RunID: a.RunID, Step: a.Step, ToolUseID: a.ToolUseID, Tool: a.Name,
		Phase: store.AuditApproval, Input: input, Outcome: outcome, Error: reason, Actor: actor, Duration: waited,
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.Audit.AppendAudit(wctx, e); err != nil {
		s.Log.ErrorContext(ctx, "audit: cannot record an approval", "run_id", a.RunID, "tool_use_id", a.ToolUseID, "outcome", outcome, "err", err)
	}
}

// AuditAppender writes audit rows (store.Audit).
type AuditAppender interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) error
}

// outcome is the final row of the run for res and runErr.
func (c *Chat) outcome(res Result, runErr error) store.UpdateRunParams {
	p := store.UpdateRunParams{
		ID: c.run.ID, Status: store.RunSucceeded, Attempt: c.run.Attempt,
		Steps: res.Steps, InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens,
		CostUSD:   res.CostUSD,
		StartedAt: c.run.StartedAt, FinishedAt: time.Now().UTC(),
	}
	if runErr == nil {
		p.Output, _ = json.Marshal(res.Output)
		return p
	}
	p.Status = store.RunFailed
	if errors.Is(runErr, context.Canceled) || errors.Is(runErr, ErrCanceled) {
		p.Status = store.RunCanceled
	}
	info := ClassifyError(runErr)
	p.Error = info.Type + ": " + info.Message
	return p
}

// fail records a run that did not succeed on its row and in metrics.
func (c *Chat) fail(ctx context.Context, res Result, runErr error) {
	s := c.s
	final := c.outcome(res, runErr)
	s.Log.WarnContext(ctx, "run failed", "err", runErr, "steps", res.Steps)
	// The row is written even if the client went away.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.Store.UpdateRun(uctx, final); err != nil {
		s.Log.ErrorContext(ctx, "update run", "err", err)
	}
	s.Metrics.ObserveRun(c.agent.Name, string(final.Status), res.Steps, time.Since(c.started))
}

// renew renews the inline chat's lease every LeaseTTL/3 until the
// returned stop is called (Runs.heartbeat: a cancellation or interrupt
// requested in another process stops the chat through cancel; so does a
// lost lease, with ErrSuspended, the run going on with the worker that
// took it). A chat that ends within LeaseTTL/3 of its insert writes no
// renewal.
func (l *chatLease) renew(ctx context.Context, run store.Run, cancel context.CancelCauseFunc) (stop func()) {
	// The lease was written at the insert (run.HeldUntil); its first
	// renewal is due LeaseTTL/3 after that, however long the chat took
	// to begin executing.
	ttl := l.runs.leaseTTL()
	return l.runs.heartbeatFrom(ctx, run.Tenant, run.ID, l.owner, cancel, time.Until(run.HeldUntil.Add(-ttl+ttl/3)))
}

func (s *Service) hold(convID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy == nil {
		s.busy = make(map[string]struct{})
	}
	if _, ok := s.busy[convID]; ok {
		return false
	}
	s.busy[convID] = struct{}{}
	return true
}

func (s *Service) release(convID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.busy, convID)
}

// trimBefore returns the seq before which stored messages are deleted so
// that at most max messages remain, or 0 to keep all. The kept part always
// starts at a user message that is not a tool result, so tool_use and
// tool_result pairs are never split; if no such cut exists within the limit
// the newest turn is kept whole, even above max.
func trimBefore(existing []store.Message, added []llm.Message, max int) int64 {
	total := len(existing) + len(added)
	if max <= 0 || total <= max {
		return 0
	}
	var base int64
	if n := len(existing); n > 0 {
		base = existing[n-1].Seq
	}
	seqAt := func(i int) int64 {
		if i < len(existing) {
			return existing[i].Seq
		}
		return base + int64(i-len(existing)+1)
	}
	msgAt := func(i int) (string, json.RawMessage) {
		if i < len(existing) {
			return existing[i].Role, existing[i].Content
		}
		m := added[i-len(existing)]
		return m.Role, m.Content
	}
	lastTurn := -1
	for i := 0; i < total; i++ {
		role, content := msgAt(i)
		if role != "user" || isToolResult(content) {
			continue
		}
		if i >= total-max {
			return seqAt(i)
		}
		lastTurn = i
	}
	if lastTurn > 0 {
		return seqAt(lastTurn)
	}
	return 0
}

func isToolResult(content json.RawMessage) bool {
	var blocks []struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(content, &blocks) != nil {
		return false
	}
	for _, b := range blocks {
		if b.Type == "tool_result" {
			return true
		}
	}
	return false
}

func newID() string {
	// UUIDv7: time-ordered, so ids sort by creation (cursor pagination).
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
