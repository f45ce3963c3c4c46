package run_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

// recordingUsage keeps usage rows in memory, optionally failing.
type recordingUsage struct {
	mu   sync.Mutex
	rows []store.UsageRecord
	fail bool
}

func (r *recordingUsage) AppendUsage(_ context.Context, rec store.UsageRecord) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("ledger down")
	}
	r.rows = append(r.rows, rec)
	return nil
}

func TestUsageRowPerModelCall(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.loop.Pricing = cost.New(nil, nil)
	b.loop.Usage = b.store

	ans, err := b.chat(t, "", "please use lookup and calculator")
	require.NoError(t, err)
	require.Equal(t, 2, ans.Steps, "tool use: two model calls")
	require.Positive(t, ans.CostUSD)

	// Two rows, one per model call, summing to the answer's cost.
	groups, err := b.store.SumUsage(t.Context(), store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent,
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Len(t, groups, 1)
	g := groups[0]
	require.Equal(t, "demo", g.Group)
	require.Equal(t, int64(2), g.Requests)
	require.Equal(t, ans.Usage.InputTokens, g.InputTokens)
	require.Equal(t, ans.Usage.OutputTokens, g.OutputTokens)
	require.Equal(t, ans.CostUSD, g.CostUSD)
	// Priced at claude-sonnet-4-5's list price.
	want := money.Nanos(ans.Usage.InputTokens*3000 + ans.Usage.OutputTokens*15000 +
		ans.Usage.CacheCreationInputTokens*3750 + ans.Usage.CacheReadInputTokens*300) // nano-dollars
	require.Equal(t, want, ans.CostUSD)

	// The run row and the done event carry the same cost.
	r, err := b.store.GetRun(t.Context(), "t1", ans.RunID)
	require.NoError(t, err)
	require.Equal(t, ans.CostUSD, r.CostUSD)
	require.Equal(t, ans.CostUSD, run.NewRunBody(r).CostUSD)
	// The per-step costs of the usage events sum exactly to the run's
	// (decoded as exact amounts: the wire carries at most nine decimals).
	var perStep money.Nanos
	var done run.Answer
	for _, ev := range b.events(t, ans.RunID) {
		switch ev.Type {
		case run.EventUsage:
			var u struct {
				CostUSD money.Nanos `json:"cost_usd"`
			}
			require.NoError(t, json.Unmarshal(ev.Data, &u))
			require.Positive(t, u.CostUSD)
			perStep += u.CostUSD
		case run.EventDone:
			require.NoError(t, json.Unmarshal(ev.Data, &done))
		}
	}
	require.Equal(t, ans.CostUSD, perStep)
	require.Equal(t, ans.CostUSD, done.CostUSD)
	raw, err := json.Marshal(ans)
	require.NoError(t, err)
	require.Regexp(t, regexp.QuoteMeta(`"cost_usd":`+ans.CostUSD.String())+`[,}]`, string(raw), "the exact decimal on the wire")
}

func TestUsageRowsAndFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	rec := &recordingUsage{}
	b.loop.Pricing = cost.New(nil, nil)
	b.loop.Usage = rec

	ans, err := b.chat(t, "", "please use lookup")
	require.NoError(t, err)
	require.Len(t, rec.rows, 2)
	var sum money.Nanos
	for i, row := range rec.rows {
		require.Equal(t, "t1", row.Tenant)
		require.Equal(t, "demo", row.Agent)
		require.Equal(t, ans.RunID, row.RunID)
		require.Equal(t, i+1, row.Step)
		require.Contains(t, row.Model, "claude-sonnet-4-5")
		require.Empty(t, row.Key)
		require.False(t, row.Time.IsZero())
		require.Positive(t, row.InputTokens)
		sum += row.CostUSD
	}
	require.Equal(t, ans.CostUSD, sum, "the run's cost is the exact sum of its calls")

	// A ledger that fails never fails the run; the cost is still known.
	rec.fail = true
	ans, err = b.chat(t, "", "please use lookup")
	require.NoError(t, err)
	require.Positive(t, ans.CostUSD)

	// Unpriced model: cost 0, the run succeeds.
	b.loop.Pricing = cost.New(nil, nil)
	b.agent.Model = "some-unknown-model"
	rec.fail = false
	ans, err = b.chat(t, "", "hello")
	require.NoError(t, err)
	require.Zero(t, ans.CostUSD)
}
