package resilience

import (
	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/config"
)

// The config-facing constructors. The convention for every package with a
// section in agentd's config file (budget, toolset, resilience): the
// package takes its section as config declares it and translates it
// itself, so the wiring in internal/app passes sections unchanged and
// never copies fields one by one. The package's own types (ProviderConfig,
// AgentConfig) stay for tests and embedding.

// NewProviderConfig is the provider configuration of providers.<name>
// (without the api_key, which the caller puts first in Keys.Sources when
// set, nor a simulator).
func NewProviderConfig(name string, a config.Anthropic) ProviderConfig {
	b := a.Breaker
	pc := ProviderConfig{
		Name:  name,
		Keys:  KeysConfig{Grace: a.Keys.Grace, PollInterval: a.Keys.PollInterval, CommandTimeout: a.Keys.CommandTimeout},
		Retry: RetryConfig{MaxAttempts: a.Retry.MaxAttempts, BaseDelay: a.Retry.BaseDelay, MaxDelay: a.Retry.MaxDelay},
		Breaker: BreakerConfig{Config: breaker.Config{
			Disabled: b.Disabled, ConsecutiveFailures: uint32(b.ConsecutiveFailures),
			FailureRatio: b.FailureRatio, MinRequests: uint32(b.MinRequests), Window: b.Window,
			OpenTimeout: b.OpenTimeout, HalfOpenProbes: uint32(b.HalfOpenProbes),
		}, CountRateLimits: b.CountRateLimits},
		Concurrency: ConcurrencyConfig{MaxInFlight: a.Concurrency.MaxInFlight, QueueSize: a.Concurrency.QueueSize},
	}
	for _, src := range a.Keys.Sources {
		pc.Keys.Sources = append(pc.Keys.Sources, KeySourceConfig{
			Value: src.Value.Value(), Env: src.Env, File: src.File, Command: src.Command, TTL: src.TTL,
		})
	}
	return pc
}

// NewAgentConfig is the model stack configuration of one agents[] entry.
func NewAgentConfig(a config.Agent) AgentConfig {
	c := a.Cache
	return AgentConfig{
		Name: a.Name, Model: a.Model, FallbackModels: a.FallbackModels,
		Cache: CacheConfig{
			Enabled: c.Enabled, TTL: c.TTL, StaleTTL: c.StaleTTL,
			ServeStaleOnError: c.ServeStaleOnError, CacheToolResults: c.CacheToolResults,
		},
	}
}
