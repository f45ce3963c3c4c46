package tool

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Secrets are named secret values. Config references them as
// {{secret:NAME}} in tool URLs, headers and MCP server environments; their
// values are substituted only when a request is made, and Scrub removes them
// from anything a tool returns before it enters the conversation. The model
// never sees a value.
type Secrets struct {
	values map[string]string
	// forms are every value in the encodings it may come back in, longest
	// first, with the name that replaces it.
	forms []secretForm
}

type secretForm struct{ value, name string }

// minScrubLen: shorter values are not scrubbed (a one-letter "secret" would
// mangle every output); config should not hold such secrets anyway.
const minScrubLen = 4

// NewSecrets returns the secrets of values (name → value).
func NewSecrets(values map[string]string) *Secrets {
	s := &Secrets{values: make(map[string]string, len(values))}
	seen := map[string]bool{}
	for name, v := range values {
		s.values[name] = v
		if len(v) < minScrubLen {
			continue
		}
		for _, f := range []string{v, url.QueryEscape(v), url.PathEscape(v), strings.ReplaceAll(v, "\"", "\\\"")} {
			if !seen[f] {
				seen[f] = true
				s.forms = append(s.forms, secretForm{f, name})
			}
		}
	}
	sort.Slice(s.forms, func(i, j int) bool {
		if len(s.forms[i].value) != len(s.forms[j].value) {
			return len(s.forms[i].value) > len(s.forms[j].value)
		}
		return s.forms[i].value < s.forms[j].value
	})
	return s
}

// Has reports whether name is a known secret.
func (s *Secrets) Has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.values[name]
	return ok
}

// Names returns the secret names, sorted.
func (s *Secrets) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// MaxLen is the length of the longest scrubbed form of a value.
func (s *Secrets) MaxLen() int {
	if s == nil || len(s.forms) == 0 {
		return 0
	}
	return len(s.forms[0].value)
}

// Scrub replaces every secret value in text with "[secret:NAME]".
func (s *Secrets) Scrub(text string) string {
	if s == nil {
		return text
	}
	for _, f := range s.forms {
		if strings.Contains(text, f.value) {
			text = strings.ReplaceAll(text, f.value, "[secret:"+f.name+"]")
		}
	}
	return text
}

// Expand replaces {{secret:NAME}} in template with the secret's value,
// passed through escape (nil: as is). An unknown name is an error.
func (s *Secrets) Expand(template string, escape func(string) string) (string, error) {
	return ExpandTemplate(template, func(ref string) (string, bool, error) {
		name, ok := strings.CutPrefix(ref, "secret:")
		if !ok {
			return "", false, nil
		}
		if !s.Has(name) {
			return "", true, fmt.Errorf("unknown secret %q", name)
		}
		v := s.values[name]
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
