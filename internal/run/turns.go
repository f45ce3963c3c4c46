package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/store"
)

// Policy is what happens to a message sent to a conversation that is busy
// with another run (agents[].concurrency_policy, or the request's
// concurrency_policy).
//
// Under enqueue, interrupt and rollback every message of the conversation
// takes a turn: the store numbers the runs of a conversation 1, 2, 3, ...
// in the order it accepted them (store.Run.Turn; on PostgreSQL the order
// in which the accepting transactions committed), and a run is claimed
// only when every earlier turn has finished (store.RunLeases.ClaimRun).
// The order lives in the store, so it holds across processes and
// restarts: a queued message is a run row with its queue job.
type Policy string

// Concurrency policies.
const (
	// PolicyReject refuses a message to a busy conversation (409).
	PolicyReject Policy = "reject"
	// PolicyEnqueue runs the message after the conversation's earlier
	// ones, in arrival order.
	PolicyEnqueue Policy = "enqueue"
	// PolicyInterrupt stops the conversation's active run keeping what it
	// checkpointed (Runs.Interrupt); the message runs next, on the history
	// so far.
	PolicyInterrupt Policy = "interrupt"
	// PolicyRollback cancels the conversation's active run, discarding its
	// unfinished turn (Runs.Cancel); the message runs next, as if the
	// canceled one had not been sent.
	PolicyRollback Policy = "rollback"
)

// Policies are the valid policies.
var Policies = []Policy{PolicyReject, PolicyEnqueue, PolicyInterrupt, PolicyRollback}

// ParsePolicy checks a policy name; "" is the zero Policy (the agent's).
func ParsePolicy(s string) (Policy, error) {
	if s == "" {
		return "", nil
	}
	for _, p := range Policies {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("concurrency_policy: must be one of reject, enqueue, interrupt, rollback (got %q)", s)
}

// policy is the policy of a message: the request's, else the agent's,
// else reject.
func policy(agent *ChatAgent, requested Policy) Policy {
	if requested != "" {
		return requested
	}
	if agent != nil && agent.ConcurrencyPolicy != "" {
		return agent.ConcurrencyPolicy
	}
	return PolicyReject
}

// ErrTurnTimeout: a synchronous chat waited for its conversation's
// earlier messages up to its timeout. Its message is not lost: it stays
// queued as a run (TurnTimeoutError.RunID) that executes in its turn.
var ErrTurnTimeout = errors.New("timed out waiting for the conversation's earlier messages")

// TurnTimeoutError is ErrTurnTimeout with its run.
type TurnTimeoutError struct {
	RunID          string
	ConversationID string
	Waited         time.Duration
}

func (e *TurnTimeoutError) Error() string {
	return fmt.Sprintf("waited %s for the earlier messages of conversation %s; this message is queued as run %s and runs after them (follow GET /v1/runs/%s)",
		e.Waited.Round(time.Millisecond), e.ConversationID, e.RunID, e.RunID)
}

// Is makes errors.Is(err, ErrTurnTimeout) true.
func (e *TurnTimeoutError) Is(target error) bool { return target == ErrTurnTimeout }

// waitingError: a queued run is not claimable yet (store.ErrRunWaiting);
// the queue tries again after SnoozeFor (queue.Snoozer).
type waitingError struct {
	run   store.Run
	after time.Duration
}

func (e *waitingError) Error() string {
	return fmt.Sprintf("run %s waits for its turn in conversation %s", e.run.ID, e.run.ConversationID)
}

// SnoozeFor implements queue.Snoozer.
func (e *waitingError) SnoozeFor() time.Duration { return e.after }

// turnPoll is how long a worker leaves a run that is not claimable yet
// before it looks again: a run its chat holds (nothing ahead of it), about
// when the chat's hold would lapse; one waiting for k earlier turns,
// 200 ms × min(k, 5) plus up to as much again (the next in line looks
// soon; a deep queue costs fewer queue writes).
func (r *Runs) turnPoll(ctx context.Context, run store.Run) time.Duration {
	runs, err := r.Store.UnfinishedRuns(ctx, run.Tenant, run.ConversationID)
	if err != nil {
		return time.Second
	}
	ahead := 0
	for _, b := range runs {
		if b.ID != run.ID && (b.Turn == 0 || b.Turn < run.Turn) {
			ahead++
		}
	}
	if ahead == 0 {
		return r.leaseTTL() / 2
	}
	d := 200 * time.Millisecond * time.Duration(min(ahead, 5))
	return d + rand.N(d)
}

// turnWaiters wakes the chats of this process that wait for their turn
// when a run of their conversation ends here. Runs that end in other
// processes are seen by polling (turnPollChat).
type turnWaiters struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]int64 // conversation → waiter → turn
}

