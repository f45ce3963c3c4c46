package config

import (
	"time"
)

// Defaults of the abuse section (docs/security.md#abuse-detection).
const (
	DefaultAbuseWindow         = time.Minute
	DefaultAbuseBaseline       = time.Hour
	DefaultAbuseMultiple       = 10.0
	DefaultAbuseMinRequests    = 10.0
	DefaultAbuseMinSpendUSD    = 0.10
	DefaultAbuseThrottleFor    = 15 * time.Minute
	DefaultAbuseWebhookTimeout = 5 * time.Second
)

// Abuse is abuse detection: an API key (with no key, a tenant) whose
// request rate or spend jumps past Multiple times its recent baseline is
// throttled for ThrottleFor and an alert is raised.
type Abuse struct {
	// Enabled turns abuse detection on. Defaults to false.
	Enabled bool `yaml:"enabled"`
	// Window is the short window whose rate is compared with the
	// baseline. Defaults to 1m.
	Window time.Duration `yaml:"window"`
	// Baseline is the period the baseline (an exponentially weighted
	// average of the windows) spans; at least window. Defaults to 1h.
	Baseline time.Duration `yaml:"baseline"`
	// Multiple is how many times its baseline a key's rate must exceed
	// to be flagged; > 1. Defaults to 10.
	Multiple float64 `yaml:"multiple"`
	// MinRequestsPerMinute is the least request baseline assumed, so that
	// a quiet or new key's first burst of normal use is not flagged.
	// Defaults to 10.
	MinRequestsPerMinute float64 `yaml:"min_requests_per_minute"`
	// MinSpendUSDPerMinute is the least spend baseline assumed, in USD per
	// minute. Defaults to 0.10.
	MinSpendUSDPerMinute float64 `yaml:"min_spend_usd_per_minute"`
	// ThrottleFor is how long a flagged key is refused (429
	// abuse_throttled). Defaults to 15m.
	ThrottleFor time.Duration `yaml:"throttle_for"`
	// WebhookURL receives each alert as a JSON POST (best effort, in the
	// background). A secret: it often carries a token. Defaults to empty
	// (no webhook).
	WebhookURL Secret `yaml:"webhook_url"`
	// WebhookTimeout bounds one webhook POST. Defaults to 5s.
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
}

// applyAbuseDefaults fills the abuse section's zero fields.
func (c *Config) applyAbuseDefaults() {
	a := &c.Abuse
	setDefault(&a.Window, DefaultAbuseWindow)
	setDefault(&a.Baseline, DefaultAbuseBaseline)
	setDefault(&a.Multiple, DefaultAbuseMultiple)
	setDefault(&a.MinRequestsPerMinute, DefaultAbuseMinRequests)
	setDefault(&a.MinSpendUSDPerMinute, DefaultAbuseMinSpendUSD)
	setDefault(&a.ThrottleFor, DefaultAbuseThrottleFor)
	setDefault(&a.WebhookTimeout, DefaultAbuseWebhookTimeout)
}

// validateAbuse checks the abuse section (also when it is off: a bad value
// should not wait until someone turns it on).
func (c *Config) validateAbuse(v *validator) {
	a := c.Abuse
	v.positive("abuse.window", a.Window)
	v.positive("abuse.baseline", a.Baseline)
	if a.Window > 0 && a.Baseline > 0 && a.Baseline < a.Window {
		v.add("abuse.baseline", "must be >= abuse.window")
	}
	if a.Multiple <= 1 {
		v.add("abuse.multiple", "must be > 1")
	}
	if a.MinRequestsPerMinute <= 0 {
		v.add("abuse.min_requests_per_minute", "must be > 0")
	}
	if a.MinSpendUSDPerMinute <= 0 {
		v.add("abuse.min_spend_usd_per_minute", "must be > 0")
	}
	v.positive("abuse.throttle_for", a.ThrottleFor)
	v.positive("abuse.webhook_timeout", a.WebhookTimeout)
	if s := a.WebhookURL.Value(); s != "" {
		if !isHTTPURL(s) {
			// The URL is not shown: it may carry a token.
			v.add("abuse.webhook_url", "must be an absolute http:// or https:// URL")
		}
	}
}
