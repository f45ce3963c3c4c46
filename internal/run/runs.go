package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Defaults of queued runs.
const (
	// DefaultIdempotencyTTL is how long an Idempotency-Key maps to its run.
	DefaultIdempotencyTTL = 24 * time.Hour
	// DefaultLeaseTTL is how long a worker's claim on a run lasts without
	// renewal: a run whose worker died resumes elsewhere about this long
	// after its last renewal (plus the reaper interval).
	DefaultLeaseTTL = 10 * time.Second
)

// errBadInput: a stored run's input cannot be decoded.
var errBadInput = errors.New("invalid run input")

// RunStore is the part of the store queued runs use.
type RunStore interface {
	ChatStore
	store.RunLeases
	GetRun(ctx context.Context, tenant, id string) (store.Run, error)
	GetRunByIdempotencyKey(ctx context.Context, tenant, key string) (store.Run, error)
	ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error)
	ListApprovals(ctx context.Context, runID string) ([]store.Approval, error)
	ListExpiredApprovals(ctx context.Context, now time.Time, limit int) ([]store.Approval, error)
	ExpireIdempotencyKeys(ctx context.Context, createdBefore time.Time) (int, error)
}

// Enqueuer creates queued runs: a run's row and its queue job in one store
// transaction (queue.Queue implements it).
type Enqueuer interface {
	// CreateRun stores r and enqueues it atomically.
	CreateRun(ctx context.Context, r store.Run) error
	// ReclaimExpiredRuns enqueues again the runs whose worker died (see
	// store.TxRuns) and returns how many.
	ReclaimExpiredRuns(ctx context.Context, now time.Time) (int, error)
	// DecideApproval records a decision and enqueues the run with its
	// last one (see store.ApprovalsTx).
	DecideApproval(ctx context.Context, p store.DecideApprovalParams) (store.Approval, store.Run, error)
}

// Runs is the queued-run side of the service: submit, read, cancel on API
// instances; execute and reclaim on workers.
type Runs struct {
	Service *Service
	Store   RunStore
	Queue   Enqueuer
	// Webhooks delivers the final run to the run's webhook; nil: none.
	Webhooks WebhookSender
	// Owner identifies this worker in run leases.
	Owner          string
	LeaseTTL       time.Duration
	IdempotencyTTL time.Duration
	// AgentLimits caps, per agent, the runs this instance executes at once
	// (agents[].max_concurrent_runs); absent or 0: no cap of its own.
	AgentLimits map[string]int
	Log         *slog.Logger

	semOnce sync.Once
	sems    map[string]chan struct{}

	mu      sync.Mutex
	cancels map[string]context.CancelCauseFunc // runs executing here
	// executing holds the runs ExecuteRun has taken, from before their
	// claim until their job ends: one execution per run per process.
	executing map[string]struct{}
}

// WebhookSender queues the delivery of a run's event to url.
type WebhookSender interface {
	EnqueueWebhook(ctx context.Context, tenant, runID, url, event string) error
}

// Webhook events (X-Agentd-Event).
const (
	WebhookRunCompleted      = "run.completed"
	WebhookRunRequiresAction = "run.requires_action"
)

// SubmitParams are the inputs of Submit.
type SubmitParams struct {
	Tenant         string
	Agent          string
	ConversationID string
	Message        string
	IdempotencyKey string
	Webhook        string
	// MaxCostUSD caps the run's cost (0: only the agent's max_cost_usd);
	// it can lower the agent's cap, never raise it.
	MaxCostUSD float64
	// AgentVersion pins the version of an agent of the Service's Resolver
	// (0: its latest when the run executes).
	AgentVersion int
	// ConcurrencyPolicy, when set, overrides the agent's for this message
	// (see Policy).
	ConcurrencyPolicy Policy
	// System is text appended, in order, to the agent's system prompt for
	// this run: what earlier turns' SystemMessage carried (a Managed Agents
	// session's system.message applies to its turn and every later one).
	System []string
	// SystemMessage is system text sent with this run's message, appended
	// after System (and to be carried over to later turns by the caller).
	SystemMessage string
}

