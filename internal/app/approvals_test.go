package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// approvalAgents: "demo" needs a decision for the calculator; "lenient"
// and "strict" wait 1s for it, then deny or fail.
const approvalAgents = `agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [calculator, clock]
    approval_required: [calculator]
  - name: lenient
    model: claude-sonnet-4-5
    tools: [calculator]
    approval_required: ["calc*"]
    approval_timeout: 1s
  - name: strict
    model: claude-sonnet-4-5
    tools: [calculator]
    approval_required: [calculator]
    approval_timeout: 1s
    on_approval_timeout: fail
worker:
  reclaim_interval: 200ms
  poll_interval: 50ms
`

// approvalEnv is a store with API keys and the agentd processes started on
// it, one after another.
type approvalEnv struct {
	t        *testing.T
	storeURL string
	dir      string
	// keys: tenant acme runs and approves, acme's runs-only key, and
	// another tenant's approver.
	runner, viewer, other string
	base                  string
}

func newApprovalEnv(t *testing.T, backend string) *approvalEnv {
	t.Helper()
	e := &approvalEnv{t: t, dir: t.TempDir()}
	switch backend {
	case "sqlite":
		e.storeURL = "sqlite://" + filepath.ToSlash(filepath.Join(e.dir, "agentd.db"))
	default:
		e.storeURL = pgtest.Schema(t, pgtest.BaseURL(t), 10)
	}
	be, err := OpenBackend(t.Context(), e.storeURL, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, be.Store.Migrate(t.Context()))
	mk := func(tenant string, scopes ...string) string {
		k, err := auth.CreateKey(t.Context(), be.Store, auth.CreateParams{Tenant: tenant, Scopes: scopes})
		require.NoError(t, err)
		return k.Token
	}
	e.runner = mk("acme", auth.ScopeRuns, auth.ScopeChat, auth.ScopeApprove)
	e.viewer = mk("acme", auth.ScopeRuns)
	e.other = mk("globex", auth.ScopeRuns, auth.ScopeApprove)
	require.NoError(t, be.Close())
	return e
}

// start starts an agentd (API and worker) on the store; stop stops it
// (every process of the deployment).
func (e *approvalEnv) start() (stop func()) {
	t := e.t
	t.Helper()
	yaml := fmt.Sprintf("server:\n  addr: 127.0.0.1:0\n  drain_delay: 0s\nstore:\n  url: %s\nauth:\n  mode: keys\n", e.storeURL) + approvalAgents
	path := filepath.Join(e.dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	a, err := New(t.Context(), cfg, Options{LogOutput: io.Discard, Version: "test"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	waitReady(t, a)
	e.base = "http://" + a.Addr().String()
	return func() {
		cancel()
		select {
		case err := <-errc:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("agentd did not stop")
		}
	}
}

// call sends a JSON request with key and decodes the JSON answer.
func (e *approvalEnv) call(method, path, key string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(e.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	require.NoError(e.t, json.Unmarshal(raw, &out), "%s %s: %s", method, path, raw)
	return resp.StatusCode, out
}

// waitStatus polls the run until its status is want.
func (e *approvalEnv) waitStatus(id, want string) map[string]any {
	e.t.Helper()
	var last map[string]any
	require.Eventually(e.t, func() bool {
		code, r := e.call("GET", "/v1/runs/"+id, e.runner, nil)
		last = r
		return code == http.StatusOK && r["status"] == want
	}, 30*time.Second, 20*time.Millisecond, "run %s never became %s (last: %v)", id, want, last)
	return last
}

// events reads the run's stored events (the stream ends at done or error).
func (e *approvalEnv) events(id string) []map[string]any {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.base+"/v1/runs/"+id+"/events", nil)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+e.runner)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	var evs []map[string]any
	var typ string
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var d map[string]any
			require.NoError(e.t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d))
			d["_type"] = typ
			evs = append(evs, d)
		}
	}
	return evs
}

