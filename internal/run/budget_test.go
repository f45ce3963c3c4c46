package run_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
)

// A model call may end on any model of its agent's fallback chain, so its
// reservation is the worst case of the dearest of them: a run capped below
// what a fallback may cost is refused before its first call, although the
// agent's own model fits.
func TestReservationCountsFallbackModels(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	pricing := cost.New(nil, nil)
	b.loop.Pricing = pricing
	b.loop.Budget = budget.New(config.Budgets{ReservationTTL: time.Minute}, b.store, pricing, nil, nil)
	b.agent.Model = "claude-haiku-4-5" // worst case of one call: under $0.01
	b.agent.MaxCostUSD = 0.02

	ans, err := b.chat(t, "", "hello")
	require.NoError(t, err, "the agent's own model fits the run's cap")
	require.Positive(t, ans.CostUSD)

	// 512 output tokens at claude-opus-4-1's $75 per million: $0.038.
	b.agent.FallbackModels = []string{"claude-opus-4-1"}
	_, err = b.chat(t, "", "hello")
	ex, ok := budget.AsExceeded(err)
	require.True(t, ok, "want a budget refusal, got %v", err)
	require.Equal(t, budget.ScopeRun, ex.Scope)
	require.Equal(t, "budget_exceeded", run.ClassifyError(err).Type)
}