// checkSystem applies the message guard to a run's system texts as to its
// message.
func (s *Service) checkSystem(system []string, msg string) ([]string, string, error) {
	out := make([]string, 0, len(system))
	for _, t := range system {
		c, err := s.Secrets.Check(t)
		if err != nil {
			return nil, "", err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		out = nil
	}
	msg, err := s.Secrets.Check(msg)
	return out, msg, err
}

// withSystem is a with the run's system texts appended to its system
// prompt (a itself when there are none): a copy, a may be shared.
func withSystem(a *ChatAgent, texts ...string) *ChatAgent {
	parts := make([]string, 0, len(texts)+1)
	if a.System != "" {
		parts = append(parts, a.System)
	}
	n := len(parts)
	for _, t := range texts {
		if t != "" {
			parts = append(parts, t)
		}
	}
	if len(parts) == n {
		return a
	}
	c := *a
	c.System = strings.Join(parts, "\n\n")
	return &c
}

// SessionSystem is the system text a run's turn runs with, after its
// agent's system prompt: the texts of its input (System, SystemMessage)
// then those sent with its client tools' results (approvals: the run's),
// in the order they were decided. Each later turn of a Managed Agents
// session carries the whole of it in its input's System.
func SessionSystem(system []string, msg string, approvals []store.Approval) []string {
	out := make([]string, 0, len(system)+1)
	out = append(out, system...)
	if msg != "" {
		out = append(out, msg)
	}
	var decided []store.Approval
	for _, a := range approvals {
		if a.SystemMessage != "" && a.Decision == store.DecisionResult {
			decided = append(decided, a)
		}
	}
	slices.SortStableFunc(decided, func(x, y store.Approval) int { return x.DecidedAt.Compare(y.DecidedAt) })
	for _, a := range decided {
		out = append(out, a.SystemMessage)
	}
	return out
}

// Submit stores a run and enqueues it in one transaction. created is false
// when the idempotency key named an existing run, which is returned.
func (r *Runs) Submit(ctx context.Context, p SubmitParams) (run store.Run, created bool, err error) {
	if p.Message, err = r.Service.Secrets.Check(p.Message); err != nil {
		return store.Run{}, false, err
	}
	if p.System, p.SystemMessage, err = r.Service.checkSystem(p.System, p.SystemMessage); err != nil {
		return store.Run{}, false, err
	}
	if p.IdempotencyKey != "" {
		if existing, ok, err := r.byKey(ctx, p.Tenant, p.IdempotencyKey); err != nil || ok {
			if err == nil {
				err = sameRequest(existing, requestOf(p))
			}
			return existing, false, err
		}
	}
	agent, conv, isNew, err := r.Service.resolve(ctx, p.Tenant, p.Agent, p.AgentVersion, p.ConversationID)
	if errors.Is(err, ErrConversationNotFound) && p.ConcurrencyPolicy != PolicyReject {
		// Perhaps a conversation whose first turn is still queued.
		agent, conv, isNew, err = r.resolveTurn(ctx, p.Tenant, p.Agent, p.AgentVersion, p.ConversationID)
		if err == nil && policy(agent, p.ConcurrencyPolicy) == PolicyReject {
			return store.Run{}, false, fmt.Errorf("%w: %q", ErrConversationNotFound, p.ConversationID)
		}
	}
	if err != nil {
		return store.Run{}, false, err
	}
	digest, err := r.Service.pinAgent(ctx, agent)
	if err != nil {
		return store.Run{}, false, fmt.Errorf("submit run: %w", err)
	}
	input, _ := json.Marshal(runInput{Message: p.Message, NewConversation: isNew, Webhook: p.Webhook, MaxCostUSD: p.MaxCostUSD,
		AgentVersion: p.AgentVersion, System: p.System, SystemMessage: p.SystemMessage})
	run = store.Run{
		ID: "run_" + newID(), Tenant: p.Tenant, Agent: agent.Name, ConversationID: conv.ID,
		Status: store.RunQueued, Input: input, IdempotencyKey: p.IdempotencyKey,
		CreatedAt:   time.Now().UTC().Truncate(time.Microsecond), // as stored
		AgentDigest: digest,
	}
	pol := policy(agent, p.ConcurrencyPolicy)
	if pol != PolicyReject {
		run.Turn = store.NextTurn
	}
	err = r.Queue.CreateRun(ctx, run)
	if errors.Is(err, store.ErrConflict) && p.IdempotencyKey != "" {
		// Lost a race with a request carrying the same key.
		if existing, ok, kerr := r.byKey(ctx, p.Tenant, p.IdempotencyKey); kerr == nil && ok {
			return existing, false, sameRequest(existing, requestOf(p))
		}
	}
	if err != nil {
		return store.Run{}, false, fmt.Errorf("submit run: %w", err)
	}
	if run.Turn == store.NextTurn {
		// Its turn, as the store handed it out.
		if run, err = r.Store.GetRun(ctx, p.Tenant, run.ID); err != nil {
			return store.Run{}, false, fmt.Errorf("submit run: read it back: %w", err)
		}
		if err := r.stopEarlier(ctx, run, pol); err != nil {
			return run, true, err
		}
	}
	return run, true, nil
}

func (r *Runs) byKey(ctx context.Context, tenant, key string) (store.Run, bool, error) {
	return lookupKey(ctx, r.Store, tenant, key, r.idempotencyTTL())
}

func (r *Runs) idempotencyTTL() time.Duration {
	if r.IdempotencyTTL > 0 {
		return r.IdempotencyTTL
	}
	return DefaultIdempotencyTTL
}

func (r *Runs) leaseTTL() time.Duration {
	if r.LeaseTTL > 0 {
		return r.LeaseTTL
	}
	return DefaultLeaseTTL
}

// Cancel requests cancellation: a queued run is canceled at once; a
// running one stops at once when it runs in this process, else at its
// worker's next lease renewal (LeaseTTL/3 at most).
func (r *Runs) Cancel(ctx context.Context, tenant, id string) (store.Run, error) {
	run, err := r.Store.RequestCancel(ctx, tenant, id, time.Now().UTC())
	if err != nil {
		return run, err
	}
	r.mu.Lock()
	cancel := r.cancels[id]
	r.mu.Unlock()
	if cancel != nil {
		cancel(ErrCanceled)
	} else if run.Status == store.RunRunning {
		r.Service.stopInline(id, ErrCanceled)
	}
	if run.Status.Terminal() {
		r.Service.turns.ended(run.ConversationID)
	}
	return run, nil
}

// ExecuteRun executes a queued run on this worker (queue.RunExecutor).
func (r *Runs) ExecuteRun(ctx context.Context, tenant, runID string) (requeue bool, err error) {
	// A run executes at most once per process at a time. Two jobs of
	// one run can reach the same worker (a drain's requeue and a reclaim
	// or the orphan check: agentd chaos r2b), and ClaimRun accepts the
	// second, since this worker holds the lease: run at once, the second
	// execution would repeat the first's step and fail on its events. So
	// the job waits until the first execution has returned, then claims
	// the run like any job: a run that execution finished, or that
	// another worker holds, is not claimable and the job is done. It is
	// not dropped at once: the job can also be the run's resumption,
	// queued when the run paused and was decided (a client tool's result
	// sent the moment the call was announced) before the execution that
	// paused it returned; dropped, it would leave the run queued with no
	// job.
	if !r.reserve(runID) {
		r.Log.InfoContext(ctx, "run still executing on this worker: job snoozed", "run_id", runID)
		return false, &executingError{runID: runID}
	}
	defer r.release(runID)
	if sem := r.semaphore(ctx, tenant, runID); sem != nil {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-ctx.Done():
			return true, nil // stopping before it started: any worker may take it
		}
	}
	now := time.Now().UTC()
	run, err := r.Store.ClaimRun(ctx, store.ClaimRunParams{ID: runID, Owner: r.Owner, LeaseUntil: now.Add(r.leaseTTL()), Now: now})
	switch {
	case errors.Is(err, store.ErrRunWaiting):
		// An earlier message of its conversation is unfinished, or the
		// chat that submitted it holds it: look again later.
		return false, &waitingError{run: run, after: r.turnPoll(ctx, run)}
	case errors.Is(err, store.ErrConflict):
		// Finished, canceled, or alive on another worker: nothing to do.
		r.Log.DebugContext(ctx, "run not claimable", "run_id", runID, "status", run.Status)
		return false, nil
	case errors.Is(err, store.ErrNotFound):
		r.Log.WarnContext(ctx, "queued run does not exist", "run_id", runID)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("claim run %s: %w", runID, err)
	}
	_, _, err = r.runClaimed(ctx, run, r.Owner, nil)
	return r.afterRun(ctx, run, r.Owner, err)
}

