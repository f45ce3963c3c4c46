package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/ratelimit"
)

// RateLimiter limits requests per API key and tenant (ratelimit.Limiter
// does).
type RateLimiter interface {
	// AllowRequest takes one request from tenant's and key's budgets (key
	// "" with authentication off).
	AllowRequest(ctx context.Context, tenant, key string) ratelimit.Decision
}

// allowRate runs the rate limits of an authenticated request: it sets the
// X-RateLimit-* headers and answers 429 when a limit is spent. Probes,
// metrics and the admin API are never limited.
func (s *Server) allowRate(w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	path := r.URL.Path
	if s.rateLimit == nil || p.Tenant == "" || openPaths[path] ||
		strings.HasPrefix(path, "/admin/") || strings.HasPrefix(path, "/debug/") {
		return true
	}
	d := s.rateLimit.AllowRequest(r.Context(), p.Tenant, p.KeyID)
	setRateHeaders(w.Header(), d)
	if d.Allowed {
		return true
	}
	s.writeError(w, r, rateLimited(d))
	return false
}

// setRateHeaders sets X-RateLimit-Limit (per minute), -Remaining and
// -Reset (seconds until the bucket is full) of d's bucket.
func setRateHeaders(h http.Header, d ratelimit.Decision) {
	if d.Limit == 0 {
		return
	}
	// The canonical names, set directly: Header.Set would canonicalize
	// X-RateLimit-* (an allocation each) on every request; the names on
	// the wire are the same.
	h["X-Ratelimit-Limit"] = []string{strconv.FormatInt(d.Limit, 10)}
	h["X-Ratelimit-Remaining"] = []string{strconv.FormatInt(d.Remaining, 10)}
	h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(ratelimit.Seconds(d.Reset), 10)}
}

// rateLimited is the 429 of a refusal.
func rateLimited(d ratelimit.Decision) *Error {
	return &Error{Status: http.StatusTooManyRequests, Type: "rate_limited",
		Message:    fmt.Sprintf("rate limit exceeded: %s %s per minute (%d); retry in %ds", d.Scope, d.Kind, d.Limit, ratelimit.Seconds(d.RetryAfter)),
		RetryAfter: int(max(1, ratelimit.Seconds(d.RetryAfter)))}
}