func ofType(evs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["_type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

func submit(e *approvalEnv, agent, msg string) string {
	e.t.Helper()
	code, r := e.call("POST", "/v1/runs", e.runner, map[string]any{"agent": agent, "message": msg})
	require.Equal(e.t, http.StatusAccepted, code, "%v", r)
	return r["id"].(string)
}

func pendingOf(t *testing.T, r map[string]any) []map[string]any {
	t.Helper()
	list, _ := r["pending_approvals"].([]any)
	out := make([]map[string]any, len(list))
	for i, p := range list {
		out[i] = p.(map[string]any)
	}
	return out
}

// A run paused for approval survives a restart of every process, then
// completes after approve: the tool runs once; deny gives the model the
// reason; a second decision is 409; another tenant cannot decide (404),
// a key without the approve scope cannot (403).
func TestApprovalSurvivesRestartThenApprove(t *testing.T) {
	t.Parallel()
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		e := newApprovalEnv(t, backend)
		stop := e.start()
		approveID := submit(e, "demo", "please use the calculator")
		denyID := submit(e, "demo", "calculator again please")
		for _, id := range []string{approveID, denyID} {
			r := e.waitStatus(id, "requires_action")
			p := pendingOf(t, r)
			require.Len(t, p, 1, "%v", r)
			require.Equal(t, "calculator", p[0]["name"])
			require.NotEmpty(t, p[0]["tool_use_id"])
			require.NotEmpty(t, p[0]["expires_at"])
		}
		stop() // every process of the deployment

		stop = e.start()
		defer stop()
		r := e.waitStatus(approveID, "requires_action") // still paused after the restart
		toolUse := pendingOf(t, r)[0]["tool_use_id"].(string)

		// Bad input, the wrong tenant, the wrong scope.
		code, body := e.call("POST", "/v1/runs/"+approveID+"/approvals", e.runner, map[string]any{"tool_use_id": toolUse, "decision": "maybe"})
		require.Equal(t, http.StatusBadRequest, code, "%v", body)
		code, body = e.call("POST", "/v1/runs/"+approveID+"/approvals", e.runner, map[string]any{"tool_use_id": "toolu_nope", "decision": "approve"})
		require.Equal(t, http.StatusNotFound, code, "%v", body)
		require.Contains(t, body["error"].(map[string]any)["message"], "toolu_nope")
		code, body = e.call("POST", "/v1/runs/"+approveID+"/approvals", e.other, map[string]any{"tool_use_id": toolUse, "decision": "approve"})
		require.Equal(t, http.StatusNotFound, code, "another tenant's run: %v", body)
		code, body = e.call("POST", "/v1/runs/"+approveID+"/approvals", e.viewer, map[string]any{"tool_use_id": toolUse, "decision": "approve"})
		require.Equal(t, http.StatusForbidden, code, "%v", body)
		code, _ = e.call("GET", "/v1/runs/"+approveID, e.other, nil)
		require.Equal(t, http.StatusNotFound, code)

		code, body = e.call("POST", "/v1/runs/"+approveID+"/approvals", e.runner, map[string]any{"tool_use_id": toolUse, "decision": "approve"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "approve", body["approval"].(map[string]any)["decision"])
		code, body = e.call("POST", "/v1/runs/"+approveID+"/approvals", e.runner, map[string]any{"tool_use_id": toolUse, "decision": "deny"})
		require.Equal(t, http.StatusConflict, code, "decided twice: %v", body)

		done := e.waitStatus(approveID, "succeeded")
		require.Empty(t, pendingOf(t, done))
		evs := e.events(approveID)
		require.Len(t, ofType(evs, "approval_required"), 1)
		decided := ofType(evs, "approval_decided")
		require.Len(t, decided, 1)
		require.Equal(t, "approve", decided[0]["decision"])
		results := ofType(evs, "tool_result")
		require.Len(t, results, 1, "the approved call ran exactly once")
		require.Equal(t, false, results[0]["is_error"])
		require.Len(t, ofType(evs, "done"), 1)

		// Deny: the model gets the reason, the run goes on.
		r = e.waitStatus(denyID, "requires_action")
		toolUse = pendingOf(t, r)[0]["tool_use_id"].(string)
		code, body = e.call("POST", "/v1/runs/"+denyID+"/approvals", e.runner, map[string]any{"tool_use_id": toolUse, "decision": "deny", "reason": "not today"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		e.waitStatus(denyID, "succeeded")
		results = ofType(e.events(denyID), "tool_result")
		require.Len(t, results, 1)
		require.Equal(t, true, results[0]["is_error"])
		require.Contains(t, results[0]["content"], "not today")

		// Counted: one decision each, by this process.
		resp, err := http.Get(e.base + "/metrics")
		require.NoError(t, err)
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Contains(t, string(metrics), `agentd_approvals_total{decision="approve"} 1`)
		require.Contains(t, string(metrics), `agentd_approvals_total{decision="deny"} 1`)
		require.Contains(t, string(metrics), `agentd_approval_decision_seconds_count 2`)

		// The audit log has each request and decision, with who decided.
		code, body = e.call("GET", "/v1/audit?run_id="+approveID, e.runner, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		raw, _ := json.Marshal(body)
		require.Contains(t, string(raw), `"requested"`)
		require.Contains(t, string(raw), `"approval"`)
	})
}

// A sync chat that hits an approval answers at once with the pending
// calls; after the decision the run goes on as an async run and its turn
// lands in the conversation. Undecided calls time out: denied (the run
// goes on) or, with on_approval_timeout: fail, the run fails.
func TestApprovalChatAndTimeouts(t *testing.T) {
	t.Parallel()
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		e := newApprovalEnv(t, backend)
		stop := e.start()
		defer stop()

		code, ans := e.call("POST", "/v1/chat", e.runner, map[string]any{"agent": "demo", "message": "use the calculator"})
		require.Equal(t, http.StatusOK, code, "%v", ans)
		require.Equal(t, "approval_required", ans["stop_reason"])
		runID, convID := ans["run_id"].(string), ans["conversation_id"].(string)
		p := pendingOf(t, ans)
		require.Len(t, p, 1)
		e.waitStatus(runID, "requires_action")
		code, body := e.call("POST", "/v1/runs/"+runID+"/approvals", e.runner, map[string]any{"tool_use_id": p[0]["tool_use_id"], "decision": "approve"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		e.waitStatus(runID, "succeeded")
		code, conv := e.call("GET", "/v1/conversations/"+convID, e.runner, nil)
		require.Equal(t, http.StatusOK, code, "%v", conv)
		msgs, _ := conv["messages"].([]any)
		require.GreaterOrEqual(t, len(msgs), 4, "user, tool_use, tool_result, answer: %v", conv)

		lenient := submit(e, "lenient", "calculator please")
		strict := submit(e, "strict", "calculator please")
		e.waitStatus(lenient, "succeeded")
		results := ofType(e.events(lenient), "tool_result")
		require.Len(t, results, 1)
		require.Contains(t, results[0]["content"], "approval timed out")
		failed := e.waitStatus(strict, "failed")
		require.Contains(t, failed["error"], "approval")
	})
}