// runClaimed executes a run owner has claimed (ClaimRun): it renews the
// lease while the run executes and stops the run when its cancellation or
// interrupt is requested, the lease is lost (ErrSuspended) or ctx ends
// (ErrSuspended: it resumes elsewhere from its checkpoint). onEvent (may be
// nil) sees every event live.
func (r *Runs) runClaimed(ctx context.Context, run store.Run, owner string, onEvent func(store.Event)) (*Chat, Result, error) {
	tenant, runID := run.Tenant, run.ID
	// The run's context ends when: this worker stops (River cancels ctx)
	// → ErrSuspended; the lease is lost → ErrSuspended; cancellation is
	// requested → ErrCanceled.
	rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { cancel(ErrSuspended) })
	defer stop()
	r.track(runID, cancel)
	defer r.untrack(runID)
	if run.Attempt > 1 {
		// A resumed run may have had its cancellation requested while its
		// previous worker was dead: learn it before anything executes (a
		// model call answered at once could otherwise commit the turn
		// first). A store error here is the heartbeat's to handle.
		if canceled, err := r.Store.ExtendLease(rctx, runID, owner, time.Now().UTC().Add(r.leaseTTL())); err == nil && canceled {
			cancel(stopCause(rctx, r.Store, tenant, runID))
		}
	}
	defer r.heartbeat(rctx, tenant, runID, owner, cancel)()
	defer cancel(nil) // ends the run's context before the heartbeat's stop waits

	// Loading must not race the heartbeat: a cancel request seen by the
	// heartbeat ends the run through the loop (with its error event).
	c, err := r.chatFor(context.WithoutCancel(rctx), run)
	if err != nil {
		return nil, Result{}, &loadError{err: err}
	}
	res, err := c.execute(rctx, onEvent)
	return c, res, err
}

