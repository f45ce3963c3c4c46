package config

import (
	"fmt"
	"strings"
)

// What to do with a chat or run message that contains a configured secret
// value (Redaction.Messages).
const (
	MessageSecretsRefuse = "refuse"
	MessageSecretsScrub  = "scrub"
	MessageSecretsOff    = "off"
)

// DefaultMessageSecrets is redaction.messages' default.
const DefaultMessageSecrets = MessageSecretsRefuse

// minPromptSecretLen: shorter secret values are not looked for in system
// prompts (as in the log redaction, observe.MinSecretLen).
const minPromptSecretLen = 6

// Redaction keeps configured secret values away from the model
// (docs/security.md).
type Redaction struct {
	// Messages is what happens to a chat or run message that contains a
	// configured secret value (a tool secret, the provider's API key, the
	// admin token, ...): "refuse" (400 secret_in_message, nothing is
	// stored or sent), "scrub" (the value is replaced by [REDACTED] before
	// the message is stored or sent) or "off". Defaults to "refuse".
	Messages string `yaml:"messages"`
}

// validateRedaction checks the redaction section, and that no agent's
// system prompt contains a configured secret value (secrets are never
// interpolated into prompts).
func (c *Config) validateRedaction(v *validator) {
	v.oneOf("redaction.messages", c.Redaction.Messages, []string{MessageSecretsRefuse, MessageSecretsScrub, MessageSecretsOff})
	secrets := c.AllSecretValues()
	for i, a := range c.Agents {
		for _, s := range secrets {
			if len(s) >= minPromptSecretLen && strings.Contains(a.System, s) {
				v.add(fmt.Sprintf("agents[%d].system", i), "contains a configured secret value: secrets must never be part of a prompt (tools get them at call time, see docs/tools.md)")
				break
			}
		}
	}
}
