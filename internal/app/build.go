package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/abuse/abuseredis"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/ratelimit"
	storeredis "github.com/agentd/agentd/internal/redis"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/tool/toolset"
)

// buildModels sets each agent's model: its resilience stack (cache,
// fallback chain, breaker, concurrency limit, retry, key pool) over the
// Claude client. The client talks to the real API when a key is configured,
// else to an in-process simulator (never silently); the simulator and the
// key pool's refresh are added to a's components.
func (a *App) buildModels(agents map[string]*agentrun.ChatAgent) (*resilience.Provider, error) {
	cfg, log := a.cfg, a.log
	an := cfg.Providers.Anthropic
	pcfg := resilience.NewProviderConfig("anthropic", an)
	pcfg.Breakers = a.breakers // model:NAME, with breakers.overrides
	simulate := an.Simulate == config.SimulateAlways || (an.Simulate == config.SimulateAuto && an.APIKey.Value() == "" && len(an.Keys.Sources) == 0)
	var client llm.Model
	if simulate {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("start simulator: %w", err)
		}
		const simKey = "sim-key"
		simCfg := sim.Config{APIKey: simKey, Latency: an.SimLatency}
		a.addLoop("simulator", func(ctx context.Context) error {
			return sim.Serve(ctx, ln, simCfg, log.With("component", "sim"))
		})
		a.onClose(func() { _ = ln.Close() }) // no-op once Serve owns it
		base := "http://" + ln.Addr().String()
		log.Warn("SIMULATED MODEL: no Anthropic API key is configured, answers come from agentd's built-in Claude API simulator, not from Claude; set ANTHROPIC_API_KEY (providers.anthropic.api_key) for real answers",
			"simulator", base, "simulate", an.Simulate)
		client = anthropic.New(anthropic.Config{BaseURL: base, RequestTimeout: an.RequestTimeout, H2C: true})
		pcfg.Keys.Sources = []resilience.KeySourceConfig{{Value: simKey}}
	} else {
		client = anthropic.New(anthropic.Config{BaseURL: an.BaseURL, RequestTimeout: an.RequestTimeout, H2C: an.H2C})
		if k := an.APIKey.Value(); k != "" {
			pcfg.Keys.Sources = append([]resilience.KeySourceConfig{{Value: k}}, pcfg.Keys.Sources...)
		}
	}
	rm := resilience.NewMetrics(a.metrics.Registry)
	provider, err := resilience.NewProvider(a.bg, pcfg, client, rm, log.With("component", "keys"))
	if err != nil {
		return nil, fmt.Errorf("providers.anthropic: %w", err)
	}
	a.addLoop("keypool", provider.Run)
	// One cache for all agents: memory, in front of Redis when configured
	// (shared by the cluster; one circuit around Redis).
	var cache resilience.Cache = resilience.NewMemoryCache(resilience.MemoryCacheConfig{MaxEntries: cfg.Cache.MaxEntries, MaxBytes: cfg.Cache.MaxBytes})
	if a.redis != nil {
		cache = resilience.NewLayeredCache(cache, resilience.NewRedisCache(a.redis, resilience.RedisCacheConfig{}, rm, log.With("component", "redis-cache")))
	}
	for i, ac := range cfg.Agents {
		if ac.Runtime != nil {
			continue // a hosted program calls models through the gateway
		}
		m, err := resilience.Build(resilience.NewAgentConfig(ac), provider, cache, rm, log)
		if err != nil {
			return nil, fmt.Errorf("agents[%d]: %w", i, err)
		}
		agents[ac.Name].Client = m
	}
	a.managedModels = &managedModels{provider: provider, metrics: rm, log: log}
	return provider, nil
}

