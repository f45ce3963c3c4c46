package main

import (
	"log/slog"

	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/ratelimit"
)

// buildGateway returns the Anthropic-compatible endpoint over the
// provider's stack (key pool, retries, breakers, concurrency limit).
func buildGateway(cfg *config.Config, provider *resilience.Provider, pricing *cost.Table, usage gateway.UsageRecorder,
	rateLimit *ratelimit.Limiter, budgets *budget.Enforcer, metrics *observe.Metrics, log *slog.Logger) (*gateway.Handler, error) {
	g := cfg.Gateway
	gc := gateway.Config{
		Upstream: provider, Aliases: g.Aliases,
		Default: gateway.Policy{AllowModels: g.AllowModels, FallbackModels: g.FallbackModels},
		Pricing: pricing, Usage: usage,
		MaxBodyBytes: g.MaxBodyBytes, LogBodies: g.LogBodies,
		Metrics: gateway.NewMetrics(metrics.Registry), LLMMetrics: metrics,
		Log: log.With("component", "gateway"),
	}
	if rateLimit != nil {
		gc.Tokens = rateLimit // a nil *Limiter in the interface would not be nil
	}
	if cfg.AnyBudget() {
		gc.Budgets = budgets
	}
	if len(g.Tenants) > 0 {
		gc.Tenants = make(map[string]gateway.Policy, len(g.Tenants))
		for name, t := range g.Tenants {
			gc.Tenants[name] = gateway.Policy{AllowModels: t.AllowModels, FallbackModels: t.FallbackModels}
		}
	}
	return gateway.New(gc)
}