// turnPollChat is how often a waiting chat looks at the store when no
// wakeup came (a run that ends in another process).
const turnPollChat = 500 * time.Millisecond

func (w *turnWaiters) add(conv string, turn int64) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]map[chan struct{}]int64)
	}
	if w.m[conv] == nil {
		w.m[conv] = make(map[chan struct{}]int64)
	}
	ch := make(chan struct{}, 1)
	w.m[conv][ch] = turn
	return ch
}

func (w *turnWaiters) remove(conv string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m[conv], ch)
	if len(w.m[conv]) == 0 {
		delete(w.m, conv)
	}
}

// ended wakes the waiter with the lowest turn of conv: the next one. (Only
// it can go on; the others would look at the store in vain.)
func (w *turnWaiters) ended(conv string) {
	if w == nil || conv == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var next chan struct{}
	var low int64
	for ch, turn := range w.m[conv] {
		if next == nil || turn < low {
			next, low = ch, turn
		}
	}
	if next != nil {
		select {
		case next <- struct{}{}:
		default:
		}
	}
}

// heldChat is the part of a Chat that takes a turn (policies other than
// reject): its run is queued, with a queue job, and held by owner until
// the chat claims it in its turn.
type heldChat struct {
	runs     *Runs
	owner    string
	deadline time.Time
}

// PrepareChat is Service.Prepare under the message's concurrency policy:
// under reject it is Prepare with a lease on the run (renewed while the
// chat executes; a worker takes the run over once it lapses); otherwise
// the message becomes a queued run with a turn (and its queue job), held
// by this chat, which executes it when its turn comes (Chat.Execute). A
// chat that dies waiting leaves the run to a worker once its hold lapses:
// the message is not lost.
func (r *Runs) PrepareChat(ctx context.Context, p ChatParams) (*Chat, error) {
	s := r.Service
	agent, err := s.agent(ctx, p.Tenant, p.Agent, 0, p.ConversationID)
	if err != nil {
		return nil, err
	}
	pol := policy(agent, p.ConcurrencyPolicy)
	if r.Queue == nil {
		return s.Prepare(ctx, p)
	}
	if pol == PolicyReject {
		// Executes at once, inline, holding a lease on its run: should
		// this process die, a worker takes the run over once the lease
		// lapses (it does not stay running, blocking the conversation).
		return s.prepare(ctx, p, r)
	}
	msg, err := s.Secrets.Check(p.Message)
	if err != nil {
		return nil, err
	}
	p.Message = msg
	agent, conv, isNew, err := r.resolveTurn(ctx, p.Tenant, p.Agent, 0, p.ConversationID)
	if err != nil {
		return nil, err
	}
	digest, err := s.pinAgent(ctx, agent)
	if err != nil {
		return nil, err
	}
	input, _ := json.Marshal(runInput{Message: p.Message, NewConversation: isNew, MaxCostUSD: p.MaxCostUSD})
	now := time.Now().UTC()
	id := "run_" + newID()
	h := &heldChat{runs: r, owner: r.Owner + "/chat/" + id, deadline: now.Add(chatTimeout(agent))}
	rn := store.Run{
		ID: id, Tenant: p.Tenant, Agent: agent.Name, ConversationID: conv.ID,
		Status: store.RunQueued, Input: input, IdempotencyKey: p.IdempotencyKey,
		CreatedAt: now.Truncate(time.Microsecond), Turn: store.NextTurn,
		HeldBy: h.owner, HeldUntil: now.Add(r.leaseTTL()), AgentDigest: digest,
	}
	if err := r.Queue.CreateRun(ctx, rn); err != nil {
		return nil, s.chatKeyConflict(ctx, p, err)
	}
	if rn, err = r.Store.GetRun(ctx, p.Tenant, id); err != nil {
		return nil, fmt.Errorf("read run %s back: %w", id, err)
	}
	if err := r.stopEarlier(ctx, rn, pol); err != nil {
		return nil, err
	}
	return &Chat{s: s, agent: agent, tenant: p.Tenant, conv: conv, isNew: isNew, run: rn,
		input: userMessage(p.Message), message: p.Message, started: time.Now(), maxCostUSD: p.MaxCostUSD, turn: h}, nil
}

