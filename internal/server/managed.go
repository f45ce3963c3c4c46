package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/managed"
)

// The Managed Agents face (docs/managed-agents.md): /v1/agents,
// /v1/environments, /v1/sessions as anthropic-sdk-go's client.Beta.Agents,
// Environments and Sessions call them. Handlers decode, call the
// managed.Service and write; errors are written in Anthropic's shape
// (anthropicShaped).

// managedRoutes registers the Managed Agents routes on mux. GET /v1/agents
// is shared with agentd's own agent list (handleAgents picks by the
// anthropic-beta header).
func (s *Server) managedRoutes(mux *routeMux, m *managed.Service) {
	s.managed = m
	scoped := func(h http.HandlerFunc) http.HandlerFunc { return s.scoped(h, auth.ScopeChat, auth.ScopeRuns) }
	mux.HandleFunc("POST /v1/agents", scoped(s.handleCreateAgent))
	mux.HandleFunc("GET /v1/agents/{id}", scoped(s.handleGetAgent))
	mux.HandleFunc("POST /v1/agents/{id}", scoped(s.handleUpdateAgent))
	mux.HandleFunc("POST /v1/agents/{id}/archive", scoped(s.handleArchiveAgent))
	mux.HandleFunc("GET /v1/agents/{id}/versions", scoped(s.handleAgentVersions))

	mux.HandleFunc("POST /v1/environments", scoped(s.handleCreateEnvironment))
	mux.HandleFunc("GET /v1/environments", scoped(s.handleListEnvironments))
	mux.HandleFunc("GET /v1/environments/{id}", scoped(s.handleGetEnvironment))
	mux.HandleFunc("POST /v1/environments/{id}", scoped(s.handleUpdateEnvironment))
	mux.HandleFunc("DELETE /v1/environments/{id}", scoped(s.handleDeleteEnvironment))
	mux.HandleFunc("POST /v1/environments/{id}/archive", scoped(s.handleArchiveEnvironment))

	mux.HandleFunc("POST /v1/sessions", scoped(s.handleCreateSession))
	mux.HandleFunc("GET /v1/sessions", scoped(s.handleListSessions))
	mux.HandleFunc("GET /v1/sessions/{id}", scoped(s.handleGetSession))
	mux.HandleFunc("POST /v1/sessions/{id}", scoped(s.handleUpdateSession))
	mux.HandleFunc("DELETE /v1/sessions/{id}", scoped(s.handleDeleteSession))
	mux.HandleFunc("POST /v1/sessions/{id}/archive", scoped(s.handleArchiveSession))
	// Events ride on runs (managed/session_events.go).
	mux.HandleFunc("POST /v1/sessions/{id}/events", scoped(s.handleSendSessionEvents))
	mux.HandleFunc("GET /v1/sessions/{id}/events", scoped(s.handleListSessionEvents))
	mux.HandleFunc("GET /v1/sessions/{id}/events/stream", scoped(s.handleStreamSessionEvents))

	// Services of the SDK this server does not offer: a plain 400, not a
	// bare 404 that reads like a typo in the id.
	for pattern, what := range map[string]string{
		"/v1/environments/{id}/work":   "self-hosted environment work (Beta.Environments.Work: agentd's environment is its own worker pool)",
		"/v1/environments/{id}/work/":  "self-hosted environment work (Beta.Environments.Work: agentd's environment is its own worker pool)",
		"/v1/sessions/{id}/resources":  "session resources (Beta.Sessions.Resources: files and repositories mounted into a container)",
		"/v1/sessions/{id}/resources/": "session resources (Beta.Sessions.Resources: files and repositories mounted into a container)",
		"/v1/sessions/{id}/threads":    "session threads (Beta.Sessions.Threads: multiagent)",
		"/v1/sessions/{id}/threads/":   "session threads (Beta.Sessions.Threads: multiagent)",
	} {
		mux.HandleFunc(pattern, scoped(s.handleUnsupported(what)))
	}
}

