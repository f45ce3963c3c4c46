package main

import (
	"log/slog"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/ratelimit"
	storeredis "github.com/agentd/agentd/internal/redis"
)

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