// resolveTurn is Service.resolve for a message that takes a turn: a
// conversation whose first turn is still unfinished (it creates the
// conversation when it commits) is found by its runs, and the message is
// marked to create it too, should the first turn fail.
func (r *Runs) resolveTurn(ctx context.Context, tenant, agentName string, version int, convID string) (*ChatAgent, store.Conversation, bool, error) {
	agent, conv, isNew, err := r.Service.resolve(ctx, tenant, agentName, version, convID)
	if !errors.Is(err, ErrConversationNotFound) {
		return agent, conv, isNew, err
	}
	runs, rerr := r.Store.UnfinishedRuns(ctx, tenant, convID)
	if rerr != nil || len(runs) == 0 {
		return agent, conv, isNew, err
	}
	if agent, err = r.Service.agent(ctx, tenant, agentName, version, convID); err != nil {
		return nil, conv, false, err
	}
	if runs[0].Agent != agent.Name {
		return nil, conv, false, fmt.Errorf("%w: conversation %s belongs to agent %q", ErrConversationAgent, convID, runs[0].Agent)
	}
	return agent, store.Conversation{ID: convID, Tenant: tenant, Agent: agent.Name}, true, nil
}

// chatTimeout is how long a synchronous chat waits for its turn: its
// agent's timeout (a run's whole time limit).
func chatTimeout(a *ChatAgent) time.Duration {
	if a.Timeout > 0 {
		return a.Timeout
	}
	return 2 * time.Minute
}

// stopEarlier applies interrupt and rollback: every run of rn's
// conversation accepted before rn that is running or paused for approval
// (the active run) is interrupted (it keeps what it checkpointed) or
// canceled (its turn is discarded). Earlier runs still queued stay ahead of
// rn.
func (r *Runs) stopEarlier(ctx context.Context, rn store.Run, pol Policy) error {
	if pol != PolicyInterrupt && pol != PolicyRollback {
		return nil
	}
	runs, err := r.Store.UnfinishedRuns(ctx, rn.Tenant, rn.ConversationID)
	if err != nil {
		return fmt.Errorf("%s: find the active run: %w", pol, err)
	}
	for _, b := range runs {
		if b.ID == rn.ID || (b.Turn != 0 && b.Turn > rn.Turn) {
			continue
		}
		if b.Status != store.RunRunning && b.Status != store.RunRequiresAction {
			continue
		}
		if pol == PolicyInterrupt {
			_, err = r.Interrupt(ctx, b.Tenant, b.ID)
		} else {
			_, err = r.Cancel(ctx, b.Tenant, b.ID)
		}
		if err != nil {
			return fmt.Errorf("%s run %s: %w", pol, b.ID, err)
		}
		r.Log.InfoContext(ctx, "concurrency policy stops the active run", "policy", string(pol), "run_id", b.ID, "for_run_id", rn.ID)
	}
	return nil
}

// executeHeld executes a held chat's run in its turn: it waits until the
// run is claimable (its earlier turns finished), renewing its hold, then
// executes it here as a worker would, with onEvent. If a worker took the
// run meanwhile (the hold lapsed), it follows the run to its end.
func (h *heldChat) execute(ctx context.Context, c *Chat, onEvent func(store.Event)) (Result, error) {
	r := h.runs
	run, err := h.wait(ctx, c)
	if errors.Is(err, errFollow) {
		return h.follow(ctx, c, onEvent)
	}
	if err != nil {
		return Result{}, err
	}
	_, res, err := r.runClaimed(ctx, run, h.owner, onEvent)
	if le := (*loadError)(nil); errors.As(err, &le) {
		_, _ = r.afterRun(ctx, run, h.owner, err)
		return res, le.err
	}
	switch {
	case errors.Is(err, ErrSuspended), errors.Is(err, ErrRestore):
		// The client went away (or the lease was lost, or the store failed
		// before anything ran): the run keeps its lease until it lapses,
		// and is then reclaimed (a new queue job) and resumed by a worker
		// from its checkpoint. Released now, it would have no job.
		return res, err
	case errors.Is(err, ErrRequiresAction):
		_, _ = r.afterRun(ctx, run, h.owner, err)
		return res, err
	}
	return res, err
}

// errFollow: another owner executes the held chat's run.
var errFollow = errors.New("the run executes elsewhere")

