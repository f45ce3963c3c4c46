// Package godebug stands in for the standard library's internal/godebug in
// agentd's copy of html/template: a setting's value is read from the
// GODEBUG environment variable once (the newest default when unset).
package godebug

import (
	"os"
	"strings"
	"sync"
)

// Setting is one GODEBUG setting.
type Setting struct {
	name  string
	once  sync.Once
	value string
}

// New returns the setting name.
func New(name string) *Setting { return &Setting{name: strings.TrimPrefix(name, "#")} }

// Name returns the setting's name.
func (s *Setting) Name() string { return s.name }

// Value returns the setting's value in GODEBUG ("" when not set).
func (s *Setting) Value() string {
	s.once.Do(func() {
		for kv := range strings.SplitSeq(os.Getenv("GODEBUG"), ",") {
			if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == s.name {
				s.value = v // the last one wins, as in the runtime
			}
		}
	})
	return s.value
}

// IncNonDefault does nothing (the runtime/metrics counter of the standard
// library is not kept).
func (s *Setting) IncNonDefault() {}
