package breaker

import "github.com/agentd/agentd/internal/config"

// FromConfig is the Config of one breaker section of agentd's config file
// (count_rate_limits, the model breakers' own, is not part of it).
func FromConfig(b config.Breaker) Config {
	return Config{
		Disabled: b.Disabled, ConsecutiveFailures: uint32(max(b.ConsecutiveFailures, 0)), FailureRatio: b.FailureRatio,
		MinRequests: uint32(max(b.MinRequests, 0)), Window: b.Window, OpenTimeout: b.OpenTimeout,
		HalfOpenProbes: uint32(max(b.HalfOpenProbes, 0)),
	}
}

// OptionsFromConfig is the Options of the breakers section: its defaults
// and overrides (Registerer and Log are the caller's).
func OptionsFromConfig(c config.Breakers) Options {
	o := Options{Defaults: FromConfig(c.Defaults), Overrides: make(map[string]Config, len(c.Overrides))}
	for name, b := range c.Overrides {
		o.Overrides[name] = FromConfig(b)
	}
	return o
}
