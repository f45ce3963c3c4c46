package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// maxReasonBytes bounds the reason of a decision (the model reads it).
const maxReasonBytes = 4096

// ApprovalRequest is the body of POST /v1/runs/{id}/approvals.
type ApprovalRequest struct {
	ToolUseID string `json:"tool_use_id"`
	Decision  string `json:"decision"`
	Reason    string `json:"reason,omitempty"`
}

func decodeApproval(r *http.Request) (ApprovalRequest, error) {
	var req ApprovalRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return req, err
	}
	switch {
	case strings.TrimSpace(req.ToolUseID) == "":
		return req, badRequest("tool_use_id: required")
	case len(req.ToolUseID) > 256:
		return req, badRequest("tool_use_id: too long")
	case req.Decision != string(store.DecisionApprove) && req.Decision != string(store.DecisionDeny):
		return req, badRequest(`decision: must be "approve" or "deny"`)
	case len(req.Reason) > maxReasonBytes:
		return req, badRequest(fmt.Sprintf("reason: at most %d bytes", maxReasonBytes))
	case !utf8.ValidString(req.Reason):
		return req, badRequest("reason: must be valid UTF-8")
	}
	return req, nil
}

// handleDecide records a decision on a tool call a paused run waits for.
func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) {
	if !s.checkJSON(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	req, err := decodeApproval(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, tenant := r.PathValue("id"), s.tenant(r)
	p, _ := auth.FromContext(r.Context())
	a, rn, err := s.runs.Decide(r.Context(), run.DecideParams{
		Tenant: tenant, RunID: id, ToolUseID: req.ToolUseID, Decision: store.Decision(req.Decision),
		Reason: req.Reason, DecidedBy: p.KeyID,
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		if _, gerr := s.runs.Store.GetRun(r.Context(), tenant, id); gerr == nil {
			err = &Error{Status: http.StatusNotFound, Type: "not_found",
				Message: fmt.Sprintf("run %s has no tool call %q waiting for approval", id, req.ToolUseID)}
		}
	case errors.Is(err, store.ErrConflict) && a.Decision != store.DecisionPending:
		err = &Error{Status: http.StatusConflict, Type: "already_decided",
			Message: fmt.Sprintf("tool call %s was decided already: %s", req.ToolUseID, a.Decision)}
	case errors.Is(err, store.ErrConflict):
		err = &Error{Status: http.StatusConflict, Type: "conflict", Message: "the run no longer waits for approvals (it was canceled)"}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Approval run.ApprovalBody `json:"approval"`
		Run      run.RunBody      `json:"run"`
	}{run.NewApprovalBody(a), s.runBody(r, rn)})
}

// runBody is the public shape of rn, with the calls it waits for when it
// is paused.
func (s *Server) runBody(r *http.Request, rn store.Run) run.RunBody {
	b := run.NewRunBody(rn)
	if rn.Status != store.RunRequiresAction {
		return b
	}
	approvals, err := s.runs.Store.ListApprovals(r.Context(), rn.ID)
	if err != nil {
		s.log.WarnContext(r.Context(), "load the pending approvals of a run", "run_id", rn.ID, "err", err)
		return b
	}
	b.SetPending(approvals)
	return b
}
