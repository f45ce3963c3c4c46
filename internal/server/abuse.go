package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/ratelimit"
)

// AbuseGuard throttles API keys whose request rate jumps past their
// baseline (abuse.Detector does).
type AbuseGuard interface {
	// Allow counts one request of tenant's key (key "" with
	// authentication off) and reports whether it may pass.
	Allow(ctx context.Context, tenant, key string) abuse.Decision
	// Throttled lists the keys (and tenants) throttled now.
	Throttled() []abuse.Throttle
	// Lift ends the throttle of a key id or "tenant:<name>"; false when
	// there is none.
	Lift(ctx context.Context, id string) bool
}

// allowAbuse runs abuse detection on a request that passed the rate
// limits: it answers 429 abuse_throttled when the key (or its tenant) is
// throttled or this request makes its rate jump. Like the rate limits, it
// leaves probes, metrics and the admin API alone.
func (s *Server) allowAbuse(w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	path := r.URL.Path
	if s.abuse == nil || p.Tenant == "" || openPaths[path] ||
		strings.HasPrefix(path, "/admin/") || strings.HasPrefix(path, "/debug/") {
		return true
	}
	d := s.abuse.Allow(r.Context(), p.Tenant, p.KeyID)
	if d.Allowed {
		return true
	}
	who := "this API key"
	if d.Throttle.KeyID == "" {
		who = "this tenant"
	}
	s.writeError(w, r, &Error{Status: http.StatusTooManyRequests, Type: "abuse_throttled",
		Message: fmt.Sprintf("%s is throttled: its %s rate jumped far above its usual level; retry in %ds or ask the operator",
			who, d.Throttle.Signal, ratelimit.Seconds(d.RetryAfter)),
		RetryAfter: int(max(1, ratelimit.Seconds(d.RetryAfter)))})
	return false
}

// handleAbuseList serves GET /admin/abuse: the throttled keys.
func (s *Server) handleAbuseList(w http.ResponseWriter, _ *http.Request) {
	list := s.abuse.Throttled()
	if list == nil {
		list = []abuse.Throttle{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"throttled": list})
}

// handleAbuseLift serves DELETE /admin/abuse/{key}: {key} is a key id or
// "tenant:<name>".
func (s *Server) handleAbuseLift(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("key")
	if !s.abuse.Lift(r.Context(), id) {
		s.writeError(w, r, &Error{Status: http.StatusNotFound, Type: "not_found",
			Message: fmt.Sprintf("%q is not throttled (on this instance)", id)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"lifted": id})
}
