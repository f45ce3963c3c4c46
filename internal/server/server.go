// Package server is agentd's HTTP API. It is the only place where errors
// become HTTP answers.
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// DefaultTenant owns everything when authentication is off (auth: none).
const DefaultTenant = "default"

// ConversationStore is what the conversation endpoints need.
type ConversationStore interface {
	GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error)
	DeleteConversation(ctx context.Context, tenant, id string) error
}

// AgentInfo describes an agent for GET /v1/agents.
type AgentInfo struct {
	Name  string     `json:"name"`
	Model string     `json:"model"`
	Tools []ToolInfo `json:"tools"`
}

// ToolInfo describes one tool of an agent.
type ToolInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Source      string `json:"source"`
}

// Config are the server's dependencies and limits.
type Config struct {
	Chat *run.Service
	// Runs serves the async run API; nil: not offered.
	Runs *run.Runs
	// Hub carries live run events to followers.
	Hub events.Hub
	// HealthOnly serves only health, readiness and metrics (workers).
	HealthOnly      bool
	Conversations   ConversationStore
	Agents          []AgentInfo
	Health          *Health
	Metrics         *observe.Metrics
	Log             *slog.Logger
	MaxBodyBytes    int64
	SSEPingInterval time.Duration
	// AdminToken guards /admin/*; with Auth set, an API key with the admin
	// scope is accepted too. Empty and no Auth: the admin API is off (404).
	AdminToken string
	// Auth authenticates API keys; every route but /livez, /readyz,
	// /healthz and /metrics then needs one, and each request acts for the
	// key's tenant. nil: authentication is off, everything belongs to
	// DefaultTenant.
	Auth *auth.Authenticator
	// Keys reports the model API keys for GET /admin/keys (nil: none).
	Keys func() []resilience.KeyStatus
	// Audit serves GET /v1/audit?run_id=; nil: not offered.
	Audit store.Audit
	// Usage serves GET /v1/usage; nil: not offered.
	Usage store.Usage
	// Feedback serves POST /v1/runs/{id}/feedback, GET /v1/feedback and
	// GET /v1/feedback/summary; nil: not offered.
	Feedback FeedbackStore
	// Drain starts a graceful drain (POST /admin/drain); nil: not offered.
	Drain func()
	// Admission limits (nil: unlimited): synchronous chats, open event
	// streams, run submissions (the memory guard only).
	Chats, Streams, Submits *admission.Limiter
	// OverflowToQueue turns a chat the Chats or Streams limiter refused
	// (memory, concurrency) into a queued run (admission.overflow: queue).
	OverflowToQueue bool
	// Tenants caps each tenant's chats and event streams in flight on this
	// instance (nil: no caps).
	Tenants *admission.TenantLimiter
	// RateLimit limits requests per API key and tenant (nil: none).
	RateLimit RateLimiter
	// Gateway serves the Anthropic-compatible POST /v1/messages and
	// /v1/messages/count_tokens (nil: not offered). Calls need the chat
	// scope and take a Chats slot and one of their tenant's (Tenants).
	Gateway http.Handler
	// Abuse throttles keys whose request rate jumps (nil: no abuse
	// detection); with AdminToken it also serves /admin/abuse.
	Abuse AbuseGuard
	// Managed serves the Managed Agents API (/v1/agents/..., /v1/environments,
	// /v1/sessions; docs/managed-agents.md); nil: not offered.
	Managed *managed.Service
}

