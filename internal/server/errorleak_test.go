package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// internalText matches what must never reach a client: backend and driver
// names, SQL, file paths, Go error chains and panics.
var internalText = regexp.MustCompile(`(?i)sqlite|postgres|pgx|pgconn|sqlstate|\bselect\b|\binsert\b|\bupdate\b|` +
	`\bdelete from\b|\bwhere\b|river|/tmp/|\.db\b|\.go:\d|goroutine|runtime error|%!|\*errors\.|` +
	`context deadline exceeded|context canceled|: not found`)

// TestErrorBodiesLeakNothingInternal walks the API's error paths on both
// stores and checks every body: the JSON error shape, a useful message,
// and no backend name, SQL, file path or Go error chain.
func TestErrorBodiesLeakNothingInternal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withRunsAuth())
		key := newTestKey(t, b.St.(store.APIKeys), "acme", "chat", "runs")
		other := newTestKey(t, b.St.(store.APIKeys), "globex", "chat", "runs")
		chatOnly := newTestKey(t, b.St.(store.APIKeys), "acme", "chat")

		// A conversation, deleted: a GET after DELETE was the leak that
		// named the backend.
		resp := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), key.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		var ans struct {
			ConversationID string `json:"conversation_id"`
			RunID          string `json:"run_id"`
		}
		require.NoError(t, json.Unmarshal(resp.Body, &ans))
		require.NotEmpty(t, ans.ConversationID)
		conv := "/v1/conversations/" + ans.ConversationID
		resp = b.do(t, http.MethodDelete, conv, "", key.bearer())
		require.Equal(t, http.StatusNoContent, resp.Status, "body: %s", resp.Body)

		cases := []struct {
			name, method, path, body string
			header                   map[string]string
			status                   int
		}{
			{"conversation after delete", http.MethodGet, conv, "", key.bearer(), http.StatusNotFound},
			{"delete deleted conversation", http.MethodDelete, conv, "", key.bearer(), http.StatusNotFound},
			{"unknown conversation", http.MethodGet, "/v1/conversations/nope", "", key.bearer(), http.StatusNotFound},
			{"chat to unknown conversation", http.MethodPost, "/v1/chat",
				`{"agent":"demo","conversation_id":"nope","message":"hi"}`, key.bearer(), http.StatusNotFound},
			{"chat to unknown agent", http.MethodPost, "/v1/chat", `{"agent":"nope","message":"hi"}`, key.bearer(), http.StatusNotFound},
			{"chat, bad json", http.MethodPost, "/v1/chat", `{"agent":`, key.bearer(), http.StatusBadRequest},
			{"chat, unknown field", http.MethodPost, "/v1/chat", `{"agent":"demo","message":"hi","x":1}`, key.bearer(), http.StatusBadRequest},
			{"chat, no message", http.MethodPost, "/v1/chat", `{"agent":"demo"}`, key.bearer(), http.StatusBadRequest},
			{"chat, another tenant's run key scope", http.MethodPost, "/v1/runs", `{"agent":"demo","message":"hi"}`, chatOnly.bearer(), http.StatusForbidden},
			{"unknown run", http.MethodGet, "/v1/runs/run_nope", "", key.bearer(), http.StatusNotFound},
			{"another tenant's run", http.MethodGet, "/v1/runs/" + ans.RunID, "", other.bearer(), http.StatusNotFound},
			{"cancel unknown run", http.MethodPost, "/v1/runs/run_nope/cancel", "", key.bearer(), http.StatusNotFound},
			{"events of unknown run", http.MethodGet, "/v1/runs/run_nope/events", "", key.bearer(), http.StatusNotFound},
			{"runs, bad status filter", http.MethodGet, "/v1/runs?status=bogus", "", key.bearer(), http.StatusBadRequest},
			{"runs, bad limit", http.MethodGet, "/v1/runs?limit=0", "", key.bearer(), http.StatusBadRequest},
			{"events, bad Last-Event-ID", http.MethodGet, "/v1/runs/" + ans.RunID + "/events?after=-3", "", key.bearer(), http.StatusBadRequest},
			{"submit, bad json", http.MethodPost, "/v1/runs", `[`, key.bearer(), http.StatusBadRequest},
			{"audit without run_id", http.MethodGet, "/v1/audit", "", key.bearer(), http.StatusBadRequest},
			{"no key", http.MethodGet, "/v1/runs", "", nil, http.StatusUnauthorized},
			{"bad key", http.MethodGet, "/v1/runs", "", map[string]string{"Authorization": "Bearer ak_bogus"}, http.StatusUnauthorized},
			{"no route", http.MethodGet, "/v1/nope", "", key.bearer(), http.StatusNotFound},
			{"wrong method", http.MethodPut, "/v1/chat", "", key.bearer(), http.StatusMethodNotAllowed},
		}
		// The messages of not-found answers name the resource.
		wantMsg := map[string]string{
			"conversation after delete": "conversation not found",
			"unknown run":               "run not found",
			"events of unknown run":     "run not found",
			"another tenant's run":      "run not found",
		}
		for _, c := range cases {
			resp := b.do(t, c.method, c.path, c.body, c.header)
			require.Equal(t, c.status, resp.Status, "%s: body: %s", c.name, resp.Body)
			var body struct {
				Error struct {
					Type, Message, RequestID string
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(resp.Body, &body), "%s: not the JSON error shape: %s", c.name, resp.Body)
			require.NotEmpty(t, body.Error.Type, "%s: %s", c.name, resp.Body)
			require.NotEmpty(t, strings.TrimSpace(body.Error.Message), "%s: %s", c.name, resp.Body)
			if want, ok := wantMsg[c.name]; ok {
				require.Equal(t, want, body.Error.Message, c.name)
			}
			require.Falsef(t, internalText.Match(resp.Body), "%s: internal text %q in body %s",
				c.name, internalText.Find(resp.Body), resp.Body)
		}
	})
}
