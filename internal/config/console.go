package config

import "time"

// Defaults of the operator console.
const (
	DefaultConsoleSessionTTL     = 12 * time.Hour
	DefaultConsoleSampleInterval = 10 * time.Second
)

// Console is the operator console served at /console (docs/console.md).
type Console struct {
	// Disabled turns the console off (its routes answer 404). Defaults to
	// false: the console is served wherever the API is.
	Disabled bool `yaml:"disabled"`
	// SessionTTL is how long a console login lasts. Defaults to 12h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// SessionSecret signs the console's session cookies. Set the same
	// value on every API instance behind one address, so that a login on
	// one is a login on all. Defaults to empty: each process draws a
	// random secret, and a session holds on its own instance only (and
	// ends with a restart).
	SessionSecret Secret `yaml:"session_secret"`
	// SampleInterval is how often the overview's charts sample this
	// process's counters (one hour of samples is kept in memory).
	// Defaults to 10s.
	SampleInterval time.Duration `yaml:"sample_interval"`
}

func (c *Console) applyDefaults() {
	setDefault(&c.SessionTTL, DefaultConsoleSessionTTL)
	setDefault(&c.SampleInterval, DefaultConsoleSampleInterval)
}

func (c Console) validate(v *validator) {
	v.positive("console.session_ttl", c.SessionTTL)
	if n := len(c.SessionSecret.Value()); n > 0 && n < 32 {
		v.add("console.session_secret", "must be at least 32 characters (or empty: a random secret per process)")
	}
	if c.SampleInterval < time.Second {
		v.add("console.sample_interval", "must be >= 1s")
	}
}