// handleUnsupported refuses a Managed Agents service agentd does not offer.
func (s *Server) handleUnsupported(what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, badRequest(what+" is not supported by this server (agentd, self-hosted Managed Agents); see docs/managed-agents.md"))
	}
}

// anthropicShaped reports whether errors of r are written in Anthropic's
// shape ({"type":"error","error":{"type","message"},"request_id"}): the
// gateway's routes and the Managed Agents routes. GET /v1/agents is
// agentd's own list unless the anthropic-beta header asks for Managed
// Agents.
func anthropicShaped(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case gateway.IsGatewayPath(p):
		return true
	case p == "/v1/environments", strings.HasPrefix(p, "/v1/environments/"),
		p == "/v1/sessions", strings.HasPrefix(p, "/v1/sessions/"),
		strings.HasPrefix(p, "/v1/agents/"):
		return true
	case p == "/v1/agents":
		return r.Method != http.MethodGet || managed.IsBeta(r.Header.Values("anthropic-beta"))
	}
	return false
}

// managedBody decodes the request body strictly into v.
func (s *Server) managedBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	if err := decodeStrict(r.Body, v); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// answer writes v (200) or err.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleCreateAgent(w http.ResponseWriter, r *http.Request) {
	var req managed.AgentRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	a, err := s.managed.CreateAgent(r.Context(), s.tenant(r), req)
	s.answer(w, r, a, err)
}

func (s *Server) handleGetAgent(w http.ResponseWriter, r *http.Request) {
	a, err := s.managed.GetAgent(r.Context(), s.tenant(r), r.PathValue("id"), r.URL.Query())
	s.answer(w, r, a, err)
}

func (s *Server) handleUpdateAgent(w http.ResponseWriter, r *http.Request) {
	var req managed.AgentRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	a, err := s.managed.UpdateAgent(r.Context(), s.tenant(r), r.PathValue("id"), req)
	s.answer(w, r, a, err)
}

func (s *Server) handleArchiveAgent(w http.ResponseWriter, r *http.Request) {
	a, err := s.managed.ArchiveAgent(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, a, err)
}

func (s *Server) handleAgentVersions(w http.ResponseWriter, r *http.Request) {
	p, err := s.managed.ListAgentVersions(r.Context(), s.tenant(r), r.PathValue("id"), r.URL.Query())
	s.answer(w, r, p, err)
}

// handleListManagedAgents is GET /v1/agents with the Managed Agents beta
// header.
func (s *Server) handleListManagedAgents(w http.ResponseWriter, r *http.Request) {
	p, err := s.managed.ListAgents(r.Context(), s.tenant(r), r.URL.Query())
	s.answer(w, r, p, err)
}

func (s *Server) handleCreateEnvironment(w http.ResponseWriter, r *http.Request) {
	var req managed.EnvironmentRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	e, err := s.managed.CreateEnvironment(r.Context(), s.tenant(r), req)
	s.answer(w, r, e, err)
}

func (s *Server) handleListEnvironments(w http.ResponseWriter, r *http.Request) {
	p, err := s.managed.ListEnvironments(r.Context(), s.tenant(r), r.URL.Query())
	s.answer(w, r, p, err)
}

func (s *Server) handleGetEnvironment(w http.ResponseWriter, r *http.Request) {
	e, err := s.managed.GetEnvironment(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, e, err)
}

func (s *Server) handleUpdateEnvironment(w http.ResponseWriter, r *http.Request) {
	var req managed.EnvironmentRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	e, err := s.managed.UpdateEnvironment(r.Context(), s.tenant(r), r.PathValue("id"), req)
	s.answer(w, r, e, err)
}

func (s *Server) handleDeleteEnvironment(w http.ResponseWriter, r *http.Request) {
	d, err := s.managed.DeleteEnvironment(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, d, err)
}