// loadError: a claimed run could not be loaded (runClaimed).
type loadError struct{ err error }

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// afterRun handles how a claimed run's execution ended (runClaimed's
// error), for the queue: a run that can never execute is failed; a
// transient error, or a run that could not restore, is retried; a
// suspended one is released for any worker; a paused one waits for its
// decision.
func (r *Runs) afterRun(ctx context.Context, run store.Run, owner string, err error) (requeue bool, _ error) {
	runID := run.ID
	if le := (*loadError)(nil); errors.As(err, &le) {
		switch err := le.err; {
		case errors.Is(err, ErrAgentNotFound), errors.Is(err, ErrConversationNotFound), errors.Is(err, errBadInput),
			errors.Is(err, errDefinition), errors.Is(err, ErrToolsUnavailable):
			// The run cannot ever execute: fail it instead of retrying.
			r.fail(ctx, run, err)
			return false, nil
		default:
			// A transient store error: River retries the job; the lease
			// lapses and any worker may claim the run again.
			return false, fmt.Errorf("load run %s: %w", runID, err)
		}
	}
	if errors.Is(err, ErrRequiresAction) {
		// Paused, lease dropped: the decision queues it again.
		r.sendWebhook(ctx, run, WebhookRunRequiresAction)
		return false, nil
	}
	if errors.Is(err, ErrRestore) {
		rel, relCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer relCancel()
		if rerr := r.Store.ReleaseLease(rel, runID, owner); rerr != nil {
			r.Log.WarnContext(ctx, "release lease", "run_id", runID, "err", rerr)
		}
		return false, fmt.Errorf("run %s: %w", runID, err) // River retries with back-off
	}
	if errors.Is(err, ErrSuspended) {
		rel, relCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer relCancel()
		if rerr := r.Store.ReleaseLease(rel, runID, owner); rerr != nil {
			r.Log.WarnContext(ctx, "release lease", "run_id", runID, "err", rerr)
		}
		r.Log.InfoContext(ctx, "run suspended; it resumes from its checkpoint", "run_id", runID)
		return true, nil
	}
	r.sendWebhook(ctx, run, WebhookRunCompleted)
	return false, nil
}