// wait claims the held chat's run when its turn comes.
func (h *heldChat) wait(ctx context.Context, c *Chat) (store.Run, error) {
	r := h.runs
	wake := r.Service.turns.add(c.conv.ID, c.run.Turn)
	defer r.Service.turns.remove(c.conv.ID, wake)
	deadline := time.NewTimer(time.Until(h.deadline))
	defer deadline.Stop()
	renewEvery := r.leaseTTL() / 3
	lastRenew := time.Now()
	for {
		now := time.Now().UTC()
		run, err := r.Store.ClaimRun(ctx, store.ClaimRunParams{ID: c.run.ID, Owner: h.owner, LeaseUntil: now.Add(r.leaseTTL()), Now: now})
		switch {
		case err == nil:
			return run, nil
		case errors.Is(err, store.ErrRunWaiting):
		case errors.Is(err, store.ErrConflict) && run.Status == store.RunRunning:
			return run, errFollow
		case errors.Is(err, store.ErrConflict) && run.Status.Terminal():
			return run, errFollow
		case errors.Is(err, store.ErrConflict):
			return run, fmt.Errorf("run %s is %s: %w", run.ID, run.Status, ErrConversationBusy)
		default:
			return run, fmt.Errorf("claim run %s: %w", c.run.ID, err)
		}
		if time.Since(lastRenew) >= renewEvery {
			// Keep the hold: no worker takes the run while this chat
			// waits for it.
			if _, err := r.Store.ExtendLease(ctx, c.run.ID, h.owner, time.Now().UTC().Add(r.leaseTTL())); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return run, errFollow // a worker took it, or it was canceled
				}
				r.Log.WarnContext(ctx, "renew the hold of a waiting chat", "run_id", c.run.ID, "err", err)
			}
			lastRenew = time.Now()
		}
		poll := time.NewTimer(turnPollChat + rand.N(turnPollChat/2))
		select {
		case <-wake:
		case <-poll.C:
		case <-deadline.C:
			poll.Stop()
			h.release(ctx, c)
			return run, &TurnTimeoutError{RunID: c.run.ID, ConversationID: c.conv.ID, Waited: time.Since(c.started)}
		case <-ctx.Done():
			poll.Stop()
			// The client went away: the run stays queued, for a worker.
			h.release(ctx, c)
			return run, fmt.Errorf("waiting for its turn: %w", context.Cause(ctx))
		}
		poll.Stop()
	}
}

// release drops the chat's hold: any worker may claim the run in its turn.
func (h *heldChat) release(ctx context.Context, c *Chat) {
	rel, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.runs.Store.ReleaseLease(rel, c.run.ID, h.owner); err != nil {
		h.runs.Log.WarnContext(ctx, "release the hold of a waiting chat", "run_id", c.run.ID, "err", err)
	}
}

// follow waits for a run another owner executes, handing its events to
// onEvent, and returns its result from its row.
func (h *heldChat) follow(ctx context.Context, c *Chat, onEvent func(store.Event)) (Result, error) {
	r := h.runs
	var last int64
	for {
		rn, err := r.Store.GetRun(ctx, c.tenant, c.run.ID)
		if err != nil {
			return Result{}, fmt.Errorf("follow run %s: %w", c.run.ID, err)
		}
		for {
			evs, err := r.Store.ListEvents(ctx, c.run.ID, last, 500)
			if err != nil {
				return Result{}, fmt.Errorf("follow run %s: %w", c.run.ID, err)
			}
			for _, ev := range evs {
				if onEvent != nil {
					onEvent(ev)
				}
				last = ev.Seq
			}
			if len(evs) < 500 {
				break
			}
		}
		if rn.Status.Terminal() || rn.Status == store.RunRequiresAction {
			return resultOf(rn)
		}
		t := time.NewTimer(turnPollChat / 2)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Result{}, fmt.Errorf("following run %s: %w", c.run.ID, context.Cause(ctx))
		}
	}
}

// resultOf is the result of a run that ended, from its row.
func resultOf(rn store.Run) (Result, error) {
	res := Result{Steps: rn.Steps, CostUSD: rn.CostUSD,
		Usage: llm.Usage{InputTokens: rn.InputTokens, OutputTokens: rn.OutputTokens}}
	switch rn.Status {
	case store.RunSucceeded:
		_ = json.Unmarshal(rn.Output, &res.Output)
		res.StopReason = "end_turn"
		return res, nil
	case store.RunCanceled:
		return res, fmt.Errorf("%w: %s", ErrCanceled, rn.Error)
	case store.RunInterrupted:
		return res, fmt.Errorf("%w: %s", ErrInterrupted, rn.Error)
	case store.RunRequiresAction:
		return res, fmt.Errorf("%w: run %s waits for approvals", ErrRequiresAction, rn.ID)
	default:
		return res, fmt.Errorf("run %s %s: %s", rn.ID, rn.Status, rn.Error)
	}
}
