package main

import (
	"log/slog"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
)

// pricingTable is the shipped model prices with the configuration's
// overrides (pricing.models).
func pricingTable(cfg *config.Config, log *slog.Logger) *cost.Table {
	overrides := make(map[string]cost.Price, len(cfg.Pricing.Models))
	for id, p := range cfg.Pricing.Models {
		overrides[id] = cost.Price{Input: p.Input, Output: p.Output, CacheWrite: p.CacheWrite, CacheRead: p.CacheRead}
	}
	return cost.New(overrides, log.With("component", "pricing"))
}
