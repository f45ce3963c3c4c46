// Package cost prices model calls: a table of USD prices per million tokens
// by kind (input, output, cache write, cache read) for each model, shipped
// with defaults for current Claude models and overridable in the
// configuration (pricing.models).
//
// A model id is matched exactly first, then by the longest table entry it
// starts with followed by "-" or "@" (dated ids such as
// "claude-sonnet-4-5-20250929", "-latest" aliases, Vertex ids such as
// "claude-sonnet-4-5@20250929"); a leading "anthropic." (Bedrock) is
// ignored. A model the table does not know costs 0, and is reported once
// (log) so that the operator adds a price.
package cost

import (
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
)

// Price is a model's price in USD per million tokens, by token kind.
type Price struct {
	Input      float64 `json:"input"`
	Output     float64 `json:"output"`
	CacheWrite float64 `json:"cache_write"`
	CacheRead  float64 `json:"cache_read"`
}

// Cost returns the cost of u at p, exact in nano-dollars: a price per
// million tokens times a count of tokens is tokens × price × 1000
// nano-dollars, a whole number for prices with at most three decimals
// (every shipped price); a price with more is rounded to the nearest
// nano-dollar per call.
func (p Price) Cost(u llm.Usage) money.Nanos {
	return nanos(float64(u.InputTokens)*p.Input +
		float64(u.OutputTokens)*p.Output +
		float64(u.CacheCreationInputTokens)*p.CacheWrite +
		float64(u.CacheReadInputTokens)*p.CacheRead)
}

// nanos converts tokens × USD-per-million-tokens to nano-dollars, rounded
// (× 1000 rather than / 1e6 × 1e9: the product of whole tokens and prices
// of three decimals is then an integer computed exactly, up to 2^53).
func nanos(tokenPrice float64) money.Nanos {
	return money.FromUSD(tokenPrice / 1e6)
}

// Defaults returns the shipped prices (Anthropic list prices, standard
// context, 5-minute cache writes). The map is the caller's.
func Defaults() map[string]Price {
	opus := Price{Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.50}
	sonnet := Price{Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.30}
	return map[string]Price{
		"claude-opus-4-5":   {Input: 5, Output: 25, CacheWrite: 6.25, CacheRead: 0.50},
		"claude-opus-4-1":   opus,
		"claude-opus-4":     opus,
		"claude-sonnet-4-5": sonnet,
		"claude-sonnet-4":   sonnet,
		"claude-3-7-sonnet": sonnet,
		"claude-3-5-sonnet": sonnet,
		"claude-haiku-4-5":  {Input: 1, Output: 5, CacheWrite: 1.25, CacheRead: 0.10},
		"claude-3-5-haiku":  {Input: 0.80, Output: 4, CacheWrite: 1, CacheRead: 0.08},
		"claude-3-opus":     opus,
		"claude-3-haiku":    {Input: 0.25, Output: 1.25, CacheWrite: 0.30, CacheRead: 0.03},
	}
}

// Table prices model calls. Its methods are safe for concurrent use; a nil
// *Table prices everything at 0 and knows no model.
type Table struct {
	prices map[string]Price
	// byLength are the table's ids, longest first (prefix matching).
	byLength []string
	log      *slog.Logger
	warned   sync.Map // model → struct{}: unknown models already logged
}

// New returns the default prices with overrides applied: an override
// replaces a default of the same id whole, or adds a model. log (may be
// nil) receives one warning per unknown model.
func New(overrides map[string]Price, log *slog.Logger) *Table {
	t := &Table{prices: Defaults(), log: log}
	for id, p := range overrides {
		t.prices[strings.TrimSpace(id)] = p
	}
	for id := range t.prices {
		t.byLength = append(t.byLength, id)
	}
	slices.SortFunc(t.byLength, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return t
}

// Lookup returns the price of model and the table id that matched.
func (t *Table) Lookup(model string) (p Price, id string, ok bool) {
	if t == nil {
		return Price{}, "", false
	}
	if p, ok := t.prices[model]; ok {
		return p, model, true
	}
	m := strings.TrimPrefix(model, "anthropic.")
	if p, ok := t.prices[m]; ok {
		return p, m, true
	}
	for _, id := range t.byLength {
		if len(m) > len(id) && strings.HasPrefix(m, id) && (m[len(id)] == '-' || m[len(id)] == '@') {
			return t.prices[id], id, true
		}
	}
	return Price{}, "", false
}

// Cost returns the USD cost of a call of model with usage u, and whether
// the model has a price. An unknown model costs 0 and is logged once.
func (t *Table) Cost(model string, u llm.Usage) (usd money.Nanos, known bool) {
	p, _, ok := t.Lookup(model)
	if !ok {
		if t != nil && t.log != nil {
			if _, seen := t.warned.LoadOrStore(model, struct{}{}); !seen {
				t.log.Warn("no price for model: its calls are recorded at cost 0; add it under pricing.models",
					"model", model)
			}
		}
		return 0, false
	}
	return p.Cost(u), true
}

// WorstCase returns the most a call of model may cost: promptTokens priced
// at the higher of the input and cache-write prices (a prompt may be written
// to the cache), maxTokens at the output price. Cache reads only make a call
// cheaper, so they never raise it. An unknown model costs 0, as in Cost.
func (t *Table) WorstCase(model string, promptTokens, maxTokens int64) money.Nanos {
	p, _, ok := t.Lookup(model)
	if !ok {
		return 0
	}
	return nanos(float64(max(promptTokens, 0))*max(p.Input, p.CacheWrite) + float64(max(maxTokens, 0))*p.Output)
}

// EstimateTokens estimates the tokens of a prompt of n bytes (its JSON
// encoding): one token per 3 bytes, rounded up. Real tokenizers average
// about 4 bytes per token on English text, so this errs on the high side,
// which is what a budget reservation wants.
func EstimateTokens(n int) int64 {
	if n <= 0 {
		return 0
	}
	return int64((n + 2) / 3)
}
