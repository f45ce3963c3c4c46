package app

import (
	"context"
	"errors"

	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
)

// ErrNotServing is returned by Chat before Run serves or after it
// stopped.
var ErrNotServing = errors.New("agentd is not serving (call Run first)")

// Ready is closed once Run serves: the model upstream, the workers and
// HTTP are up.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Drain starts a graceful drain, as SIGTERM does: Run drains, stops and
// returns nil. Safe to call more than once and before Run.
func (a *App) Drain() { a.requestDrain() }

// Chat runs one chat turn in-process, as POST /v1/chat does without its
// HTTP layer (no authentication, rate limits or admission; budgets,
// max_cost_usd, tools and the conversation rules apply), and returns the
// answer; onEvent (may be nil) sees every event of the run as it happens.
// The tenant defaults to the one of auth.mode none. Call it while Run
// serves (after Ready).
func (a *App) Chat(ctx context.Context, p agentrun.ChatParams, onEvent func(store.Event)) (agentrun.Answer, error) {
	select {
	case <-a.ready:
	default:
		return agentrun.Answer{}, ErrNotServing
	}
	if a.health.Draining() {
		return agentrun.Answer{}, ErrNotServing
	}
	if p.Tenant == "" {
		p.Tenant = server.DefaultTenant
	}
	c, err := a.runs.PrepareChat(ctx, p) // the agent's concurrency policy (reject: svc.Prepare)
	if err != nil {
		return agentrun.Answer{}, err
	}
	return c.Execute(ctx, onEvent)
}
