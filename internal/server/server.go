// Package server is agentd's HTTP API. It is the only place where errors
// become HTTP answers.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// DefaultTenant owns everything until tenants and API keys exist.
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
	Chat            *run.Service
	Conversations   ConversationStore
	Agents          []AgentInfo
	Health          *Health
	Metrics         *observe.Metrics
	Log             *slog.Logger
	MaxBodyBytes    int64
	SSEPingInterval time.Duration
}

// Server serves the API.
type Server struct {
	chat    *run.Service
	convs   ConversationStore
	agents  []AgentInfo
	health  *Health
	metrics *observe.Metrics
	log     *slog.Logger
	maxBody int64
	ping    time.Duration
	handler http.Handler
	// sse counts open SSE streams.
	sse atomic.Int64
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	s := &Server{
		chat: cfg.Chat, convs: cfg.Conversations, agents: cfg.Agents, health: cfg.Health,
		metrics: cfg.Metrics, log: cfg.Log, maxBody: cfg.MaxBodyBytes, ping: cfg.SSEPingInterval,
	}
	if s.ping <= 0 {
		s.ping = 15 * time.Second
	}
	if s.agents == nil {
		s.agents = []AgentInfo{}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat", s.handleChat)
	mux.HandleFunc("GET /v1/conversations/{id}", s.handleGetConversation)
	mux.HandleFunc("DELETE /v1/conversations/{id}", s.handleDeleteConversation)
	mux.HandleFunc("GET /v1/agents", s.handleAgents)
	mux.HandleFunc("GET /livez", s.handleLivez)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/", s.handleNotFound)
	s.handler = s.middleware(mux)
	return s
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

// middleware: request id → panic recovery → metrics and access log.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !validRequestID.MatchString(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-ID", id)
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
			if route == "GET /livez" || route == "GET /readyz" || route == "GET /metrics" || route == "GET /healthz" {
				level = slog.LevelDebug
			}
			s.log.Log(ctx, level, "http request", "method", r.Method, "route", route, "path", r.URL.Path,
				"status", rec.status, "duration_ms", float64(d.Microseconds())/1000)
		}()
		next.ServeHTTP(rec, r)
	})
}
