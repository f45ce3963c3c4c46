package run

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm/metered"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// TestProgramHostSessions: the SessionStore endpoints on a real SQLite
// store: append and load round-trip in order, scoped to the run key's
// tenant, tagged with its conversation (LatestSDKSession); bad input is a
// JSON error with its status, over the limits a 413; an unknown or revoked
// key is a 401 and reaches nothing.
func TestProgramHostSessions(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))

	gatewayCalls := 0
	h := &ProgramHost{Sessions: st, Gateway: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gatewayCalls++
		w.WriteHeader(204)
	})}
	t.Cleanup(func() { _ = h.Close() })
	base, err := h.start()
	require.NoError(t, err)
	keyA, revokeA := h.issue(&metered.RunScope{Tenant: "tA", RunID: "run_a"}, "conv_a")
	keyB, revokeB := h.issue(&metered.RunScope{Tenant: "tB", RunID: "run_b"}, "conv_b")
	defer revokeB()

	do := func(method, path, key, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		if resp.StatusCode >= 400 {
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(b, &e), string(b))
			assert.Equal(t, "error", e.Type)
			assert.NotEmpty(t, e.Error.Message)
		}
		return resp.StatusCode, string(b)
	}
	const p = "/agentd/v1/sdk-sessions/sess-1/entries"

	code, _ := do("GET", p, keyA, "")
	assert.Equal(t, 404, code, "never written")
	code, body := do("POST", p, keyA, `{"entries":[{"type":"user","uuid":"u1","message":{"content":"hi"}},{"type":"assistant","uuid":"u2"}]}`)
	require.Equal(t, 204, code, body)
	code, body = do("POST", p, keyA, `{"entries":[{"type":"user","uuid":"u1","message":{"content":"hi"}},{"type":"tag","tag":"x"}]}`)
	require.Equal(t, 204, code, body)
	code, body = do("GET", p, keyA, "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, `{"entries":[{"type":"user","uuid":"u1","message":{"content":"hi"}},{"type":"assistant","uuid":"u2"},{"type":"tag","tag":"x"}]}`, body)
	code, body = do("POST", p+"?subpath=subagents/agent-1", keyA, `{"entries":[{"type":"user"}]}`)
	require.Equal(t, 204, code, body)
	code, body = do("GET", "/agentd/v1/sdk-sessions/sess-1/subpaths", keyA, "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, `{"subpaths":["subagents/agent-1"]}`, body)
	sid, err := st.LatestSDKSession(ctx, "tA", "conv_a")
	require.NoError(t, err)
	assert.Equal(t, "sess-1", sid, "appended as the run key's conversation")

	// Another tenant's key does not see tenant A's session.
	code, _ = do("GET", p, keyB, "")
	assert.Equal(t, 404, code)
	code, body = do("GET", "/agentd/v1/sdk-sessions/sess-1/subpaths", keyB, "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, `{"subpaths":[]}`, body)

	// Bad input.
	for _, c := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", p, `{"entries":`, 400},
		{"POST", p, `[]`, 400},
		{"POST", p, `{}`, 400},
		{"POST", p, `{"entries":[1]}`, 400},
		{"POST", p, `{"entries":[{"uuid":"x"}]}`, 400},
		{"POST", p, `{"entries":[{"type":""}]}`, 400},
		{"POST", "/agentd/v1/sdk-sessions/..%2Fx/entries", `{"entries":[]}`, 400},
		{"POST", "/agentd/v1/sdk-sessions/bad%20id/entries", `{"entries":[]}`, 400},
		{"GET", p + "?subpath=", "", 400},
		{"GET", p + "?subpath=a/../b", "", 400},
		{"GET", "/agentd/v1/sdk-sessions/sess-1/other", "", 404},
		{"GET", "/agentd/v1/sdk-sessions/sess-1", "", 404},
		{"DELETE", p, "", 405},
		{"POST", "/agentd/v1/sdk-sessions/sess-1/subpaths", "", 405},
		{"POST", p, `{"entries":[` + strings.Repeat(`{"type":"x"},`, MaxSDKSessionBatch) + `{"type":"x"}]}`, 413},
		{"POST", p, `{"entries":[{"type":"x","big":"` + strings.Repeat("a", MaxSDKSessionEntry) + `"}]}`, 413},
		{"POST", p, `{"entries":[{"type":"x","big":"` + strings.Repeat("a", MaxSDKSessionBody) + `"}]}`, 413},
	} {
		code, body := do(c.method, c.path, keyA, c.body)
		assert.Equal(t, c.code, code, "%s %s %.80s: %s", c.method, c.path, c.body, body)
	}
	code, body = do("GET", p, keyA, "")
	require.Equal(t, 200, code)
	assert.Equal(t, 3, strings.Count(body, `"type"`), "bad input stored nothing: %s", body)

	// The run key is required, and dies with the run.
	code, _ = do("GET", p, "", "")
	assert.Equal(t, 401, code)
	revokeA()
	code, _ = do("POST", p, keyA, `{"entries":[{"type":"x"}]}`)
	assert.Equal(t, 401, code)
	assert.Zero(t, gatewayCalls, "the session endpoints never reach the gateway")

	// Without a store: 404, clearly.
	h2 := &ProgramHost{Gateway: h.Gateway}
	t.Cleanup(func() { _ = h2.Close() })
	base2, err := h2.start()
	require.NoError(t, err)
	k2, rv2 := h2.issue(&metered.RunScope{Tenant: "tA"}, "")
	defer rv2()
	req, _ := http.NewRequest("GET", base2+p, nil)
	req.Header.Set("X-Api-Key", k2)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)
	assert.Contains(t, string(b), "not available")
}
