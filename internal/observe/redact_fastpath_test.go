package observe

import "testing"

// The fast path must never skip a string the patterns would change.
func TestScrubFastPathMatchesThePatterns(t *testing.T) {
	slow := func(s string) string {
		for _, p := range secretPatterns {
			s = p.re.ReplaceAllString(s, p.repl)
		}
		return s
	}
	for _, s := range []string{
		"", "plain words", "Authorization: Bearer abc.def-ghi", "bEaReR tok123", "xbearer y", "bear",
		"B", "b", "BEARER\tzzz", "key sk-ant-api03-abc_DEF-1", "sk-ant-", "agd_ABCDEFGHIJKLMNOPQRSTUV",
		"agd_short", "prefix bbbbearer  t0k", "no secrets here at all: request_id=req_123",
	} {
		var r *Redactor
		if got, want := r.Scrub(s), slow(s); got != want {
			t.Errorf("Scrub(%q) = %q, the patterns give %q", s, got, want)
		}
		if got, want := r.dirty(s), slow(s) != s; got != want {
			t.Errorf("dirty(%q) = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkScrubCleanString(b *testing.B) {
	r := NewRedactor("a-configured-secret-value")
	for b.Loop() {
		_ = r.Scrub("claude-sonnet-4-5 answered in 1.23 ms for tenant acme, request req_0123456789abcdef")
	}
}
