package server

import (
	"net/http"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/run"
)

// refuseChat answers a chat that admission control refused (err): with
// admission.overflow: queue, a refusal for memory or concurrency makes the
// chat's message a queued run, answered 202 with the run and Location, as
// POST /v1/runs answers; anything else (a tenant at its own cap, overflow
// off) is the error.
func (s *Server) refuseChat(w http.ResponseWriter, r *http.Request, req *ChatRequest, err error) {
	rej, ok := admission.AsRejected(err)
	if !ok || !s.overflow || s.runs == nil {
		s.writeError(w, r, err)
		return
	}
	switch rej.Reason {
	case admission.ReasonMemory, admission.ReasonQueueFull, admission.ReasonTimeout:
	default:
		s.writeError(w, r, err)
		return
	}
	key, kerr := idempotencyKey(r)
	if kerr != nil {
		s.writeError(w, r, kerr)
		return
	}
	// No submission admission: the run waits in the store's queue, which
	// any worker takes from when capacity returns; that is the point.
	rn, created, serr := s.runs.Submit(r.Context(), run.SubmitParams{
		Tenant: s.tenant(r), Agent: req.Agent, ConversationID: req.ConversationID, Message: req.Message,
		IdempotencyKey: key, MaxCostUSD: req.MaxCostUSD,
	})
	if serr != nil {
		s.writeError(w, r, serr)
		return
	}
	s.log.InfoContext(r.Context(), "chat refused by admission control: accepted as a queued run",
		"reason", rej.Reason, "limit", rej.What, "queued_run_id", rn.ID)
	w.Header().Set("Location", "/v1/runs/"+rn.ID)
	w.Header().Set("Agentd-Overflow", "queue")
	setConversationID(w, rn.ConversationID)
	status := http.StatusAccepted
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	writeJSON(w, status, run.NewRunBody(rn))
}
