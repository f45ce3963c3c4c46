package metered_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/metered"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

type fakes struct {
	mu       sync.Mutex
	rows     []store.UsageRecord
	reserved []money.Nanos
	subjects []budget.Subject
	debited  int64
	refuse   error // of AllowTokens
	noRoom   bool  // Reserve refuses
}

func (f *fakes) AppendUsage(_ context.Context, r store.UsageRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows = append(f.rows, r)
	return nil
}

func (f *fakes) AllowTokens(context.Context, string, string) error { return f.refuse }

func (f *fakes) AddTokens(_ context.Context, _, _ string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.debited += n
}

func (f *fakes) Reserve(_ context.Context, s budget.Subject, usd money.Nanos) (*budget.Reservation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noRoom {
		return nil, &budget.ExceededError{Scope: budget.ScopeKey, ID: s.Key, Period: budget.PeriodDay, LimitUSD: money.FromUSD(1)}
	}
	f.reserved = append(f.reserved, usd)
	f.subjects = append(f.subjects, s)
	return &budget.Reservation{}, nil
}

func setup() (*fakes, *metered.Meter) {
	f := &fakes{}
	return f, &metered.Meter{Pricing: cost.New(nil, nil), Usage: f, Tokens: f, Budget: f}
}

func TestWorstCaseIsTheDearestModelOfTheChain(t *testing.T) {
	t.Parallel()
	_, m := setup()
	body := make([]byte, 3000) // 1000 tokens
	info := metered.CallInfo{Model: "claude-haiku-4-5", MaxTokens: 1000}
	req := &llm.Request{Passthrough: &llm.Passthrough{Body: body}}
	haiku := money.Nanos((1000*1.25 + 1000*5) * 1000) // nano-dollars, exact
	require.Equal(t, haiku, m.WorstCase(&info, req))

	info.Fallbacks = []string{"claude-opus-4-1", "claude-sonnet-4-5"}
	opus := money.Nanos((1000*18.75 + 1000*75) * 1000)
	require.Equal(t, opus, m.WorstCase(&info, req))

	// An unpriced fallback costs 0 and never lowers the reservation.
	info.Fallbacks = []string{"no-such-model"}
	require.Equal(t, haiku, m.WorstCase(&info, req))
}

func TestBeginReservesAndSettleRecords(t *testing.T) {
	t.Parallel()
	f, m := setup()
	ctx, call, err := m.Begin(t.Context(), metered.CallInfo{
		Tenant: "t1", Key: "k1", Agent: "demo", RunID: "r1", Step: 2, RunMaxUSD: 0.5,
		Model: "claude-haiku-4-5", Fallbacks: []string{"claude-sonnet-4-5"}, MaxTokens: 100, Trace: true,
	}, nil)
	require.NoError(t, err)
	require.NotNil(t, ctx)
	require.Equal(t, []money.Nanos{100 * 15 * 1000}, f.reserved, "sonnet's output price: the dearest of the chain")
	require.Equal(t, budget.Subject{Tenant: "t1", Key: "k1", Agent: "demo", Run: "r1", RunMaxUSD: 0.5}, f.subjects[0])

	// A fallback answered: priced at its own price.
	u := llm.Usage{InputTokens: 10, OutputTokens: 20, CacheCreationInputTokens: 5}
	usd := call.Settle(t.Context(), &llm.Response{Model: "claude-sonnet-4-5", Usage: u})
	require.Equal(t, money.Nanos((10*3+20*15+5*3.75)*1000), usd)
	require.Equal(t, "0.00034875", usd.String())
	require.Equal(t, int64(35), f.debited)
	require.Len(t, f.rows, 1)
	row := f.rows[0]
	require.Equal(t, "t1", row.Tenant)
	require.Equal(t, "k1", row.Key)
	require.Equal(t, "demo", row.Agent)
	require.Equal(t, "r1", row.RunID)
	require.Equal(t, 2, row.Step)
	require.Equal(t, "claude-sonnet-4-5", row.Model)
	require.Equal(t, usd, row.CostUSD)
	require.False(t, row.Cached)

	// A cache hit costs nothing and is recorded as such; no model named:
	// the model called.
	_, call, err = m.Begin(t.Context(), metered.CallInfo{Tenant: "t1", Agent: "demo", Model: "claude-haiku-4-5"}, nil)
	require.NoError(t, err)
	require.Zero(t, call.Settle(t.Context(), &llm.Response{Usage: u, Cached: true}))
	require.Equal(t, "claude-haiku-4-5", f.rows[1].Model)
	require.True(t, f.rows[1].Cached)
}

func TestRefusalsAndAbort(t *testing.T) {
	t.Parallel()
	f, m := setup()
	f.refuse = errors.New("spent")
	_, call, err := m.Begin(t.Context(), metered.CallInfo{Tenant: "t1", Model: "claude-haiku-4-5"}, nil)
	require.ErrorIs(t, err, metered.ErrRateLimited)
	require.Nil(t, call)
	require.Empty(t, f.reserved, "a refused call reserves nothing")

	f.refuse, f.noRoom = nil, true
	_, _, err = m.Begin(t.Context(), metered.CallInfo{Tenant: "t1", Key: "k1", Step: 3, Model: "claude-haiku-4-5"}, nil)
	_, ok := budget.AsExceeded(err)
	require.True(t, ok)
	require.ErrorContains(t, err, "reserve budget for step 3")

	f.noRoom = false
	_, call, err = m.Begin(t.Context(), metered.CallInfo{Tenant: "t1", Model: "claude-haiku-4-5", Trace: true}, nil)
	require.NoError(t, err)
	call.Abort(t.Context(), &llm.Error{Type: "overloaded_error", Status: 529})
	require.Empty(t, f.rows, "a failed call has no usage row")
	require.Zero(t, f.debited)

	// A nil call (not metered) ends as a no-op.
	var none *metered.Call
	none.Abort(t.Context(), nil)
	require.Zero(t, none.Settle(t.Context(), &llm.Response{Usage: llm.Usage{InputTokens: 1}}))
}

// The cost metric says which agent spent it, next to the model; the
// gateway's calls count as agent "gateway".
func TestCostMetricByAgentAndModel(t *testing.T) {
	t.Parallel()
	_, m := setup()
	m.Metrics = observe.NewMetrics("test")
	u := llm.Usage{InputTokens: 1000, OutputTokens: 1000}
	for _, agent := range []string{"demo", "gateway", "demo"} {
		_, call, err := m.Begin(t.Context(), metered.CallInfo{Tenant: "t1", Agent: agent, Model: "claude-haiku-4-5"}, nil)
		require.NoError(t, err)
		call.Settle(t.Context(), &llm.Response{Model: "claude-haiku-4-5", Usage: u})
	}
	one := (1000*1.0 + 1000*5.0) / 1e6 // haiku: $1 in, $5 out per MTok
	require.InDelta(t, 2*one, counter(t, m.Metrics, "demo"), 1e-12)
	require.InDelta(t, one, counter(t, m.Metrics, "gateway"), 1e-12)
}

func counter(t *testing.T, m *observe.Metrics, agent string) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.LLMCost.WithLabelValues(agent, "claude-haiku-4-5").Write(&d))
	return d.GetCounter().GetValue()
}
