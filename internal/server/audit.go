package server

import (
	"encoding/json"
	"net/http"
	"time"
)

// auditEntry is one row of GET /v1/audit.
type auditEntry struct {
	ID             int64           `json:"id"`
	Time           time.Time       `json:"time"`
	Agent          string          `json:"agent"`
	RunID          string          `json:"run_id"`
	Step           int             `json:"step"`
	ToolUseID      string          `json:"tool_use_id"`
	Tool           string          `json:"tool"`
	Phase          string          `json:"phase"`
	IdempotencyKey string          `json:"idempotency_key"`
	Input          json.RawMessage `json:"input,omitempty"`
	Outcome        string          `json:"outcome"`
	Error          string          `json:"error,omitempty"`
	DurationMS     float64         `json:"duration_ms"`
}

// handleAudit serves GET /v1/audit?run_id=RUN: the audit rows of the
// consequential tool calls of a run, in write order.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	runID := r.URL.Query().Get("run_id")
	if runID == "" {
		s.writeError(w, r, badRequest("query parameter run_id is required"))
		return
	}
	rows, err := s.audit.ListAudit(r.Context(), s.tenant(r), runID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]auditEntry, 0, len(rows))
	for _, e := range rows {
		out = append(out, auditEntry{
			ID: e.ID, Time: e.Time, Agent: e.Agent, RunID: e.RunID, Step: e.Step, ToolUseID: e.ToolUseID,
			Tool: e.Tool, Phase: e.Phase, IdempotencyKey: e.IdempotencyKey, Input: e.Input,
			Outcome: e.Outcome, Error: e.Error, DurationMS: float64(e.Duration.Microseconds()) / 1000,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"run_id": runID, "entries": out})
}
