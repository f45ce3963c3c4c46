package config

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Pricing overrides agentd's shipped model prices (see docs/cost.md).
type Pricing struct {
	// Models maps a model id to its prices. An entry replaces the shipped
	// price of the same id whole (a kind left out costs 0) or adds a
	// model; ids match model names exactly, then as a prefix of dated ids
	// ("claude-sonnet-4-5" prices "claude-sonnet-4-5-20250929"). A map:
	// configured in the file only. Defaults to none (the shipped prices).
	Models map[string]ModelPrice `yaml:"models,omitempty"`
}

// ModelPrice is a model's price in USD per million tokens.
type ModelPrice struct {
	// Input is the price of uncached input tokens.
	Input float64 `yaml:"input"`
	// Output is the price of output tokens.
	Output float64 `yaml:"output"`
	// CacheWrite is the price of prompt-cache writes
	// (cache_creation_input_tokens).
	CacheWrite float64 `yaml:"cache_write"`
	// CacheRead is the price of prompt-cache reads
	// (cache_read_input_tokens).
	CacheRead float64 `yaml:"cache_read"`
}

func (v *validator) pricing(p Pricing) {
	ids := make([]string, 0, len(p.Models))
	for id := range p.Models {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		path := "pricing.models." + id
		if strings.TrimSpace(id) == "" || strings.TrimSpace(id) != id {
			v.add(path, "model id must not be empty or have surrounding spaces")
			continue
		}
		m := p.Models[id]
		for _, f := range []struct {
			name string
			val  float64
		}{{"input", m.Input}, {"output", m.Output}, {"cache_write", m.CacheWrite}, {"cache_read", m.CacheRead}} {
			if f.val < 0 || math.IsNaN(f.val) || math.IsInf(f.val, 0) {
				v.add(path+"."+f.name, fmt.Sprintf("must be a price >= 0 (USD per million tokens), not %v", f.val))
			}
		}
	}
}
