package observe

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// RedactMask replaces every secret the Redactor finds.
const RedactMask = "[redacted]"

// MinSecretLen is the shortest configured value the Redactor scrubs: a
// shorter one would mangle ordinary words. Key patterns apply regardless.
const MinSecretLen = 6

// secretPatterns match credentials whatever their value: Anthropic API
// keys, bearer tokens and full agentd client keys ("agd_" and 52 base32
// characters; the 8-character display prefix logged as key_prefix is
// left alone).
var secretPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`sk-ant-[A-Za-z0-9_\-]+`), RedactMask},
	{regexp.MustCompile(`(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*`), "$1 " + RedactMask},
	{regexp.MustCompile(`agd_[A-Za-z0-9]{16,}`), RedactMask},
}

// Redactor scrubs secret values and credential-shaped strings from text.
// The zero value (and nil) scrubs the patterns only.
type Redactor struct {
	secrets []string // longest first, so that a secret containing another goes whole
	// withExtra, once SetExtra was called, is secrets and the extra
	// values, longest first.
	withExtra atomic.Pointer[[]string]
}

// SetExtra replaces the values scrubbed besides NewRedactor's: rotated
// secrets (tool secrets re-read from their files). Empty and shorter than
// MinSecretLen ones are ignored. Safe to call while the Redactor is used.
func (r *Redactor) SetExtra(secrets []string) {
	all := slices.Clone(r.secrets)
	for _, s := range secrets {
		if len(s) >= MinSecretLen && !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	slices.SortStableFunc(all, func(a, b string) int { return len(b) - len(a) })
	r.withExtra.Store(&all)
}

// NewRedactor returns a Redactor of the given secret values; empty and
// shorter than MinSecretLen ones are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if len(s) >= MinSecretLen && !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
	return r
}

// all returns the configured and the extra secrets.
func (r *Redactor) all() []string {
	if p := r.withExtra.Load(); p != nil {
		return *p
	}
	return r.secrets
}

// Scrub returns s with every secret and credential pattern replaced.
func (r *Redactor) Scrub(s string) string {
	if r != nil {
		for _, sec := range r.all() {
			if strings.Contains(s, sec) {
				s = strings.ReplaceAll(s, sec, RedactMask)
			}
		}
	}
	if mayMatchPattern(s) {
		for _, p := range secretPatterns {
			s = p.re.ReplaceAllString(s, p.repl)
		}
	}
	return s
}

// mayMatchPattern is a cheap test that s cannot match any of
// secretPatterns (false), so that the regular expressions run only on the
// few strings that hold one of their literal parts: every log attribute
// goes through Scrub.
func mayMatchPattern(s string) bool {
	if strings.Contains(s, "sk-ant-") || strings.Contains(s, "agd_") {
		return true
	}
	for i := strings.IndexAny(s, "bB"); i >= 0 && i+6 <= len(s); {
		if strings.EqualFold(s[i:i+6], "bearer") {
			return true
		}
		j := strings.IndexAny(s[i+1:], "bB")
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// dirty reports whether s holds something Scrub would replace.
func (r *Redactor) dirty(s string) bool {
	if r != nil {
		for _, sec := range r.all() {
			if strings.Contains(s, sec) {
				return true
			}
		}
	}
	return mayMatchPattern(s) && r.Scrub(s) != s
}

// Value returns v with secrets scrubbed: strings directly, groups member
// by member, LogValuers once resolved, errors as their (scrubbed) message.
// Other values are rendered the ways the JSON and text handlers would
// render them (JSON, TextMarshaler, %+v); when any rendering holds a
// secret, the value is replaced by its scrubbed rendering, else it is
// left as it is.
func (r *Redactor) Value(v slog.Value) slog.Value {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); r.dirty(s) {
			return slog.StringValue(r.Scrub(s))
		}
		return v
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]slog.Attr, len(attrs))
		for i, a := range attrs {
			out[i] = r.Attr(a)
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		return r.anyValue(v.Any())
	default: // numbers, bools, times, durations
		return v
	}
}

func (r *Redactor) anyValue(x any) slog.Value {
	switch x := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case error:
		return slog.StringValue(r.Scrub(x.Error()))
	case []byte:
		if r.dirty(string(x)) {
			return slog.StringValue(r.Scrub(string(x)))
		}
		return slog.AnyValue(x)
	}
	var renderings []string
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as slog's JSON handler
	jsonOK := enc.Encode(x) == nil
	if jsonOK {
		renderings = append(renderings, strings.TrimSuffix(buf.String(), "\n"))
	}
	if tm, ok := x.(encoding.TextMarshaler); ok {
		if b, err := tm.MarshalText(); err == nil {
			renderings = append(renderings, string(b))
		}
	}
	if s, ok := x.(fmt.Stringer); ok {
		renderings = append(renderings, s.String())
	}
	renderings = append(renderings, fmt.Sprintf("%+v", x))
	for _, s := range renderings {
		if r.dirty(s) {
			if jsonOK {
				return slog.StringValue(r.Scrub(renderings[0]))
			}
			return slog.StringValue(r.Scrub(s))
		}
	}
	return slog.AnyValue(x)
}

// Attr returns a with its key and value scrubbed.
func (r *Redactor) Attr(a slog.Attr) slog.Attr {
	return slog.Attr{Key: r.Scrub(a.Key), Value: r.Value(a.Value)}
}

// RedactHandler scrubs every record's message and attributes (also those
// added with WithAttrs, and in groups) before its inner handler sees them.
type RedactHandler struct {
	inner slog.Handler
	r     *Redactor
}

// NewRedactHandler wraps h; r may be nil (patterns only).
func NewRedactHandler(h slog.Handler, r *Redactor) *RedactHandler {
	return &RedactHandler{inner: h, r: r}
}

// Enabled implements slog.Handler.
func (h *RedactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *RedactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Scrub(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.r.Attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h *RedactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.r.Attr(a)
	}
	return &RedactHandler{inner: h.inner.WithAttrs(out), r: h.r}
}

// WithGroup implements slog.Handler.
func (h *RedactHandler) WithGroup(name string) slog.Handler {
	return &RedactHandler{inner: h.inner.WithGroup(h.r.Scrub(name)), r: h.r}
}