// Server serves the API.
type Server struct {
	chat    *run.Service
	runs    *run.Runs
	hub     events.Hub
	convs   ConversationStore
	agents  []AgentInfo
	health  *Health
	metrics *observe.Metrics
	audit   store.Audit
	auth    *auth.Authenticator
	log     *slog.Logger
	maxBody int64
	ping    time.Duration
	handler http.Handler
	mux     *routeMux

	chats, streams, submits *admission.Limiter
	overflow                bool
	tenants                 *admission.TenantLimiter

	// followers ends when the server shuts down (EndFollowers).
	followers    context.Context
	endFollowers context.CancelFunc
	rateLimit    RateLimiter
	abuse        AbuseGuard
	// sse counts open SSE streams.
	sse atomic.Int64
	// managed serves the Managed Agents face (nil: off).
	managed *managed.Service
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	s := &Server{
		chats: cfg.Chats, streams: cfg.Streams, submits: cfg.Submits, overflow: cfg.OverflowToQueue, tenants: cfg.Tenants, rateLimit: cfg.RateLimit, abuse: cfg.Abuse,
		chat: cfg.Chat, runs: cfg.Runs, hub: cfg.Hub, convs: cfg.Conversations, agents: cfg.Agents, health: cfg.Health,
		metrics: cfg.Metrics, audit: cfg.Audit, auth: cfg.Auth, log: cfg.Log, maxBody: cfg.MaxBodyBytes, ping: cfg.SSEPingInterval,
	}
	if s.ping <= 0 {
		s.ping = 15 * time.Second
	}
	if s.agents == nil {
		s.agents = []AgentInfo{}
	}
	mux := newRouteMux()
	if !cfg.HealthOnly {
		chat, runs := auth.ScopeChat, auth.ScopeRuns
		mux.HandleFunc("POST /v1/chat", s.scoped(s.handleChat, chat))
		// Runs may continue conversations too.
		mux.HandleFunc("GET /v1/conversations/{id}", s.scoped(s.handleGetConversation, chat, runs))
		mux.HandleFunc("DELETE /v1/conversations/{id}", s.scoped(s.handleDeleteConversation, chat, runs))
		mux.HandleFunc("GET /v1/agents", s.scoped(s.handleAgents, chat, runs))
		if cfg.Audit != nil {
			mux.HandleFunc("GET /v1/audit", s.scoped(s.handleAudit, chat, runs))
		}
		if cfg.Usage != nil {
			mux.HandleFunc("GET /v1/usage", s.scoped(s.handleUsage(cfg.Usage), chat, runs))
		}
		if fs := cfg.Feedback; fs != nil {
			// Chats are runs too: a chat client rates the answer by its
			// run_id.
			mux.HandleFunc("POST /v1/runs/{id}/feedback", s.scoped(s.handlePostFeedback(fs), chat, runs))
			mux.HandleFunc("GET /v1/feedback", s.scoped(s.handleListFeedback(fs), chat, runs))
			mux.HandleFunc("GET /v1/feedback/summary", s.scoped(s.handleFeedbackSummary(fs), chat, runs))
		}
		if cfg.Gateway != nil {
			gw := s.scoped(s.admitted(s.chats, cfg.Gateway.ServeHTTP), chat)
			mux.HandleFunc("POST "+gateway.PathMessages, gw)
			mux.HandleFunc("POST "+gateway.PathCountTokens, gw)
		}
		if cfg.Managed != nil {
			s.managedRoutes(mux, cfg.Managed)
		}
		if cfg.Runs != nil {
			mux.HandleFunc("POST /v1/runs", s.scoped(s.handleSubmitRun, runs))
			mux.HandleFunc("GET /v1/runs", s.scoped(s.handleListRuns, runs))
			mux.HandleFunc("GET /v1/runs/{id}", s.scoped(s.handleGetRun, runs))
			mux.HandleFunc("GET /v1/runs/{id}/events", s.scoped(s.handleRunEvents, runs))
			mux.HandleFunc("POST /v1/runs/{id}/cancel", s.scoped(s.handleCancelRun, runs))
			mux.HandleFunc("POST /v1/runs/{id}/interrupt", s.scoped(s.handleInterruptRun, runs))
			mux.HandleFunc("POST /v1/runs/{id}/approvals", s.scoped(s.handleDecide, auth.ScopeApprove))
		}
	}
	mux.HandleFunc("GET /livez", s.handleLivez)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /openapi.json", s.handleOpenAPI)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	// The admin API acts on the whole process (drain, profiles, the
	// provider's keys), across tenants: only the operator's admin token
	// opens it, never a tenant's API key.
	if cfg.AdminToken != "" {
		admin := func(h http.HandlerFunc) http.HandlerFunc { return s.requireAdmin(cfg.AdminToken, h) }
		mux.HandleFunc("GET /admin/keys", admin(func(w http.ResponseWriter, _ *http.Request) {
			keys := []resilience.KeyStatus{}
			if cfg.Keys != nil {
				keys = cfg.Keys()
			}
			writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
		}))
		// Profiles for diagnosing a live instance (admin only).
		mux.HandleFunc("GET /debug/pprof/", admin(pprof.Index))
		mux.HandleFunc("GET /debug/pprof/profile", admin(pprof.Profile))
		mux.HandleFunc("GET /debug/pprof/trace", admin(pprof.Trace))
		if cfg.Abuse != nil {
			mux.HandleFunc("GET /admin/abuse", admin(s.handleAbuseList))
			mux.HandleFunc("DELETE /admin/abuse/{key}", admin(s.handleAbuseLift))
		}
		if cfg.Drain != nil {
			mux.HandleFunc("POST /admin/drain", admin(func(w http.ResponseWriter, _ *http.Request) {
				cfg.Drain()
				writeJSON(w, http.StatusAccepted, map[string]string{"status": "draining"})
			}))
		}
	}
	s.followers, s.endFollowers = context.WithCancel(context.Background())
	s.mux = mux
	s.handler = s.traced(s.middleware(http.HandlerFunc(s.route)))
	return s
}

