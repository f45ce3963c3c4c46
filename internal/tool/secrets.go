package tool

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Secrets are named secret values. Config references them as
// {{secret:NAME}} in tool URLs, headers and MCP server environments; their
// values are substituted only when a request is made, and Scrub removes them
// from anything a tool returns before it enters the conversation. The model
// never sees a value.
//
// A value may be replaced while agentd runs (Rotate, driven by a
// SecretRefresher): readers on the call path (Expand, Scrub, Has) load one
// immutable snapshot atomically and never lock. A replaced value is still
// scrubbed until its grace period ends (Prune), since an output may echo
// the old credential for a while.
type Secrets struct {
	state atomic.Pointer[secretState]

	mu      sync.Mutex // serializes writers (Rotate, Prune)
	current map[string]string
	retired []retiredSecret
}

// secretState is one immutable snapshot of the secrets.
type secretState struct {
	values map[string]string // current values, by name
	// forms are every value (current and retired) in the encodings it may
	// come back in, longest first, with the name that replaces it.
	forms []secretForm
	// all are the current and retired values, for other redactors.
	all []string
}

type secretForm struct{ value, name string }

// retiredSecret is a replaced value, still scrubbed until until.
type retiredSecret struct {
	name, value string
	until       time.Time
}

// minScrubLen: shorter values are not scrubbed (a one-letter "secret" would
// mangle every output); config should not hold such secrets anyway.
const minScrubLen = 4

// NewSecrets returns the secrets of values (name → value).
func NewSecrets(values map[string]string) *Secrets {
	s := &Secrets{current: make(map[string]string, len(values))}
	for name, v := range values {
		s.current[name] = v
	}
	s.publish()
	return s
}

// publish stores a new snapshot of current and retired. Caller holds mu
// (or is the constructor).
func (s *Secrets) publish() {
	st := &secretState{values: make(map[string]string, len(s.current))}
	seen := map[string]bool{}
	add := func(name, v string) {
		if !slices.Contains(st.all, v) {
			st.all = append(st.all, v)
		}
		if len(v) < minScrubLen {
			return
		}
		for _, f := range []string{v, url.QueryEscape(v), url.PathEscape(v), strings.ReplaceAll(v, "\"", "\\\"")} {
			if !seen[f] {
				seen[f] = true
				st.forms = append(st.forms, secretForm{f, name})
			}
		}
	}
	for name, v := range s.current {
		st.values[name] = v
		add(name, v)
	}
	for _, r := range s.retired {
		add(r.name, r.value)
	}
	sort.Slice(st.forms, func(i, j int) bool {
		if len(st.forms[i].value) != len(st.forms[j].value) {
			return len(st.forms[i].value) > len(st.forms[j].value)
		}
		return st.forms[i].value < st.forms[j].value
	})
	sort.Strings(st.all)
	s.state.Store(st)
}

func (s *Secrets) load() *secretState {
	if s == nil {
		return nil
	}
	return s.state.Load()
}

// Rotate makes value the secret name's value from now on. The value it
// replaces is still scrubbed until now+grace. It reports whether the value
// changed; an unknown name is ignored (false).
func (s *Secrets) Rotate(name, value string, now time.Time, grace time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.current[name]
	if !ok || old == value {
		return false
	}
	// A value that comes back is current again, not retired; the one
	// replaced gets a fresh grace period (once).
	s.retired = slices.DeleteFunc(s.retired, func(r retiredSecret) bool {
		return r.name == name && (r.value == value || r.value == old)
	})
	if grace > 0 {
		s.retired = append(s.retired, retiredSecret{name: name, value: old, until: now.Add(grace)})
	}
	s.current[name] = value
	s.publish()
	return true
}

// Prune stops scrubbing the replaced values whose grace period is over at
// now. It reports whether any was dropped.
func (s *Secrets) Prune(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.retired)
	s.retired = slices.DeleteFunc(s.retired, func(r retiredSecret) bool { return !now.Before(r.until) })
	if len(s.retired) == n {
		return false
	}
	s.publish()
	return true
}

// Values returns every value Scrub hides: the current ones and those
// replaced less than their grace period ago, for the other redactors (log
// redaction, the message guard). Callers must never log them.
func (s *Secrets) Values() []string {
	st := s.load()
	if st == nil {
		return nil
	}
	return slices.Clone(st.all)
}

// Has reports whether name is a known secret.
func (s *Secrets) Has(name string) bool {
	st := s.load()
	if st == nil {
		return false
	}
	_, ok := st.values[name]
	return ok
}

// Names returns the secret names, sorted.
func (s *Secrets) Names() []string {
	st := s.load()
	if st == nil {
		return nil
	}
	names := make([]string, 0, len(st.values))
	for n := range st.values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// MaxLen is the length of the longest scrubbed form of a value.
func (s *Secrets) MaxLen() int {
	st := s.load()
	if st == nil || len(st.forms) == 0 {
		return 0
	}
	return len(st.forms[0].value)
}

// Scrub replaces every secret value in text with "[secret:NAME]": current
// values and, during their grace period, replaced ones.
func (s *Secrets) Scrub(text string) string {
	st := s.load()
	if st == nil {
		return text
	}
	for _, f := range st.forms {
		if strings.Contains(text, f.value) {
			text = strings.ReplaceAll(text, f.value, "[secret:"+f.name+"]")
		}
	}
	return text
}

// Expand replaces {{secret:NAME}} in template with the secret's value,
// passed through escape (nil: as is). An unknown name is an error.
func (s *Secrets) Expand(template string, escape func(string) string) (string, error) {
	st := s.load()
	if st == nil {
		st = &secretState{}
	}
	return ExpandTemplate(template, func(ref string) (string, bool, error) {
		name, ok := strings.CutPrefix(ref, "secret:")
		if !ok {
			return "", false, nil
		}
		v, ok := st.values[name]
		if !ok {
			return "", true, fmt.Errorf("unknown secret %q", name)
		}
		if escape != nil {
			v = escape(v)
		}
		return v, true, nil
	})
}

// ExpandTemplate replaces each {{REF}} in template with what resolve returns
// for REF (trimmed). resolve reports handled=false to leave {{REF}} as it is.
func ExpandTemplate(template string, resolve func(ref string) (value string, handled bool, err error)) (string, error) {
	if !strings.Contains(template, "{{") {
		return template, nil
	}
	var b strings.Builder
	rest := template
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		end := strings.Index(rest[i+2:], "}}")
		if end < 0 {
			return "", fmt.Errorf("unterminated {{ in %q", template)
		}
		ref := strings.TrimSpace(rest[i+2 : i+2+end])
		v, handled, err := resolve(ref)
		if err != nil {
			return "", err
		}
		b.WriteString(rest[:i])
		if handled {
			b.WriteString(v)
		} else {
			b.WriteString(rest[i : i+2+end+2])
		}
		rest = rest[i+2+end+2:]
	}
}

// TemplateRefs returns the {{REF}}s of template, trimmed, in order.
func TemplateRefs(template string) ([]string, error) {
	var refs []string
	_, err := ExpandTemplate(template, func(ref string) (string, bool, error) {
		refs = append(refs, ref)
		return "", false, nil
	})
	return refs, err
}
