package run

import (
	"errors"
	"slices"
	"strings"
)

// ErrSecretInMessage refuses a message that contains a configured secret
// value (MessageGuard in refuse mode).
var ErrSecretInMessage = errors.New("the message contains a configured secret value; it was not stored or sent to the model")

// Redacted replaces a secret value in a scrubbed message.
const Redacted = "[REDACTED]"

// MessageGuard keeps configured secret values (tool secrets, API keys, the
// admin token) out of what reaches the model: a chat or run message that
// contains one is refused or scrubbed before it is stored or sent. A nil
// guard lets everything through.
type MessageGuard struct {
	// Scrub replaces the values instead of refusing the message.
	Scrub   bool
	secrets []string // longest first
}

// NewMessageGuard returns a guard of secrets; values shorter than minLen
// are ignored (as in the log redaction: too short to tell apart from
// ordinary text).
func NewMessageGuard(scrub bool, minLen int, secrets ...string) *MessageGuard {
	g := &MessageGuard{Scrub: scrub}
	for _, s := range secrets {
		if len(s) >= minLen && !slices.Contains(g.secrets, s) {
			g.secrets = append(g.secrets, s)
		}
	}
	slices.SortFunc(g.secrets, func(a, b string) int { return len(b) - len(a) })
	return g
}

// Check returns msg, scrubbed in scrub mode, or ErrSecretInMessage.
func (g *MessageGuard) Check(msg string) (string, error) {
	if g == nil {
		return msg, nil
	}
	for _, s := range g.secrets {
		if !strings.Contains(msg, s) {
			continue
		}
		if !g.Scrub {
			return "", ErrSecretInMessage
		}
		msg = strings.ReplaceAll(msg, s, Redacted)
	}
	return msg, nil
}
