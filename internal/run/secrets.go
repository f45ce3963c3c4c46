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
	Scrub bool
	// Dynamic, when set, returns more secret values at each check (the
	// provider's key pool, whose keys rotate).
	Dynamic func() []string
	minLen  int
	secrets []string
}

// NewMessageGuard returns a guard of secrets; values shorter than minLen
// are ignored (as in the log redaction: too short to tell apart from
// ordinary text).
func NewMessageGuard(scrub bool, minLen int, secrets ...string) *MessageGuard {
	g := &MessageGuard{Scrub: scrub, minLen: minLen}
	for _, s := range secrets {
		if len(s) >= minLen && !slices.Contains(g.secrets, s) {
			g.secrets = append(g.secrets, s)
		}
	}
	return g
}

// Check returns msg, scrubbed in scrub mode, or ErrSecretInMessage.
func (g *MessageGuard) Check(msg string) (string, error) {
	if g == nil {
		return msg, nil
	}
	secrets := g.secrets
	if g.Dynamic != nil {
		secrets = slices.Concat(secrets, g.Dynamic())
	}
	// Every occurrence of every secret, in the original message: masking
	// their union leaves nothing of two secrets that overlap.
	var spans [][2]int
	for _, s := range secrets {
		if len(s) < g.minLen {
			continue
		}
		for from := 0; ; {
			i := strings.Index(msg[from:], s)
			if i < 0 {
				break
			}
			spans = append(spans, [2]int{from + i, from + i + len(s)})
			from += i + 1
		}
	}
	if len(spans) == 0 {
		return msg, nil
	}
	if !g.Scrub {
		return "", ErrSecretInMessage
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out strings.Builder
	pos := 0
	for i := 0; i < len(spans); {
		start, end := spans[i][0], spans[i][1]
		for i++; i < len(spans) && spans[i][0] <= end; i++ {
			end = max(end, spans[i][1])
		}
		out.WriteString(msg[pos:start])
		out.WriteString(Redacted)
		pos = end
	}
	out.WriteString(msg[pos:])
	return out.String(), nil
}
