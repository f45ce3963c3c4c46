package cost_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
)

func TestDefaultPrices(t *testing.T) {
	tb := cost.New(nil, nil)
	u := llm.Usage{InputTokens: 1_000_000, OutputTokens: 1_000_000, CacheCreationInputTokens: 1_000_000, CacheReadInputTokens: 1_000_000}
	for model, want := range map[string]money.Nanos{
		"claude-opus-4":     (15 + 75 + 18.75 + 1.50) * 1e9,
		"claude-opus-4-1":   (15 + 75 + 18.75 + 1.50) * 1e9,
		"claude-sonnet-4":   (3 + 15 + 3.75 + 0.30) * 1e9,
		"claude-sonnet-4-5": (3 + 15 + 3.75 + 0.30) * 1e9,
		"claude-haiku-4-5":  (1 + 5 + 1.25 + 0.10) * 1e9,
		"claude-3-5-haiku":  (0.80 + 4 + 1 + 0.08) * 1e9,
	} {
		got, ok := tb.Cost(model, u)
		require.True(t, ok, model)
		require.Equal(t, want, got, model)
	}
	// Token kinds are priced separately.
	got, _ := tb.Cost("claude-sonnet-4-5", llm.Usage{InputTokens: 1000, OutputTokens: 200, CacheCreationInputTokens: 100, CacheReadInputTokens: 5000})
	require.Equal(t, money.Nanos((1000*3+200*15+100*3.75+5000*0.30)*1000), got)
	require.Equal(t, "0.007875", got.String())
}

func TestPrefixAndAliasMatch(t *testing.T) {
	tb := cost.New(nil, nil)
	for model, want := range map[string]string{
		"claude-sonnet-4-5-20250929":                "claude-sonnet-4-5",
		"claude-sonnet-4-20250514":                  "claude-sonnet-4",
		"claude-sonnet-4-0":                         "claude-sonnet-4",
		"claude-opus-4-1-20250805":                  "claude-opus-4-1",
		"claude-opus-4-20250514":                    "claude-opus-4",
		"claude-opus-4-5-20251101":                  "claude-opus-4-5",
		"claude-3-5-haiku-latest":                   "claude-3-5-haiku",
		"claude-haiku-4-5-20251001":                 "claude-haiku-4-5",
		"claude-sonnet-4-5@20250929":                "claude-sonnet-4-5",
		"anthropic.claude-sonnet-4-5-20250929-v1:0": "claude-sonnet-4-5",
	} {
		_, id, ok := tb.Lookup(model)
		require.True(t, ok, model)
		require.Equal(t, want, id, model)
	}
	// A prefix must end at a separator: "claude-sonnet-45" is not
	// "claude-sonnet-4".
	_, _, ok := tb.Lookup("claude-sonnet-45")
	require.False(t, ok)
}

func TestUnknownModelCostsZeroAndWarnsOnce(t *testing.T) {
	var buf bytes.Buffer
	tb := cost.New(nil, slog.New(slog.NewTextHandler(&buf, nil)))
	for range 3 {
		usd, ok := tb.Cost("gpt-9", llm.Usage{InputTokens: 1000, OutputTokens: 1000})
		require.False(t, ok)
		require.Zero(t, usd)
	}
	require.Equal(t, 1, strings.Count(buf.String(), "no price for model"), buf.String())
	_, _ = tb.Cost("gpt-10", llm.Usage{})
	require.Equal(t, 2, strings.Count(buf.String(), "no price for model"))

	var nilTable *cost.Table
	usd, ok := nilTable.Cost("claude-sonnet-4", llm.Usage{InputTokens: 1})
	require.False(t, ok)
	require.Zero(t, usd)
}

func TestOverrides(t *testing.T) {
	tb := cost.New(map[string]cost.Price{
		"claude-sonnet-4-5": {Input: 1, Output: 2},                 // replaces the default whole
		"my-finetune":       {Input: 10, Output: 20, CacheRead: 1}, // adds a model
	}, nil)
	u := llm.Usage{InputTokens: 1_000_000, OutputTokens: 1_000_000, CacheCreationInputTokens: 1_000_000}
	got, ok := tb.Cost("claude-sonnet-4-5-20250929", u)
	require.True(t, ok)
	require.Equal(t, 3*money.PerUSD, got, "cache writes are free in the override")
	got, ok = tb.Cost("my-finetune-v2", u)
	require.True(t, ok)
	require.Equal(t, 30*money.PerUSD, got)
	// Other defaults stay.
	got, _ = tb.Cost("claude-sonnet-4", llm.Usage{InputTokens: 1_000_000})
	require.Equal(t, 3*money.PerUSD, got)
}

func TestWorstCase(t *testing.T) {
	tb := cost.New(map[string]cost.Price{"cheap-write": {Input: 2, Output: 10, CacheWrite: 1}}, nil)
	// Sonnet: the cache-write price (3.75) is above the input price (3).
	require.Equal(t, money.Nanos((1000*3.75+500*15)*1000), tb.WorstCase("claude-sonnet-4-5-20250929", 1000, 500))
	// Here the input price is the higher one.
	require.Equal(t, money.Nanos((1000*2+500*10)*1000), tb.WorstCase("cheap-write", 1000, 500))
	require.Zero(t, tb.WorstCase("no-such-model", 1000, 500))
	require.Zero(t, (*cost.Table)(nil).WorstCase("claude-sonnet-4-5", 1000, 500))
	require.Equal(t, int64(0), cost.EstimateTokens(0))
	require.Equal(t, int64(1), cost.EstimateTokens(1))
	require.Equal(t, int64(1), cost.EstimateTokens(3))
	require.Equal(t, int64(2), cost.EstimateTokens(4))
}
