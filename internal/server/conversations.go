package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/managed"
)

type conversationBody struct {
	ID        string        `json:"id"`
	Agent     string        `json:"agent"`
	Version   int64         `json:"version"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	ExpiresAt *time.Time    `json:"expires_at"`
	Messages  []messageBody `json:"messages"`
}

type messageBody struct {
	Seq       int64           `json:"seq"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CreatedAt time.Time       `json:"created_at"`
}

func (s *Server) handleGetConversation(w http.ResponseWriter, r *http.Request) {
	c, err := s.convs.GetConversation(r.Context(), s.tenant(r), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body := conversationBody{
		ID: c.ID, Agent: c.Agent, Version: c.Version, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		Messages: make([]messageBody, len(c.Messages)),
	}
	if !c.ExpiresAt.IsZero() {
		body.ExpiresAt = &c.ExpiresAt
	}
	for i, m := range c.Messages {
		body.Messages[i] = messageBody{Seq: m.Seq, Role: m.Role, Content: m.Content, CreatedAt: m.CreatedAt}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleDeleteConversation(w http.ResponseWriter, r *http.Request) {
	if err := s.convs.DeleteConversation(r.Context(), s.tenant(r), r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleAgents is GET /v1/agents: agentd's own list ({"agents": [...]}),
// or, when the anthropic-beta header asks for Managed Agents (the SDK's
// client.Beta.Agents.List sends it), the Managed Agents page.
func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request) {
	if s.managed != nil && managed.IsBeta(r.Header.Values("anthropic-beta")) {
		s.handleListManagedAgents(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": s.agents})
}
