package breaker

import (
	"time"

	"github.com/agentd/agentd/internal/config"
)

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
	o := Options{Defaults: FromConfig(c.Defaults), Overrides: make(map[string]Config, len(c.Overrides)+1)}
	for name, b := range c.Overrides {
		o.Overrides[name] = FromConfig(b)
	}
	// The store probes again after StoreOpenTimeout, not the defaults'
	// open_timeout: every request needs it, a probe costs one query, and
	// service must be back within seconds of the database (agentd chaos
	// r3-postgres).
	if st := o.Overrides[Store]; st.OpenTimeout == 0 {
		st.OpenTimeout = StoreOpenTimeout
		o.Overrides[Store] = st
	}
	return o
}

// StoreOpenTimeout is the store breaker's open_timeout unless
// breakers.overrides.store sets one.
const StoreOpenTimeout = 2 * time.Second