// semaphore returns the per-agent slot channel of the run's agent, or nil.
// The agent comes from the job's run row so that a wrong job cannot pick
// another agent's slots.
func (r *Runs) semaphore(ctx context.Context, tenant, runID string) chan struct{} {
	r.semOnce.Do(func() {
		r.sems = make(map[string]chan struct{}, len(r.AgentLimits))
		for agent, n := range r.AgentLimits {
			if n > 0 {
				r.sems[agent] = make(chan struct{}, n)
			}
		}
	})
	if len(r.sems) == 0 {
		return nil
	}
	run, err := r.Store.GetRun(ctx, tenant, runID)
	if err != nil {
		return nil
	}
	return r.sems[run.Agent]
}

// chatFor rebuilds the turn of a queued run.
func (r *Runs) chatFor(ctx context.Context, run store.Run) (*Chat, error) {
	s := r.Service
	var in runInput
	if err := json.Unmarshal(run.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: decode input of run %s: %v", errBadInput, run.ID, err)
	}
	// The definition the run was submitted under, whatever this worker's
	// configuration says now (definition.go).
	agent, err := s.agentOf(ctx, run, in.AgentVersion)
	if err != nil {
		return nil, err
	}
	if agent, err = prepared(ctx, agent); err != nil {
		return nil, err
	}
	// Checked again: the run may have been queued before the guard was on
	// or the secret configured.
	msg, err := s.Secrets.Check(in.Message)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadInput, err)
	}
	in.Message = msg
	if in.System, in.SystemMessage, err = s.checkSystem(in.System, in.SystemMessage); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadInput, err)
	}
	// Claimed for the first time (an attempt only grows, and an inline
	// chat's run starts at 1, so a takeover is at 2 at least): nothing
	// of the run was stored but its row, no decision, checkpoint or event.
	fresh := run.Attempt == 1
	var approvals []store.Approval
	if !fresh {
		if approvals, err = r.Store.ListApprovals(ctx, run.ID); err != nil {
			return nil, fmt.Errorf("load approvals of run %s: %w", run.ID, err)
		}
	}
	for i, a := range approvals { // checked again, as the message is
		if approvals[i].SystemMessage, err = s.Secrets.Check(a.SystemMessage); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadInput, err)
		}
	}
	// A session's system messages: part of the run's input and of its
	// decisions, so a run resumed on another worker has them too.
	agent = withSystem(agent, SessionSystem(in.System, in.SystemMessage, approvals)...)
	c := &Chat{s: s, agent: agent, tenant: run.Tenant, run: run, input: userMessage(in.Message), message: in.Message,
		started: time.Now(), queued: true, maxCostUSD: in.MaxCostUSD, fresh: fresh}
	for _, a := range approvals {
		if a.Decision != store.DecisionPending {
			if c.decisions == nil {
				c.decisions = make(map[string]store.Approval, len(approvals))
			}
			c.decisions[a.ToolUseID] = a
		}
	}
	if fresh && in.NewConversation && run.Turn == 0 {
		// Its conversation's id was made for it at submission, and only
		// its commit creates it (a message that takes a turn may share a
		// new conversation: Turn > 0): there is nothing to read.
		c.isNew = true
		c.conv = store.Conversation{ID: run.ConversationID, Tenant: run.Tenant, Agent: run.Agent}
		return c, nil
	}
	conv, err := s.Store.GetConversation(ctx, run.Tenant, run.ConversationID)
	switch {
	case errors.Is(err, store.ErrNotFound) && in.NewConversation:
		c.isNew = true
		c.conv = store.Conversation{ID: run.ConversationID, Tenant: run.Tenant, Agent: run.Agent}
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: %q", ErrConversationNotFound, run.ConversationID)
	case err != nil:
		return nil, fmt.Errorf("load conversation %s: %w", run.ConversationID, err)
	default:
		c.conv = conv
	}
	return c, nil
}

