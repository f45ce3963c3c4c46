package config

import (
	"encoding/base64"
	"strings"
)

// ManagedAgents configures the Managed Agents face (docs/managed-agents.md).
type ManagedAgents struct {
	// WebhookURL receives the sessions' webhooks (session.status_idled,
	// session.status_terminated, session.budget_reached) as signed JSON
	// POSTs, queued and retried like run webhooks. A secret: it often
	// carries a token. Defaults to empty (no webhooks).
	WebhookURL Secret `yaml:"webhook_url"`
	// WebhookSigningKey signs them (Standard Webhooks, what the SDKs'
	// webhooks.unwrap verifies): "whsec_" and the base64 of at least 16
	// random bytes. Required with webhook_url.
	WebhookSigningKey Secret `yaml:"webhook_signing_key"`
}

// validateManaged checks the managed_agents section.
func (c *Config) validateManaged(v *validator) {
	m := c.ManagedAgents
	url, key := m.WebhookURL.Value(), m.WebhookSigningKey.Value()
	if url != "" && !isHTTPURL(url) {
		v.add("managed.webhook_url", "must be an absolute http:// or https:// URL") // not shown: it may carry a token
	}
	switch {
	case url != "" && key == "":
		v.add("managed.webhook_signing_key", "required with managed.webhook_url")
	case key != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whsec_"))
		if err != nil || !strings.HasPrefix(key, "whsec_") || len(b) < 16 {
			v.add("managed.webhook_signing_key", `want "whsec_" followed by the base64 of at least 16 random bytes`)
		}
	}
}
