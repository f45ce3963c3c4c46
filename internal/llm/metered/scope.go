package metered

import (
	"context"
	"sync"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
)

// RunScope attributes the gateway calls of a hosted agent program
// (agents[].runtime) to the run that started it: the gateway meters them
// as the run's model calls (its tenant, key, agent, run id and max_cost_usd
// cap) instead of as the key's own, and reports each call's answer back to
// the run (Report), which turns it into a usage event and adds it to the
// run's totals.
type RunScope struct {
	Tenant, Key, Agent, RunID string
	// RunMaxUSD caps the run's cost (0: none).
	RunMaxUSD float64
	// OnCall receives every metered call that answered, in the order
	// their accounting ends; it may be called from several goroutines at
	// once.
	OnCall func(CallReport)
	// OnRefused, if set, receives the error of a call refused because a
	// budget has no room (a *budget.ExceededError): the run cannot go on.
	OnRefused func(error)

	mu    sync.Mutex
	steps int
	wg    sync.WaitGroup
}

// CallReport is one of a run's gateway calls, accounted.
type CallReport struct {
	Step       int
	Model      string // the model that answered
	RequestID  string // the provider's message id
	StopReason string
	Usage      llm.Usage
	CostUSD    money.Nanos
}

// Begin starts a call of the scope: it returns the call's step (1, 2, ...
// for the run's program, in the order calls begin), and the call must end
// with End.
func (s *RunScope) Begin() int {
	s.wg.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps++
	return s.steps
}

// End ends a call begun with Begin; a non-nil r is reported to OnCall.
func (s *RunScope) End(r *CallReport) {
	defer s.wg.Done()
	if r != nil && s.OnCall != nil {
		s.OnCall(*r)
	}
}

// Wait waits until every call begun has ended (its accounting done).
func (s *RunScope) Wait() { s.wg.Wait() }

// Steps is the number of calls begun.
func (s *RunScope) Steps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.steps
}

// SetSteps sets the steps already counted (a run resumed after some).
func (s *RunScope) SetSteps(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = n
}

type scopeKey struct{}

// WithRunScope returns ctx carrying s.
func WithRunScope(ctx context.Context, s *RunScope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// RunScopeFrom returns the RunScope ctx carries, or nil.
func RunScopeFrom(ctx context.Context) *RunScope {
	s, _ := ctx.Value(scopeKey{}).(*RunScope)
	return s
}
