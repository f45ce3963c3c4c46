package server

import (
	"encoding/json"
	"net/http"

	"github.com/agentd/agentd/internal/run"
)

// idempotencyKey reads the Idempotency-Key header of POST /v1/runs and
// POST /v1/chat ("" when absent).
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		return "", badRequest("Idempotency-Key: at most 255 characters")
	}
	return key, nil
}

// replayChat handles a chat's Idempotency-Key: true when it answered (the
// finished run's answer sent again with Idempotent-Replayed: true, or an
// error: key too long, reused with another request, still in progress);
// false when the key is new and bound to params for Prepare.
//
//go:noinline
func (s *Server) replayChat(w http.ResponseWriter, r *http.Request, req *ChatRequest, params *run.ChatParams) bool {
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return true
	}
	params.IdempotencyKey = key
	rp, ok, err := s.chat.Replayed(r.Context(), *params)
	if err != nil {
		s.writeError(w, r, err)
		return true
	}
	if !ok {
		return false
	}
	w.Header().Set("Idempotent-Replayed", "true")
	if req.Stream {
		sw, done := s.startSSE(w, r)
		defer done()
		for _, ev := range rp.Events {
			if sw.send(ev) != nil {
				break
			}
		}
		return true
	}
	last, _ := rp.Last()
	switch last.Type {
	case "done":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(last.Data, '\n'))
	case "error":
		var info run.ErrorInfo
		_ = json.Unmarshal(last.Data, &info) // stored by the loop
		he := classified(info)
		he.RunID = rp.Run.ID
		s.writeError(w, r, he)
	default:
		// A finished run without a final event (canceled before its
		// first step): say what the run row says.
		he := &Error{Status: http.StatusConflict, Type: "conflict", RunID: rp.Run.ID,
			Message: "the run of this Idempotency-Key ended " + string(rp.Run.Status) + " without an answer"}
		s.writeError(w, r, he)
	}
	return true
}
