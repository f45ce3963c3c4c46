package run_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// TestCostOnTheWireIsExact is issue 16's artifact: a run of two calls
// priced $0.000303 and $0.001515 showed "cost_usd":0.0018180000000000002
// when the costs were float dollars. As nano-dollars the run's cost is
// their exact sum, written as the exact decimal in the answer, the run
// body, the usage events and the webhook.
func TestCostOnTheWireIsExact(t *testing.T) {
	calls := []money.Nanos{money.FromUSD(0.000303), money.FromUSD(0.001515)}
	var total money.Nanos
	for _, c := range calls {
		total += c
	}
	r := store.Run{ID: "run_1", Status: store.RunSucceeded, CostUSD: total}
	for name, v := range map[string]any{
		"answer":   run.Answer{CostUSD: total},
		"run body": run.NewRunBody(r),
		"event":    run.UsageEvent{CostUSD: total},
	} {
		b, err := json.Marshal(v)
		require.NoError(t, err, name)
		require.Contains(t, string(b), `"cost_usd":0.001818`, name)
		require.NotContains(t, string(b), `0.0018180000000000002`, name)
		var back struct {
			CostUSD money.Nanos `json:"cost_usd"`
		}
		require.NoError(t, json.Unmarshal(b, &back), name)
		require.Equal(t, total, back.CostUSD, name)
	}
}