// buildAgents returns the loop's agents, with their tools from the tool
// set, and their public descriptions.
func buildAgents(cfg *config.Config, tools *toolset.Set) (map[string]*agentrun.ChatAgent, []server.AgentInfo) {
	agents := make(map[string]*agentrun.ChatAgent, len(cfg.Agents))
	infos := make([]server.AgentInfo, 0, len(cfg.Agents))
	for _, a := range cfg.Agents {
		ca := &agentrun.ChatAgent{
			Agent: agentrun.Agent{
				Name: a.Name, Model: a.Model, System: a.System,
				MaxSteps: a.MaxSteps, MaxTokens: a.MaxTokens, Timeout: a.Timeout, MaxCostUSD: a.MaxCostUSD,
				Tools: tools.Tools(a.Name), ToolTimeout: tools.ToolTimeout(a.Name), FallbackModels: a.FallbackModels,
				Approval: agentrun.ApprovalPolicy{
					Tools: approvalTools(a, tools.Infos(a.Name)), Timeout: a.ApprovalTimeout,
					FailOnTimeout: a.OnApprovalTimeout == config.OnApprovalTimeoutFail,
				},
			},
			MaxMessages:            a.MaxMessages,
			EnqueueWhenUnavailable: a.OnUnavailable == config.OnUnavailableEnqueue,
			ConcurrencyPolicy:      agentrun.Policy(a.ConcurrencyPolicy),
		}
		info := server.AgentInfo{Name: a.Name, Model: a.Model, Tools: []server.ToolInfo{}}
		for _, ti := range tools.Infos(a.Name) {
			src := ti.Source
			if ti.Server != "" {
				src += ":" + ti.Server // "mcp:demo"
			}
			info.Tools = append(info.Tools, server.ToolInfo{Name: ti.Name, Description: ti.Description, Source: src})
		}
		if rt := a.Runtime; rt != nil {
			// A hosted agent program (docs/agent-sdk.md).
			ca.Runtime = agentrun.NewRuntime(rt.Command, rt.Dir, rt.Env, rt.MaxConcurrent, rt.KillGrace, int64(rt.MemoryMax))
			ca.Timeout = rt.Timeout
			ca.Tools = nil
		}
		agents[a.Name] = ca
		infos = append(infos, info)
	}
	return agents, infos
}

// approvalTools are the tools whose calls wait for a person's decision:
// agents[].approval_required, and the agent's tools that ask for it
// themselves (tools.http[].approval, tools.mcp_servers[].approval_tools).
func approvalTools(a config.Agent, infos []toolset.Info) []string {
	out := slices.Clone(a.ApprovalRequired)
	for _, ti := range infos {
		if ti.ApprovalRequired {
			out = append(out, ti.Name)
		}
	}
	return out
}

// pricingTable is the shipped model prices with the configuration's
// overrides (pricing.models).
func pricingTable(cfg *config.Config, log *slog.Logger) *cost.Table {
	overrides := make(map[string]cost.Price, len(cfg.Pricing.Models))
	for id, p := range cfg.Pricing.Models {
		overrides[id] = cost.Price{Input: p.Input, Output: p.Output, CacheWrite: p.CacheWrite, CacheRead: p.CacheRead}
	}
	return cost.New(overrides, log.With("component", "pricing"))
}

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

// buildAbuse returns the abuse detector of cfg.Abuse; nil when it is off.
// Counters are this instance's; throttles are shared through rc when there
// is one (run the detector's Run to sync them).
func buildAbuse(cfg *config.Config, rc *storeredis.Client, metrics *observe.Metrics, log *slog.Logger) *abuse.Detector {
	a := cfg.Abuse
	if !a.Enabled {
		return nil
	}
	log.Info("abuse detection on", "window", a.Window.String(), "baseline", a.Baseline.String(), "multiple", a.Multiple,
		"min_requests_per_minute", a.MinRequestsPerMinute, "min_spend_usd_per_minute", a.MinSpendUSDPerMinute,
		"throttle_for", a.ThrottleFor.String(), "webhook", a.WebhookURL.Value() != "", "shared_throttles", rc != nil)
	c := abuse.Config{
		Window: a.Window, Baseline: a.Baseline, Multiple: a.Multiple,
		MinRequests: a.MinRequestsPerMinute, MinSpendUSD: a.MinSpendUSDPerMinute, ThrottleFor: a.ThrottleFor,
		WebhookURL: a.WebhookURL.Value(), WebhookTimeout: a.WebhookTimeout,
		Metrics: abuse.NewMetrics(metrics.Registry), Log: log.With("component", "abuse"),
	}
	if rc != nil {
		c.Shared = abuseredis.New(rc.Raw(), "")
	}
	return abuse.New(c)
}

// buildRateLimiter returns the rate limiter of cfg.RateLimits, cluster-wide
// through rc when there is one; nil when no limit is set.
func buildRateLimiter(cfg *config.Config, rc *storeredis.Client, metrics *observe.Metrics, log *slog.Logger) *ratelimit.Limiter {
	limits := func(l config.RateLimit) ratelimit.Limits {
		return ratelimit.Limits{RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute}
	}
	r := cfg.RateLimits
	c := ratelimit.Config{Key: limits(r.Key), Tenant: limits(r.Tenant), Tenants: map[string]ratelimit.Limits{}}
	for name, l := range r.Tenants {
		c.Tenants[name] = limits(l)
	}
	if !c.Enabled() {
		return nil
	}
	if rc != nil {
		c.Redis = rc.Raw()
	}
	c.Metrics = ratelimit.NewMetrics(metrics.Registry)
	c.Log = log.With("component", "ratelimit")
	log.Info("rate limits on", "cluster_wide", rc != nil, "key", r.Key, "tenant", r.Tenant, "tenant_overrides", len(r.Tenants))
	return ratelimit.New(c)
}