// heartbeat renews the lease every LeaseTTL/3 until stop is called; it
// cancels the run when cancellation is requested or the lease is lost.
func (r *Runs) heartbeat(ctx context.Context, tenant, runID, owner string, cancel context.CancelCauseFunc) (stop func()) {
	return r.heartbeatFrom(ctx, tenant, runID, owner, cancel, r.leaseTTL()/3)
}

// heartbeatFrom is heartbeat with its first renewal after first (at once
// when first <= 0), then every LeaseTTL/3: a lease written before its
// holder began to execute (an inline chat's, in its insert) is renewed on
// the lease's own schedule, not one that starts late on a busy machine.
//
// No goroutine waits between renewals: a timer runs each renewal on a
// goroutine of its own and is set again after it. A held chat or run is
// mostly waiting for the model, and a goroutine per lease blocked on a
// timer cost a stack per chat (docs/benchmarks.md, memory per held chat).
// stop ends the renewals (and ctx's part in them) and waits for one under
// way; renewals also end when ctx does.
func (r *Runs) heartbeatFrom(ctx context.Context, tenant, runID, owner string, cancel context.CancelCauseFunc, first time.Duration) (stop func()) {
	ttl := r.leaseTTL()
	ctx, end := context.WithCancel(ctx)
	var (
		mu       sync.Mutex
		stopped  bool
		renewing sync.WaitGroup
		t        *time.Timer
	)
	tick := func() {
		mu.Lock()
		if stopped || ctx.Err() != nil {
			mu.Unlock()
			return
		}
		renewing.Add(1)
		mu.Unlock()
		defer renewing.Done()
		began := time.Now()
		if !r.renewLease(ctx, tenant, runID, owner, ttl, cancel) {
			return
		}
		mu.Lock()
		if !stopped {
			// Due ttl/3 after this one began (at once if it took
			// longer), as the renewals always were.
			t.Reset(max(ttl/3-time.Since(began), 0))
		}
		mu.Unlock()
	}
	mu.Lock()
	t = time.AfterFunc(max(first, 0), tick)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
		end()
		renewing.Wait()
	}
}

// renewLease extends the lease once, for ttl; false when the renewals
// are over: the run finished, was taken over (cancel(ErrSuspended)) or its
// cancellation or interrupt was requested (cancel with its cause).
func (r *Runs) renewLease(ctx context.Context, tenant, runID, owner string, ttl time.Duration, cancel context.CancelCauseFunc) bool {
	canceled, err := r.Store.ExtendLease(ctx, runID, owner, time.Now().UTC().Add(ttl))
	switch {
	case ctx.Err() != nil:
		return false
	case errors.Is(err, store.ErrConflict):
		// Either the run just finished here (its row is final and
		// the loop is storing its last events: leave it be), or
		// another worker took it over.
		if rn, gerr := r.Store.GetRun(context.WithoutCancel(ctx), tenant, runID); gerr == nil && rn.Status.Terminal() {
			return false
		}
		r.Log.WarnContext(ctx, "lost the lease of a run; stopping it here", "run_id", runID)
		cancel(ErrSuspended)
		return false
	case err != nil:
		// The store is unreachable: keep working; the lease lasts
		// for ttl, and a later renewal may succeed.
		r.Log.WarnContext(ctx, "renew lease", "run_id", runID, "err", err)
	case canceled:
		cancel(stopCause(ctx, r.Store, tenant, runID))
		return false
	}
	return true
}