func (s *Server) handleArchiveEnvironment(w http.ResponseWriter, r *http.Request) {
	e, err := s.managed.ArchiveEnvironment(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, e, err)
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	var req managed.SessionCreateRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	m, err := s.managed.CreateSession(r.Context(), s.tenant(r), req)
	s.answer(w, r, m, err)
}

func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request) {
	p, err := s.managed.ListSessions(r.Context(), s.tenant(r), r.URL.Query())
	s.answer(w, r, p, err)
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) {
	m, err := s.managed.GetSession(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, m, err)
}

func (s *Server) handleUpdateSession(w http.ResponseWriter, r *http.Request) {
	var req managed.SessionUpdateRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	m, err := s.managed.UpdateSession(r.Context(), s.tenant(r), r.PathValue("id"), req)
	s.answer(w, r, m, err)
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	d, err := s.managed.DeleteSession(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, d, err)
}

func (s *Server) handleArchiveSession(w http.ResponseWriter, r *http.Request) {
	m, err := s.managed.ArchiveSession(r.Context(), s.tenant(r), r.PathValue("id"))
	s.answer(w, r, m, err)
}

// handleSendSessionEvents takes events for a session. A
// user.tool_confirmation decides on a tool call, which needs the approve
// scope (as POST /v1/runs/{id}/approvals).
func (s *Server) handleSendSessionEvents(w http.ResponseWriter, r *http.Request) {
	var req managed.SendEventsRequest
	if !s.managedBody(w, r, &req) {
		return
	}
	p, _ := auth.FromContext(r.Context())
	for _, ev := range req.Events {
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(ev, &head) == nil && head.Type == "user.tool_confirmation" && !p.Has(auth.ScopeApprove) {
			s.writeError(w, r, &Error{Status: http.StatusForbidden, Type: "forbidden",
				Message: "user.tool_confirmation decides on a tool call: the API key needs the approve scope"})
			return
		}
	}
	out, err := s.managed.SendEvents(r.Context(), s.tenant(r), r.PathValue("id"), p.KeyID, req)
	s.answer(w, r, out, err)
}

// handleListSessionEvents lists a session's events, oldest first.
func (s *Server) handleListSessionEvents(w http.ResponseWriter, r *http.Request) {
	page, err := s.managed.ListEvents(r.Context(), s.tenant(r), r.PathValue("id"), r.URL.Query())
	s.answer(w, r, page, err)
}

// handleStreamSessionEvents streams a session's events (SSE) until the
// client goes or the server shuts down; Last-Event-ID resumes after an
// event without loss or repeats.
func (s *Server) handleStreamSessionEvents(w http.ResponseWriter, r *http.Request) {
	s.StreamSessionEvents(w, r, s.tenant(r), r.PathValue("id"))
}

// StreamSessionEvents is GET /v1/sessions/{id}/events/stream for session
// id of tenant (resolved by the caller): the operator console follows
// sessions through it.
func (s *Server) StreamSessionEvents(w http.ResponseWriter, r *http.Request, tenant, id string) {
	if s.managed == nil {
		s.writeError(w, r, &Error{Status: http.StatusNotFound, Type: "not_found", Message: "Managed Agents sessions are not served by this process"})
		return
	}
	p, err := managed.ParseStream(r.URL.Query(), r.Header.Get("Last-Event-ID"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.managed.OpenStream(r.Context(), tenant, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	release, err := s.admitFollower(r.Context(), tenant)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	m := s.startManagedStream(w)
	defer m.Close()
	// A follower only watches: a shutdown cuts it at once (the client
	// reconnects elsewhere with Last-Event-ID).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.followers, cancel)
	defer stop()
	err = st.Stream(ctx, p, m.Events)
	if err != nil && ctx.Err() == nil && !errors.Is(err, errClientGone) {
		s.log.WarnContext(r.Context(), "session event stream ended", "session_id", id, "err", err)
		he := toHTTP(err)
		_ = m.Error(he.Status, he.Message, requestID(r.Context()))
	}
}
