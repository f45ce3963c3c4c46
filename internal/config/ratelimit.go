package config

import (
	"maps"
	"slices"
)

// RateLimits are the per-minute limits of API keys and tenants
// (docs/security.md). Every limit defaults to 0: no limit.
type RateLimits struct {
	// Key applies to every API key. Defaults to no limits.
	Key RateLimit `yaml:"key"`
	// Tenant applies to every tenant (with auth.mode none: the tenant
	// "default") not listed in Tenants. Defaults to no limits.
	Tenant RateLimit `yaml:"tenant"`
	// Tenants replace Tenant for the tenants they name; an entry is taken
	// whole (a limit left out is no limit). A map: file only. Defaults to
	// none.
	Tenants map[string]RateLimit `yaml:"tenants,omitempty"`
}

// RateLimit are the limits of one key or tenant; 0 is no limit.
type RateLimit struct {
	// RequestsPerMinute limits API requests (a burst of one minute's
	// worth, refilled continuously). Defaults to 0: no limit.
	RequestsPerMinute int64 `yaml:"requests_per_minute"`
	// TokensPerMinute limits model tokens (input, output and cache
	// writes), checked before each model call and debited after it.
	// Defaults to 0: no limit.
	TokensPerMinute int64 `yaml:"tokens_per_minute"`
}

// validateRateLimits checks the rate_limits section.
func (c *Config) validateRateLimits(v *validator) {
	check := func(path string, l RateLimit) {
		atLeast(v, path+".requests_per_minute", l.RequestsPerMinute, 0, "must be >= 0 (0: no limit)")
		atLeast(v, path+".tokens_per_minute", l.TokensPerMinute, 0, "must be >= 0 (0: no limit)")
	}
	r := c.RateLimits
	check("rate_limits.key", r.Key)
	check("rate_limits.tenant", r.Tenant)
	for _, name := range slices.Sorted(maps.Keys(r.Tenants)) {
		l := r.Tenants[name]
		if name == "" {
			v.add("rate_limits.tenants", "a tenant name must not be empty")
		}
		check("rate_limits.tenants."+name, l)
	}
}
