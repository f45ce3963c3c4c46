package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/agentd/agentd/internal/store"
)

// The Agent SDK SessionStore endpoints of the ProgramHost: a hosted
// program's session store adapter (examples/agent-sdk-ts/agentd-session-store.mjs)
// mirrors its SDK session transcript to agentd's store and loads it back
// to resume, on the same loopback listener and with the same run key as
// its model calls (docs/agent-sdk.md, "Session continuity"):
//
//	POST /agentd/v1/sdk-sessions/{id}/entries[?subpath=...]  {"entries": [{...}, ...]}  → 204
//	GET  /agentd/v1/sdk-sessions/{id}/entries[?subpath=...]  → 200 {"entries": [...]}, 404 never written
//	GET  /agentd/v1/sdk-sessions/{id}/subpaths               → 200 {"subpaths": [...]}
//
// A session belongs to the tenant of the run whose key is used: any run
// of the tenant reads and appends to the tenant's sessions, never
// another's.

const sdkSessionsPath = "/agentd/v1/sdk-sessions/"

// Limits of one append.
const (
	// MaxSDKSessionBody bounds a POST body.
	MaxSDKSessionBody = 32 << 20
	// MaxSDKSessionBatch bounds the entries of one POST.
	MaxSDKSessionBatch = 1000
	// MaxSDKSessionEntry bounds one entry (its JSON).
	MaxSDKSessionEntry = 8 << 20
)

var (
	sdkSessionIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	sdkSubpathRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$`)
)

func sessionError(w http.ResponseWriter, status int, typ, reqID, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{
		"type":       "error",
		"error":      map[string]string{"type": typ, "message": fmt.Sprintf(format, args...)},
		"request_id": reqID,
	})
	_, _ = w.Write(b)
}

func (h *ProgramHost) serveSessions(w http.ResponseWriter, r *http.Request, hk hostKey, reqID string) {
	if h.Sessions == nil {
		sessionError(w, http.StatusNotFound, "not_found_error", reqID, "agentd's session store is not available to this program")
		return
	}
	// The escaped path: a session id with an escaped '/' is a bad id, not
	// another endpoint.
	rest := strings.TrimPrefix(r.URL.EscapedPath(), sdkSessionsPath)
	escID, what, ok := strings.Cut(rest, "/")
	if !ok || (what != "entries" && what != "subpaths") {
		sessionError(w, http.StatusNotFound, "not_found_error", reqID, "no such endpoint %s (use %s{session_id}/entries or /subpaths)", r.URL.Path, sdkSessionsPath)
		return
	}
	id, err := url.PathUnescape(escID)
	if err != nil || !sdkSessionIDRe.MatchString(id) {
		sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "session id %q: 1 to 128 letters, digits, '.', '_' or '-'", id)
		return
	}
	key := store.SDKSessionKey{Tenant: hk.scope.Tenant, SessionID: id}
	if q := r.URL.Query(); q.Has("subpath") {
		key.Subpath = q.Get("subpath")
		if !sdkSubpathRe.MatchString(key.Subpath) || strings.Contains(key.Subpath, "..") {
			sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "subpath %q: 1 to 256 letters, digits, '.', '_', '-' or '/', no '..' (omit it for the main transcript)", key.Subpath)
			return
		}
	}
	ctx := r.Context()
	switch {
	case what == "subpaths" && r.Method == http.MethodGet:
		paths, err := h.Sessions.ListSDKSessionSubpaths(ctx, key.Tenant, id)
		if err != nil {
			h.sessionStoreFailed(w, r, reqID, err)
			return
		}
		writeJSON(w, map[string]any{"subpaths": paths})
	case what == "entries" && r.Method == http.MethodGet:
		entries, err := h.Sessions.LoadSDKSession(ctx, key)
		if err != nil {
			h.sessionStoreFailed(w, r, reqID, err)
			return
		}
		if entries == nil {
			sessionError(w, http.StatusNotFound, "not_found_error", reqID, "session %s has no entries", id)
			return
		}
		writeJSON(w, map[string]any{"entries": entries})
	case what == "entries" && r.Method == http.MethodPost:
		h.appendSession(w, r, hk, key, reqID)
	default:
		allow := "GET"
		if what == "entries" {
			allow = "GET, POST"
		}
		w.Header().Set("Allow", allow)
		sessionError(w, http.StatusMethodNotAllowed, "invalid_request_error", reqID, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
	}
}

func (h *ProgramHost) appendSession(w http.ResponseWriter, r *http.Request, hk hostKey, key store.SDKSessionKey, reqID string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSDKSessionBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			sessionError(w, http.StatusRequestEntityTooLarge, "request_too_large", reqID, "the body is over %d bytes: append fewer entries at a time", MaxSDKSessionBody)
			return
		}
		sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "read the body: %v", err)
		return
	}
	var in struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "the body is not {\"entries\": [...]}: %v", err)
		return
	}
	if in.Entries == nil {
		sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "entries: required, an array of JSON objects")
		return
	}
	if len(in.Entries) > MaxSDKSessionBatch {
		sessionError(w, http.StatusRequestEntityTooLarge, "request_too_large", reqID, "entries: %d in one append, at most %d", len(in.Entries), MaxSDKSessionBatch)
		return
	}
	for i, e := range in.Entries {
		if len(e) > MaxSDKSessionEntry {
			sessionError(w, http.StatusRequestEntityTooLarge, "request_too_large", reqID, "entries[%d]: %d bytes, at most %d", i, len(e), MaxSDKSessionEntry)
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(e, &obj) != nil || obj == nil {
			sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "entries[%d]: not a JSON object", i)
			return
		}
		var typ string
		if json.Unmarshal(obj["type"], &typ) != nil || typ == "" {
			sessionError(w, http.StatusBadRequest, "invalid_request_error", reqID, "entries[%d].type: required, a string", i)
			return
		}
	}
	err = h.Sessions.AppendSDKSession(r.Context(), store.SDKSessionAppend{
		Key: key, ConversationID: hk.conversationID, RunID: hk.scope.RunID, Entries: in.Entries,
	})
	if err != nil {
		h.sessionStoreFailed(w, r, reqID, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *ProgramHost) sessionStoreFailed(w http.ResponseWriter, r *http.Request, reqID string, err error) {
	if h.Log != nil {
		h.Log.ErrorContext(r.Context(), "agent program's session store call failed", "path", r.URL.Path, "err", err, "request_id", reqID)
	}
	sessionError(w, http.StatusInternalServerError, "api_error", reqID, "agentd's store failed; try again")
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