// route dispatches through the mux, answering unknown routes (404) and
// wrong methods (405 with Allow) with the JSON error body.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r) // sets r.Pattern and the path values
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, &Error{Status: http.StatusMethodNotAllowed, Type: "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
		return
	}
	s.handleNotFound(w, r)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &Error{Status: http.StatusNotFound, Type: "not_found", Message: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
}

// validRequestID accepts client ids that are safe to log and echo.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

// statusRecorder remembers the status for metrics and logs; it passes
// Flush through (SSE) via Unwrap for http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// middleware: request id → panic recovery → metrics and access log →
// authentication → rate limits → abuse detection.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(id) {
			id = newRequestID()
		}
		// The canonical form of X-Request-ID, set directly: Header.Set
		// would canonicalize the name (an allocation) on every request.
		w.Header()["X-Request-Id"] = []string{id}
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		ctx = observe.WithAttrs(ctx, slog.String("request_id", id))
		r = r.WithContext(ctx)
		rec := &statusRecorder{ResponseWriter: w}
		if s.metrics != nil {
			s.metrics.HTTPInFlight.Inc()
			defer s.metrics.HTTPInFlight.Dec()
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(ctx, "panic serving request", "panic", fmt.Sprint(p))
				if rec.status == 0 {
					s.writeError(rec, r, &Error{Status: http.StatusInternalServerError, Type: "internal_error", Message: "internal error"})
				}
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unmatched"
			}
			d := time.Since(start)
			if s.metrics != nil {
				s.metrics.HTTPRequests.WithLabelValues(r.Method, route, fmt.Sprint(rec.status)).Inc()
				s.metrics.HTTPDuration.WithLabelValues(r.Method, route).Observe(d.Seconds())
			}
			level := slog.LevelInfo
			switch {
			case route == "GET /livez" || route == "GET /readyz" || route == "GET /metrics" || route == "GET /healthz":
				level = slog.LevelDebug
			case rec.status < 400 && gateway.IsGatewayPath(r.URL.Path):
				// An answered gateway call has the gateway's own line
				// ("gateway call": tokens, cost, upstream request id);
				// refusals keep this one.
				level = slog.LevelDebug
			}
			if s.log.Enabled(ctx, level) { // the arguments allocate even when the level is off
				s.log.Log(ctx, level, "http request", "method", r.Method, "route", route, "path", r.URL.Path,
					"status", rec.status, "duration_ms", float64(d.Microseconds())/1000)
			}
		}()
		if p, ok := s.authenticate(rec, r); ok {
			if p.KeyPrefix != "" {
				ctx = observe.WithAttrs(auth.WithPrincipal(ctx, p), slog.String("tenant", p.Tenant), slog.String("key_prefix", p.KeyPrefix))
			} else {
				ctx = observe.WithAttrs(auth.WithPrincipal(ctx, p), slog.String("tenant", p.Tenant))
			}
			r = r.WithContext(ctx) // the access log above sees these too
			if s.allowRate(rec, r, p) && s.allowAbuse(rec, r, p) {
				next.ServeHTTP(rec, r)
			}
		}
	})
}