func (r *Runs) fail(ctx context.Context, run store.Run, cause error) {
	r.Log.ErrorContext(ctx, "run cannot execute", "run_id", run.ID, "err", cause)
	now := time.Now().UTC()
	// Written even while the worker stops (ctx is River's).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	kind := "invalid_run"
	if errors.Is(cause, ErrToolsUnavailable) {
		kind = "tools_unavailable"
	}
	if err := r.Store.UpdateRun(ctx, store.UpdateRunParams{
		ID: run.ID, Status: store.RunFailed, Error: kind + ": " + cause.Error(), Attempt: run.Attempt,
		StartedAt: run.StartedAt, FinishedAt: now,
	}); err != nil {
		r.Log.ErrorContext(ctx, "update run", "run_id", run.ID, "err", err)
	}
	r.sendWebhook(ctx, run, WebhookRunCompleted)
}

// sendWebhook queues event's delivery to the webhook run was submitted
// with, if any (its input, which never changes: no read of the run).
func (r *Runs) sendWebhook(ctx context.Context, run store.Run, event string) {
	if r.Webhooks == nil {
		return
	}
	var in runInput
	if json.Unmarshal(run.Input, &in) != nil || in.Webhook == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.Webhooks.EnqueueWebhook(ctx, run.Tenant, run.ID, in.Webhook, event); err != nil {
		r.Log.WarnContext(ctx, "queue webhook", "run_id", run.ID, "err", err)
	}
}

// Executing counts the runs this instance executes now.
func (r *Runs) Executing() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cancels)
}

func (r *Runs) track(id string, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancels == nil {
		r.cancels = make(map[string]context.CancelCauseFunc)
	}
	r.cancels[id] = cancel
}

// reserve marks run id as executing here (ExecuteRun); false when it
// already is.
// executingError snoozes a job whose run is still executing on this
// worker (ExecuteRun): it looks again shortly, without using an attempt.
type executingError struct{ runID string }

func (e *executingError) Error() string {
	return fmt.Sprintf("run %s is still executing on this worker", e.runID)
}

// SnoozeFor implements queue.Snoozer.
func (e *executingError) SnoozeFor() time.Duration { return 100 * time.Millisecond }

func (r *Runs) reserve(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.executing[id]; ok {
		return false
	}
	if r.executing == nil {
		r.executing = make(map[string]struct{})
	}
	r.executing[id] = struct{}{}
	return true
}

func (r *Runs) release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.executing, id)
}

func (r *Runs) untrack(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cancels, id)
}

// Reclaim enqueues again the runs whose worker stopped renewing their
// lease (it died), and times out approvals nobody decided in time, every
// interval until ctx ends. Every worker runs it;
// the store hands each expired run to exactly one of them.
func (r *Runs) Reclaim(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = r.leaseTTL() / 5
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastExpiry time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := r.Queue.ReclaimExpiredRuns(ctx, time.Now().UTC())
		if err != nil {
			if ctx.Err() == nil {
				r.Log.WarnContext(ctx, "reclaim runs of dead workers", "err", err)
			}
			continue
		}
		if n > 0 {
			r.Log.InfoContext(ctx, "reclaimed runs whose worker stopped renewing its lease", "runs", n)
		}
		if _, err := r.ExpireApprovals(ctx, time.Now().UTC()); err != nil && ctx.Err() == nil {
			r.Log.WarnContext(ctx, "time out approvals", "err", err)
		}
		// Keys expire by the day; once a minute is plenty (and Submit
		// frees an expired key it meets on its own).
		if time.Since(lastExpiry) >= time.Minute {
			lastExpiry = time.Now()
			if _, err := r.Store.ExpireIdempotencyKeys(ctx, time.Now().Add(-r.idempotencyTTL())); err != nil && ctx.Err() == nil {
				r.Log.WarnContext(ctx, "expire idempotency keys", "err", err)
			}
		}
	}
}
