package config

// Authentication modes (auth.mode).
const (
	// AuthKeys: every API request needs an API key (agentd keys create);
	// each key belongs to a tenant.
	AuthKeys = "keys"
	// AuthNone: no authentication; everything belongs to the tenant
	// "default". Only for a demo on localhost; logged as a warning.
	AuthNone = "none"
	// DefaultAuthMode is auth.mode's default.
	DefaultAuthMode = AuthKeys
)

// Auth is client authentication (docs/security.md).
type Auth struct {
	// Mode is "keys" (API keys mapped to tenants) or "none" (no
	// authentication, one tenant "default"; must be set explicitly).
	// Defaults to "keys".
	Mode string `yaml:"mode"`
}

// validateAuth checks the auth section.
func (c *Config) validateAuth(v *validator) {
	v.oneOf("auth.mode", c.Auth.Mode, []string{AuthKeys, AuthNone})
}
