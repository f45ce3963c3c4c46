package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/agentd/agentd/internal/observe/otlptest"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			v := kv.Value
			switch {
			case v.GetArrayValue() != nil:
				var parts []string
				for _, e := range v.GetArrayValue().Values {
					parts = append(parts, e.GetStringValue())
				}
				return strings.Join(parts, ",")
			case v.GetStringValue() != "":
				return v.GetStringValue()
			default:
				return fmt.Sprint(v.GetIntValue())
			}
		}
	}
	return ""
}

// TestServeTracesAndRedactsLogs runs a full serve with every kind of secret
// configured and tracing exported to an in-test OTLP receiver. It makes a
// chat and a queued run (submitted over HTTP, executed by the worker), and
// requests that carry secrets and secret-shaped values in error paths; then
// it checks the span tree (request → run → model call, tool call; the
// worker's run span in the submitting request's trace) and that no secret
// appears anywhere in the logs.
func TestServeTracesAndRedactsLogs(t *testing.T) {
	t.Parallel()
	rcv := otlptest.New(t)
	dir := t.TempDir()
	dbURL := "sqlite://" + filepath.ToSlash(filepath.Join(dir, "agentd.db"))
	secrets := map[string]string{
		"api_key":        "sk-ant-api03-" + randHex(16),
		"admin_token":    "adm" + randHex(12),
		"webhook_secret": "whs" + randHex(12),
		"redis_password": "rpw" + randHex(12),
		"tool_secret":    "tks" + randHex(12),
	}
	redisURL := fmt.Sprintf("redis://:%s@%s/0", secrets["redis_password"], freeAddr(t)) // nothing listens: errors get logged
	config := fmt.Sprintf(`server:
  addr: ADDR
  admin_token: ${env:ADMIN_TOKEN}
store:
  url: %s
providers:
  anthropic:
    api_key: ${env:ANTHROPIC_API_KEY}
    simulate: always
runs:
  webhook_secret: ${env:WEBHOOK_SECRET}
redis:
  url: ${env:REDIS_URL}
worker:
  poll_interval: 50ms
auth:
  mode: none
log:
  level: debug
  format: json
observability:
  otlp_endpoint: %s
  service_name: agentd-test
secrets:
  tool_key: ${env:TOOL_KEY}
agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [calculator, word_count]
`, dbURL, rcv.URL)
	environ := []string{
		"ANTHROPIC_API_KEY=" + secrets["api_key"], "ADMIN_TOKEN=" + secrets["admin_token"],
		"WEBHOOK_SECRET=" + secrets["webhook_secret"], "REDIS_URL=" + redisURL, "TOOL_KEY=" + secrets["tool_secret"],
	}
	// Not configured, but shaped like credentials: scrubbed by pattern.
	shaped := map[string]string{
		"other_anthropic_key": "sk-ant-admin01-" + randHex(16),
		"client_key":          "agd_" + strings.Repeat("abcdefgh2345", 4) + "abcd", // agd_ + 52 base32
	}
	bearerToken := "tok" + randHex(12) // secret only after "Bearer "
	s := startServe(t, config, environ)
	client := &http.Client{Timeout: 20 * time.Second}
	do := func(method, path, body string, header map[string]string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}

	// Secrets in error paths: in the path (logged by the access log), as
	// the request id (logged with every line), as an unknown agent, as a
	// wrong admin credential.
	all := map[string]string{"redis_url": redisURL}
	for k, v := range secrets {
		all[k] = v
	}
	for k, v := range shaped {
		all[k] = v
	}
	for name, v := range all {
		code, _ := do("GET", "/v1/conversations/"+url.PathEscape(v), "", map[string]string{"X-Request-ID": v})
		require.Equal(t, http.StatusNotFound, code, name)
		code, _ = do("POST", "/v1/chat", fmt.Sprintf(`{"agent":%q,"message":"hi"}`, v), map[string]string{"X-Request-ID": v})
		require.GreaterOrEqual(t, code, 400, name)
		code, _ = do("GET", "/admin/keys", "", map[string]string{"Authorization": "Bearer x" + v})
		require.Equal(t, http.StatusUnauthorized, code, name)
		code, _ = do("GET", "/v1/nowhere/"+url.PathEscape(v), "", nil)
		require.Equal(t, http.StatusNotFound, code, name)
	}
	code, _ := do("GET", "/v1/conversations/"+url.PathEscape("Bearer "+bearerToken), "", nil)
	require.Equal(t, http.StatusNotFound, code)

	// A chat with a tool call: request → run → model calls, tool call.
	const chatTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	code, body := do("POST", "/v1/chat", `{"agent":"demo","message":"What is 3 times 4? Use the calculator."}`,
		map[string]string{"traceparent": "00-" + chatTrace + "-00f067aa0ba902b7-01"})
	require.Equal(t, http.StatusOK, code, string(body))

	// A queued run, submitted over HTTP and executed by the worker.
	code, body = do("POST", "/v1/runs", `{"agent":"demo","message":"What is 6 times 7? Use the calculator."}`, nil)
	require.Equal(t, http.StatusAccepted, code, string(body))
	var sub struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(body, &sub))
	require.Eventually(t, func() bool {
		_, b := do("GET", "/v1/runs/"+sub.ID, "", nil)
		var rn struct {
			Status string `json:"status"`
		}
		return json.Unmarshal(b, &rn) == nil && rn.Status == "succeeded"
	}, 20*time.Second, 50*time.Millisecond)

	s.stop(t) // flushes the spans
	logs := s.stderr.String()

	// Logs: no secret anywhere, and the lines that carried one show the mask.
	all["bearer_token"] = bearerToken
	for name, v := range all {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, v) {
				t.Errorf("%s leaked into the log line %s", name, line)
			}
		}
	}
	require.NotContains(t, logs, secrets["redis_password"])
	require.Contains(t, logs, `"path":"/v1/conversations/[redacted]"`)
	require.Contains(t, logs, "Bearer [redacted]")
	require.Contains(t, logs, `"trace_id":"`+chatTrace+`"`, "log lines carry the trace id")

	// Spans.
	spans := rcv.Spans()
	byID := map[string]*tracepb.Span{}
	for _, sp := range spans {
		byID[hex.EncodeToString(sp.SpanId)] = sp
	}
	parent := func(sp *tracepb.Span) *tracepb.Span { return byID[hex.EncodeToString(sp.ParentSpanId)] }
	find := func(pred func(*tracepb.Span) bool) []*tracepb.Span {
		var out []*tracepb.Span
		for _, sp := range spans {
			if pred(sp) {
				out = append(out, sp)
			}
		}
		return out
	}
	inTrace := func(trace string) func(*tracepb.Span) bool {
		return func(sp *tracepb.Span) bool { return hex.EncodeToString(sp.TraceId) == trace }
	}

	// The chat: its request span continues the caller's trace.
	chat := find(inTrace(chatTrace))
	names := []string{}
	for _, sp := range chat {
		names = append(names, sp.Name)
	}
	var req, run *tracepb.Span
	var models, tools []*tracepb.Span
	for _, sp := range chat {
		switch {
		case sp.Name == "POST /v1/chat":
			req = sp
		case sp.Name == "invoke_agent demo":
			run = sp
		case strings.HasPrefix(sp.Name, "chat "):
			models = append(models, sp)
		case strings.HasPrefix(sp.Name, "execute_tool "):
			tools = append(tools, sp)
		}
	}
	require.NotNil(t, req, "spans of the chat trace: %v", names)
	require.NotNil(t, run, names)
	require.Equal(t, "00f067aa0ba902b7", hex.EncodeToString(req.ParentSpanId), "the request span's parent is the caller's")
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, req.Kind)
	require.Equal(t, "200", spanAttr(req, "http.response.status_code"))
	require.Same(t, req, parent(run))
	require.Len(t, models, 2, names)
	for _, m := range models {
		require.Same(t, run, parent(m))
		require.Equal(t, "anthropic", spanAttr(m, "gen_ai.system"))
		require.Equal(t, "claude-sonnet-4-5", spanAttr(m, "gen_ai.request.model"))
		require.NotEmpty(t, spanAttr(m, "gen_ai.response.model"))
		require.NotEqual(t, "0", spanAttr(m, "gen_ai.usage.input_tokens"))
		require.NotEqual(t, "0", spanAttr(m, "gen_ai.usage.output_tokens"))
	}
	finish := []string{spanAttr(models[0], "gen_ai.response.finish_reasons"), spanAttr(models[1], "gen_ai.response.finish_reasons")}
	require.ElementsMatch(t, []string{"tool_use", "end_turn"}, finish)
	require.Len(t, tools, 1, names)
	require.Equal(t, "execute_tool calculator", tools[0].Name)
	require.Same(t, run, parent(tools[0]))

	// The queued run: the worker's run span is a child of the span of the
	// request that submitted it (POST /v1/runs), in the same trace.
	var qrun *tracepb.Span
	for _, sp := range find(func(sp *tracepb.Span) bool { return spanAttr(sp, "agentd.run_id") == sub.ID }) {
		qrun = sp
	}
	require.NotNil(t, qrun, "the worker's run span was exported")
	submit := parent(qrun)
	require.NotNil(t, submit, "the run span's parent was exported")
	require.Equal(t, "POST /v1/runs", submit.Name)
	require.Equal(t, submit.TraceId, qrun.TraceId)
	qspans := find(inTrace(hex.EncodeToString(qrun.TraceId)))
	var qmodels, qtools int
	for _, sp := range qspans {
		switch {
		case strings.HasPrefix(sp.Name, "chat "):
			require.Same(t, qrun, parent(sp))
			qmodels++
		case strings.HasPrefix(sp.Name, "execute_tool "):
			require.Same(t, qrun, parent(sp))
			qtools++
		}
	}
	require.Equal(t, 2, qmodels)
	require.Equal(t, 1, qtools)

	// Spans carry no secret either (paths and error messages are scrubbed).
	raw, err := proto.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	require.NoError(t, err)
	for name, v := range all {
		require.False(t, strings.Contains(string(raw), v), "%s leaked into a span", name)
	}
	require.Contains(t, rcv.Paths(), "/v1/traces")
}