// openPaths need no key: probes and metrics.
var openPaths = map[string]bool{"/livez": true, "/readyz": true, "/healthz": true, "/metrics": true}

// authenticate finds the request's principal. With authentication off it is
// DefaultTenant with every scope. Probes, metrics and the admin routes
// (requireAdmin checks those) pass without one. Otherwise a missing, invalid
// or revoked key is answered 401 and ok is false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (p auth.Principal, ok bool) {
	if s.auth == nil {
		return auth.Principal{Tenant: DefaultTenant, Scopes: auth.AllScopes}, true
	}
	path := r.URL.Path
	if openPaths[path] || strings.HasPrefix(path, "/admin/") || strings.HasPrefix(path, "/debug/") || isConsolePath(path) {
		return auth.Principal{}, true
	}
	p, err := s.auth.Authenticate(r.Context(), auth.TokenFrom(r.Header.Get("Authorization"), r.Header.Get("X-Api-Key")))
	if err != nil {
		s.refuseAuth(w, r, err)
		return auth.Principal{}, false
	}
	return p, true
}

// refuseAuth answers a failed authentication: 401, or 500 when the store
// could not be asked. The key itself is never logged.
func (s *Server) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, auth.ErrNoKey):
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentd"`)
		s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Type: "unauthorized",
			Message: "an API key is required: Authorization: Bearer <key> or x-api-key: <key>"})
	case errors.Is(err, auth.ErrInvalidKey):
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentd", error="invalid_token"`)
		s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Type: "unauthorized",
			Message: "the API key is invalid or revoked"})
	default:
		s.writeError(w, r, err)
	}
}

// scoped lets a request through when its principal has one of scopes, else
// answers 403.
func (s *Server) scoped(next http.HandlerFunc, scopes ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		if !p.HasAny(scopes...) {
			s.writeError(w, r, &Error{Status: http.StatusForbidden, Type: "forbidden",
				Message: fmt.Sprintf("the API key lacks the scope for this endpoint (one of: %s)", strings.Join(scopes, ", "))})
			return
		}
		next(w, r)
	}
}

// tenant is the tenant the request acts for (set by the middleware).
func (s *Server) tenant(r *http.Request) string {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.Tenant == "" {
		// Never fall back to a tenant: that would leak another's data.
		panic("server: request without a tenant")
	}
	return p.Tenant
}

// requireAdmin lets a request through when it carries the admin token as
// "Authorization: Bearer <token>" (compared in constant time) or, with
// authentication on, an API key with the admin scope.
func (s *Server) requireAdmin(token string, next http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + token)
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1 {
			next(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentd admin"`)
		s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Type: "unauthorized", Message: "the admin API needs Authorization: Bearer <admin token>"})
	}
}

// admitted runs next holding one of its tenant's slots and a slot of l
// (as a chat does), or answers the refusal.
func (s *Server) admitted(l *admission.Limiter, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		releaseTenant, err := s.tenants.Acquire(s.tenant(r), "chat")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer releaseTenant()
		release, err := admit(r.Context(), l)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer release()
		next(w, r)
	}
}

// admit takes a slot of l (nil: unlimited). release is never nil.
func admit(ctx context.Context, l *admission.Limiter) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	return l.Acquire(ctx)
}

// Mount serves h at /console and below it (the operator console, which
// authenticates its own sessions). Call it before serving.
func (s *Server) Mount(h http.Handler) {
	s.mux.Handle("/console", h)
	s.mux.Handle("/console/", h)
	// Its own route label, so that metrics (and the console's latency
	// charts) tell the long-lived event streams from pages.
	s.mux.Handle("GET /console/runs/{id}/events", h)
	s.mux.Handle("GET /console/sessions/{id}/events", h)
}

// isConsolePath: the console checks its own session cookie.
func isConsolePath(path string) bool {
	return path == "/console" || strings.HasPrefix(path, "/console/")
}

// EndFollowers ends every run event stream (GET /v1/runs/{id}/events) at
// once; register it with http.Server.RegisterOnShutdown. Chat streams are
// left to finish: they carry a run that is still executing.
func (s *Server) EndFollowers() { s.endFollowers() }
