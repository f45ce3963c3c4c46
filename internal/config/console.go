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
	if c.SampleInterval < time.Second {
		v.add("console.sample_interval", "must be >= 1s")
	}
}
