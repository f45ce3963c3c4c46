package config

import "time"

// Authentication modes (auth.mode).
const (
	// AuthKeys: every API request needs an API key (agentd keys create);
	// each key belongs to a tenant.
	AuthKeys = "keys"
	// AuthNone: no authentication; everything belongs to the tenant
	// "default". Only for a demo on localhost (refused on any other
	// address without Auth.AllowUnauthenticatedNetwork); logged as a warning.
	AuthNone = "none"
	// DefaultAuthMode is auth.mode's default.
	DefaultAuthMode = AuthKeys
)

// DefaultAuthCacheTTL is auth.cache_ttl's default: a revocation reaches
// every instance within a second, and a busy key costs each instance one
// store read a second instead of one per request.
const DefaultAuthCacheTTL = time.Second

// Auth is client authentication (docs/security.md).
type Auth struct {
	// Mode is "keys" (API keys mapped to tenants) or "none" (no
	// authentication, one tenant "default"; must be set explicitly).
	// Defaults to "keys".
	Mode string `yaml:"mode"`
	// CacheTTL, when > 0, lets each instance trust a key it found valid
	// for that long without looking it up again: less work per request, but
	// a revoked key keeps working up to CacheTTL on every instance.
	// Defaults to DefaultAuthCacheTTL (1s). Negative: no cache, every
	// request looks its key up and a revocation takes effect at once.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// AllowUnauthenticatedNetwork lets mode "none" listen on a server.addr
	// that is not loopback (see exposure.go). Defaults to false: agentd
	// refuses to start with mode "none" on such an address.
	AllowUnauthenticatedNetwork bool `yaml:"allow_unauthenticated_network"`
}

// validateAuth checks the auth section.
func (c *Config) validateAuth(v *validator) {
	v.oneOf("auth.mode", c.Auth.Mode, []string{AuthKeys, AuthNone})
	c.validateExposure(v)
}
