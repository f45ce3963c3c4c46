package config

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// DefaultGatewayMaxBodyBytes is gateway.max_body_bytes' default.
const DefaultGatewayMaxBodyBytes = 32 << 20

// Gateway is the Anthropic-compatible endpoint, POST /v1/messages
// (docs/gateway.md).
type Gateway struct {
	// Disabled turns the gateway's routes off. Defaults to false: the
	// gateway is served wherever the API is (its calls need an API key
	// with the chat scope when auth is on).
	Disabled bool `yaml:"disabled"`
	// Aliases map a model name clients send to the model called, e.g.
	// "claude-sonnet-latest: claude-sonnet-4-5". A map: file only.
	// Defaults to none.
	Aliases map[string]string `yaml:"aliases,omitempty"`
	// AllowModels lists the models (after aliases) a tenant not listed in
	// Tenants may call. A list: file only. Defaults to none: every model.
	AllowModels []string `yaml:"allow_models,omitempty"`
	// FallbackModels maps a model (after aliases) to the models tried in
	// order when it fails before answering (overload, outage, open
	// breaker). A map: file only. Defaults to none: a gateway call gets
	// exactly the model it asked for, or the provider's error.
	FallbackModels map[string][]string `yaml:"fallback_models,omitempty"`
	// Tenants replace AllowModels and FallbackModels for the tenants they
	// name, whole. A map: file only. Defaults to none.
	Tenants map[string]GatewayTenant `yaml:"tenants,omitempty"`
	// MaxBodyBytes caps request bodies (images travel inline); larger ones
	// get 413. Defaults to 32 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// LogBodies logs request bodies and non-streamed answers at debug
	// level (log.level must be debug too), through the log redaction.
	// Defaults to false: bodies are never logged.
	LogBodies bool `yaml:"log_bodies"`
}

// GatewayTenant is one tenant's gateway policy.
type GatewayTenant struct {
	// AllowModels as in Gateway; empty: every model.
	AllowModels []string `yaml:"allow_models,omitempty"`
	// FallbackModels as in Gateway; empty: none.
	FallbackModels map[string][]string `yaml:"fallback_models,omitempty"`
}

// validateGateway checks the gateway section.
func (c *Config) validateGateway(v *validator) {
	g := c.Gateway
	atLeast(v, "gateway.max_body_bytes", g.MaxBodyBytes, 0, "must be >= 1")
	for _, from := range slices.Sorted(maps.Keys(g.Aliases)) {
		if strings.TrimSpace(from) == "" || strings.TrimSpace(g.Aliases[from]) == "" {
			v.add("gateway.aliases."+from, "an alias and its model must not be empty")
		}
	}
	models := func(path string, ms []string) {
		for i, m := range ms {
			if strings.TrimSpace(m) == "" {
				v.add(path+"["+strconv.Itoa(i)+"]", "a model must not be empty")
			}
		}
	}
	fallbacks := func(path string, fb map[string][]string) {
		for _, m := range slices.Sorted(maps.Keys(fb)) {
			if strings.TrimSpace(m) == "" {
				v.add(path, "a model must not be empty")
			}
			models(path+"."+m, fb[m])
		}
	}
	models("gateway.allow_models", g.AllowModels)
	fallbacks("gateway.fallback_models", g.FallbackModels)
	for _, t := range slices.Sorted(maps.Keys(g.Tenants)) {
		if t == "" {
			v.add("gateway.tenants", "a tenant name must not be empty")
		}
		models("gateway.tenants."+t+".allow_models", g.Tenants[t].AllowModels)
		fallbacks("gateway.tenants."+t+".fallback_models", g.Tenants[t].FallbackModels)
	}
}
