package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/ratelimit"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/tool"
)

const (
	testSimKey   = "sim-test-key"
	testModel    = "claude-sonnet-4-5"
	testMaxBody  = 4096
	demoAgent    = "demo"
	otherAgent   = "other"
	jsonType     = "application/json"
	eventStream  = "text/event-stream"
	reqIDPattern = `^req_[0-9a-f]{24}$`
)

// testBundle is a whole agentd API in process: the server behind a real
// HTTP listener, a real SQLite file, and the Anthropic simulator behind a
// second real HTTP listener, reached through the production anthropic
// client.
type testBundle struct {
	URL     string
	Client  *http.Client
	API     *server.Server
	Store   *sqlite.Store
	Health  *server.Health
	Metrics *observe.Metrics

	// headers are sent with every request (a test's API key); a request's
	// own headers win.
	headers map[string]string

	// sim is the simulator currently answering; setSim swaps it so a test
	// can inject faults or latency after setting up a conversation.
	sim atomic.Pointer[sim.Server]
}

type bundleConfig struct {
	sim          sim.Config
	agentTimeout time.Duration
	maxBody      int64
	auth         bool // API keys required (withAuth)
	rateLimit    *ratelimit.Limiter
	secrets      *run.MessageGuard
	budgets      *config.Budgets
	maxCostUSD   float64         // the demo agent's max_cost_usd
	abuse        *abuse.Detector // nil: no abuse detection
	adminToken   string          // "": no admin API
	tenants      *admission.TenantLimiter
	log          *slog.Logger // nil: discarded
}

type bundleOption func(*bundleConfig)

func withSim(c sim.Config) bundleOption { return func(b *bundleConfig) { b.sim = c } }

func withAgentTimeout(d time.Duration) bundleOption {
	return func(b *bundleConfig) { b.agentTimeout = d }
}

// setup builds a testBundle. Agents: "demo" (the built-in tools) and
// "other" (no tools).
func setup(t *testing.T, opts ...bundleOption) *testBundle {
	t.Helper()
	cfg := bundleConfig{agentTimeout: 30 * time.Second, maxBody: testMaxBody}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	if cfg.log != nil {
		log = cfg.log
	}
	b := &testBundle{}

	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) }) // runs last
	require.NoError(t, st.Migrate(t.Context()))
	b.Store = st

	b.setSim(cfg.sim)
	simSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.sim.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	model := anthropic.New(anthropic.Config{BaseURL: simSrv.URL, APIKey: testSimKey})

	agents := map[string]*run.ChatAgent{
		demoAgent: {Agent: run.Agent{
			Name: demoAgent, Model: testModel, System: "You are a test agent.", Tools: tool.Builtins(nil),
			MaxSteps: 8, MaxTokens: 1024, Timeout: cfg.agentTimeout, MaxCostUSD: cfg.maxCostUSD,
		}, MaxMessages: 100},
		otherAgent: {Agent: run.Agent{
			Name: otherAgent, Model: testModel, MaxSteps: 4, MaxTokens: 256, Timeout: cfg.agentTimeout,
		}, MaxMessages: 100},
	}
	infos := []server.AgentInfo{{Name: demoAgent, Model: testModel, Tools: []server.ToolInfo{}}, {Name: otherAgent, Model: testModel, Tools: []server.ToolInfo{}}}
	for _, tl := range agents[demoAgent].Tools {
		s := tl.Spec()
		infos[0].Tools = append(infos[0].Tools, server.ToolInfo{Name: s.Name, Description: s.Description, Source: "builtin"})
	}

	b.Metrics = observe.NewMetrics("test")
	loop := &run.Loop{Model: model, Store: st, Log: log, Metrics: b.Metrics, Tokens: cfg.rateLimit}
	if cfg.budgets != nil {
		loop.Pricing = cost.New(nil, log)
		loop.Budget = budget.New(*cfg.budgets, st, loop.Pricing, b.Metrics, log)
	}
	var guard server.AbuseGuard
	if cfg.abuse != nil {
		loop.Usage = &abuse.Recorder{Next: st, Detector: cfg.abuse}
		guard = cfg.abuse
	}
	svc := &run.Service{Loop: loop, Store: st, Agents: agents, ConversationTTL: time.Hour, Log: log, Metrics: b.Metrics,
		Secrets: cfg.secrets}
	b.Health = &server.Health{Store: st, Version: "test", Log: log}
	b.Health.MarkStarted(time.Now())
	b.API = server.New(server.Config{
		Chat: svc, Conversations: st, Agents: infos, Health: b.Health, Metrics: b.Metrics, Log: log,
		MaxBodyBytes: cfg.maxBody, SSEPingInterval: time.Hour, Auth: testAuth(cfg.auth, st), RateLimit: cfg.rateLimit,
		Abuse: guard, AdminToken: cfg.adminToken, Tenants: cfg.tenants,
	})
	srv := httptest.NewServer(b.API)
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	b.Client = srv.Client()
	return b
}

// setSim replaces the simulator answering model calls.
func (b *testBundle) setSim(cfg sim.Config) *sim.Server {
	cfg.APIKey = testSimKey
	s := sim.New(cfg, nil)
	b.sim.Store(s)
	return s
}

// response is a read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (b *testBundle) do(t *testing.T, method, path, body string, header map[string]string) response {
	t.Helper()
	resp, err := b.send(t.Context(), method, path, body, header)
	require.NoError(t, err)
	return resp
}

// send is do for goroutines other than the test's: it returns errors.
func (b *testBundle) send(ctx context.Context, method, path, body string, header map[string]string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", jsonType)
	}
	for k, v := range b.headers {
		req.Header.Set(k, v)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}, err
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return string(data)
}

func (b *testBundle) postChat(t *testing.T, req map[string]any) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, req), nil)
}

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   string          `json:"content"`
	IsError   bool            `json:"is_error"`
}

type usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

type answer struct {
	RunID          string  `json:"run_id"`
	ConversationID string  `json:"conversation_id"`
	Agent          string  `json:"agent"`
	Content        []block `json:"content"`
	Text           string  `json:"text"`
	StopReason     string  `json:"stop_reason"`
	Steps          int     `json:"steps"`
	Usage          usage   `json:"usage"`
}

// chatOK posts a chat request, requires 200 and returns the answer.
func (b *testBundle) chatOK(t *testing.T, req map[string]any) answer {
	t.Helper()
	resp := b.postChat(t, req)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	var a answer
	require.NoError(t, json.Unmarshal(resp.Body, &a))
	return a
}

type errorBody struct {
	Error struct {
		Type      string `json:"type"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
		RunID     string `json:"run_id"`
	} `json:"error"`
}

// requireError checks an error answer's status, JSON shape, type and
// request id, and returns its body.
func requireError(t *testing.T, resp response, status int, typ string) errorBody {
	t.Helper()
	require.Equal(t, status, resp.Status, "body: %s", resp.Body)
	require.Equal(t, jsonType, resp.Header.Get("Content-Type"))
	var e errorBody
	dec := json.NewDecoder(strings.NewReader(string(resp.Body)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&e), "body: %s", resp.Body)
	require.Equal(t, typ, e.Error.Type, "body: %s", resp.Body)
	require.NotEmpty(t, e.Error.Message)
	require.NotEmpty(t, e.Error.RequestID)
	require.Equal(t, resp.Header.Get("X-Request-ID"), e.Error.RequestID)
	return e
}

type conversation struct {
	ID        string     `json:"id"`
	Agent     string     `json:"agent"`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Messages  []struct {
		Seq       int64           `json:"seq"`
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		CreatedAt time.Time       `json:"created_at"`
	} `json:"messages"`
}

func (b *testBundle) getConversation(t *testing.T, id string) conversation {
	t.Helper()
	resp := b.do(t, http.MethodGet, "/v1/conversations/"+id, "", nil)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	require.Equal(t, jsonType, resp.Header.Get("Content-Type"))
	var c conversation
	require.NoError(t, json.Unmarshal(resp.Body, &c))
	return c
}

func roles(c conversation) []string {
	out := make([]string, len(c.Messages))
	for i, m := range c.Messages {
		out[i] = m.Role
	}
	return out
}

// sseEvent is one server-sent event.
type sseEvent struct {
	ID    string
	Event string
	Data  string
}

// parseSSE parses a text/event-stream body per the HTML spec's rules that
// matter here: fields "id", "event", "data" (several data lines join with
// "\n"), comment lines starting with ':', an optional single space after
// the colon, and a blank line dispatching the event.
func parseSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	events, err := readSSE(r)
	require.NoError(t, err)
	return events
}

// readSSE is parseSSE for goroutines other than the test's.
func readSSE(r io.Reader) ([]sseEvent, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var (
		events  []sseEvent
		cur     sseEvent
		data    []string
		pending bool
	)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if pending {
				cur.Data = strings.Join(data, "\n")
				events = append(events, cur)
			}
			cur, data, pending = sseEvent{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			cur.ID = value
		case "event":
			cur.Event = value
		case "data":
			data = append(data, value)
		default:
			return events, fmt.Errorf("unexpected SSE field %q in line %q", field, line)
		}
		pending = true
	}
	if err := sc.Err(); err != nil {
		return events, err
	}
	if pending {
		return events, errors.New("stream ended in the middle of an event")
	}
	return events, nil
}

// stream posts a streaming chat request and returns the events.
func (b *testBundle) stream(t *testing.T, req map[string]any) (*http.Response, []sseEvent) {
	t.Helper()
	req["stream"] = true
	hreq, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+"/v1/chat", strings.NewReader(mustJSON(t, req)))
	require.NoError(t, err)
	hreq.Header.Set("Content-Type", jsonType)
	resp, err := b.Client.Do(hreq)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, eventStream, resp.Header.Get("Content-Type"))
	return resp, parseSSE(t, resp.Body)
}

// requireSeqIDs checks ids 1..n, strictly increasing by one.
func requireSeqIDs(t *testing.T, events []sseEvent) {
	t.Helper()
	for i, ev := range events {
		id, err := strconv.ParseInt(ev.ID, 10, 64)
		require.NoError(t, err, "event %d id %q", i, ev.ID)
		require.Equal(t, int64(i+1), id, "event %d (%s)", i, ev.Event)
		require.True(t, json.Valid([]byte(ev.Data)), "event %d data %q", i, ev.Data)
	}
}

func eventTypes(events []sseEvent) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.Event
	}
	return out
}

func TestChatAnswerShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "Hello there, how are you today?"})
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	require.Equal(t, jsonType, resp.Header.Get("Content-Type"))

	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(resp.Body, &raw))
	for _, k := range []string{"conversation_id", "run_id", "agent", "content", "text", "stop_reason", "usage", "steps"} {
		require.Contains(t, raw, k)
	}

	var a answer
	require.NoError(t, json.Unmarshal(resp.Body, &a))
	require.True(t, strings.HasPrefix(a.ConversationID, "conv_"), a.ConversationID)
	require.True(t, strings.HasPrefix(a.RunID, "run_"), a.RunID)
	require.Equal(t, demoAgent, a.Agent)
	require.Equal(t, "end_turn", a.StopReason)
	require.Equal(t, 1, a.Steps)
	require.NotEmpty(t, a.Text)
	require.Len(t, a.Content, 1)
	require.Equal(t, "text", a.Content[0].Type)
	require.Equal(t, a.Text, a.Content[0].Text)
	require.Positive(t, a.Usage.InputTokens)
	require.Positive(t, a.Usage.OutputTokens)

	c := b.getConversation(t, a.ConversationID)
	require.Equal(t, a.ConversationID, c.ID)
	require.Equal(t, demoAgent, c.Agent)
	require.Equal(t, []string{"user", "assistant"}, roles(c))
	require.NotNil(t, c.ExpiresAt, "a TTL is configured")
}

func TestChatToolUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "What is 6 times 7? Use the calculator."})
	require.Equal(t, 2, a.Steps, "one model call asks for the tool, one answers with its result")
	require.Equal(t, "end_turn", a.StopReason)
	require.Contains(t, a.Text, "calculator")

	// user, assistant(tool_use), user(tool_result), assistant(text).
	c := b.getConversation(t, a.ConversationID)
	require.Equal(t, []string{"user", "assistant", "user", "assistant"}, roles(c))
	var toolUse, toolResult []block
	require.NoError(t, json.Unmarshal(c.Messages[1].Content, &toolUse))
	require.NoError(t, json.Unmarshal(c.Messages[2].Content, &toolResult))
	var use block
	for _, bl := range toolUse {
		if bl.Type == "tool_use" {
			use = bl
		}
	}
	require.Equal(t, "calculator", use.Name)
	require.NotEmpty(t, use.ID)
	require.Len(t, toolResult, 1)
	require.Equal(t, "tool_result", toolResult[0].Type)
	require.Equal(t, use.ID, toolResult[0].ToolUseID)
}

func TestConversationFollowUpGetDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "Remember the word pineapple."})
	second := b.chatOK(t, map[string]any{"agent": demoAgent, "conversation_id": first.ConversationID, "message": "Which word was it?"})
	require.Equal(t, first.ConversationID, second.ConversationID)
	require.NotEqual(t, first.RunID, second.RunID)

	c := b.getConversation(t, first.ConversationID)
	require.Equal(t, first.ConversationID, c.ID)
	require.Equal(t, demoAgent, c.Agent)
	require.Equal(t, int64(2), c.Version, "one version per turn")
	require.Equal(t, []string{"user", "assistant", "user", "assistant"}, roles(c))
	for i := 1; i < len(c.Messages); i++ {
		require.Greater(t, c.Messages[i].Seq, c.Messages[i-1].Seq, "messages in seq order")
	}
	require.False(t, c.CreatedAt.IsZero())
	require.False(t, c.UpdatedAt.Before(c.CreatedAt))
	var userText []block
	require.NoError(t, json.Unmarshal(c.Messages[2].Content, &userText))
	require.Equal(t, []block{{Type: "text", Text: "Which word was it?"}}, userText)

	resp := b.do(t, http.MethodDelete, "/v1/conversations/"+first.ConversationID, "", nil)
	require.Equal(t, http.StatusNoContent, resp.Status, "body: %s", resp.Body)
	require.Empty(t, resp.Body)
	requireError(t, b.do(t, http.MethodGet, "/v1/conversations/"+first.ConversationID, "", nil), http.StatusNotFound, "not_found")
	requireError(t, b.do(t, http.MethodDelete, "/v1/conversations/"+first.ConversationID, "", nil), http.StatusNotFound, "not_found")
	// A message to the deleted conversation is refused too.
	requireError(t, b.postChat(t, map[string]any{"agent": demoAgent, "conversation_id": first.ConversationID, "message": "hi"}),
		http.StatusNotFound, "not_found")
}

func TestChatStream(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		resp, events := b.stream(t, map[string]any{"agent": demoAgent, "message": "Tell me a short story about a lighthouse keeper please."})
		require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
		require.NotEmpty(t, resp.Header.Get("X-Request-ID"))
		require.GreaterOrEqual(t, len(events), 3)
		requireSeqIDs(t, events)
		types := eventTypes(events)
		require.Equal(t, "start", types[0])
		require.Equal(t, "done", types[len(types)-1])
		require.Contains(t, types, "text_delta")
		require.Contains(t, types, "usage")
		require.NotContains(t, types, "error")

		var start struct {
			RunID          string `json:"run_id"`
			ConversationID string `json:"conversation_id"`
			Agent          string `json:"agent"`
			Model          string `json:"model"`
		}
		require.NoError(t, json.Unmarshal([]byte(events[0].Data), &start))
		require.Equal(t, demoAgent, start.Agent)
		require.Equal(t, testModel, start.Model)

		var done answer
		require.NoError(t, json.Unmarshal([]byte(events[len(events)-1].Data), &done))
		require.Equal(t, start.RunID, done.RunID)
		require.Equal(t, start.ConversationID, done.ConversationID)
		require.Equal(t, 1, done.Steps)

		// The deltas spell out the answer's text.
		var text strings.Builder
		for _, ev := range events {
			if ev.Event == "text_delta" {
				var d struct {
					Step int    `json:"step"`
					Text string `json:"text"`
				}
				require.NoError(t, json.Unmarshal([]byte(ev.Data), &d))
				require.Equal(t, 1, d.Step)
				text.WriteString(d.Text)
			}
		}
		require.Equal(t, done.Text, text.String())

		// The streamed turn is stored like a JSON one.
		c := b.getConversation(t, done.ConversationID)
		require.Equal(t, []string{"user", "assistant"}, roles(c))
	})

	t.Run("tools", func(t *testing.T) {
		t.Parallel()
		_, events := b.stream(t, map[string]any{"agent": demoAgent, "message": "Count the words with word_count: one two three"})
		requireSeqIDs(t, events)
		types := eventTypes(events)
		require.Equal(t, "start", types[0])
		require.Equal(t, "done", types[len(types)-1])
		require.Contains(t, types, "tool_use")
		require.Contains(t, types, "tool_result")
		var done answer
		require.NoError(t, json.Unmarshal([]byte(events[len(events)-1].Data), &done))
		require.Equal(t, 2, done.Steps)
	})
}

func TestChatStreamUpstreamError(t *testing.T) {
	t.Parallel()
	b := setup(t, withSim(sim.Config{Rate500: 1}))
	_, events := b.stream(t, map[string]any{"agent": demoAgent, "message": "hello"})
	requireSeqIDs(t, events)
	require.Equal(t, []string{"start", "error"}, eventTypes(events))
	var e struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal([]byte(events[1].Data), &e))
	require.Equal(t, "upstream_error", e.Type)
}

func TestChatBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := `{"agent":"demo","message":"` + strings.Repeat("a", 2*testMaxBody) + `"}`
	cases := []struct {
		name        string
		body        string
		contentType string
		status      int
		typ         string
		msgContains string
	}{
		{name: "malformed", body: `{"agent":"demo","message":`, status: 400, typ: "invalid_request"},
		{name: "syntax", body: `{"agent":"demo" "message":"hi"}`, status: 400, typ: "invalid_request", msgContains: "malformed JSON"},
		{name: "empty", body: ` `, status: 400, typ: "invalid_request", msgContains: "empty"},
		{name: "unknown field", body: `{"agent":"demo","message":"hi","temperature":0.5}`, status: 400, typ: "invalid_request", msgContains: `"temperature"`},
		{name: "wrong type", body: `{"agent":"demo","message":5}`, status: 400, typ: "invalid_request", msgContains: "message"},
		{name: "wrong type stream", body: `{"agent":"demo","message":"hi","stream":"yes"}`, status: 400, typ: "invalid_request", msgContains: "stream"},
		{name: "not an object", body: `["demo","hi"]`, status: 400, typ: "invalid_request", msgContains: "object"},
		{name: "missing message", body: `{"agent":"demo"}`, status: 400, typ: "invalid_request", msgContains: "message"},
		{name: "blank message", body: `{"agent":"demo","message":" \n\t"}`, status: 400, typ: "invalid_request", msgContains: "message"},
		{name: "missing agent", body: `{"message":"hi"}`, status: 400, typ: "invalid_request", msgContains: "agent"},
		{name: "null", body: `null`, status: 400, typ: "invalid_request"},
		{name: "trailing garbage", body: `{"agent":"demo","message":"hi"} garbage`, status: 400, typ: "invalid_request"},
		{name: "two objects", body: `{"agent":"demo","message":"hi"}{"agent":"demo","message":"hi"}`, status: 400, typ: "invalid_request"},
		{name: "long conversation id", body: `{"agent":"demo","message":"hi","conversation_id":"` + strings.Repeat("c", 129) + `"}`, status: 400, typ: "invalid_request", msgContains: "conversation_id"},
		{name: "too large", body: big, status: 413, typ: "request_too_large"},
		{name: "too large trailing space", body: `{"agent":"demo","message":"hi"}` + strings.Repeat(" ", 2*testMaxBody), status: 413, typ: "request_too_large"},
		{name: "text/plain", body: `{"agent":"demo","message":"hi"}`, contentType: "text/plain", status: 415, typ: "unsupported_media_type"},
		{name: "bad media type", body: `{"agent":"demo","message":"hi"}`, contentType: "application/json;;;=", status: 415, typ: "unsupported_media_type"},
		{name: "unknown agent", body: `{"agent":"nobody","message":"hi"}`, status: 404, typ: "not_found"},
		{name: "unknown conversation", body: `{"agent":"demo","message":"hi","conversation_id":"conv_nope"}`, status: 404, typ: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := map[string]string{}
			if tc.contentType != "" {
				h["Content-Type"] = tc.contentType
			}
			resp := b.do(t, http.MethodPost, "/v1/chat", tc.body, h)
			e := requireError(t, resp, tc.status, tc.typ)
			require.Regexp(t, reqIDPattern, e.Error.RequestID)
			if tc.msgContains != "" {
				require.Contains(t, e.Error.Message, tc.msgContains)
			}
		})
	}

	t.Run("content type with charset is accepted", func(t *testing.T) {
		t.Parallel()
		resp := b.do(t, http.MethodPost, "/v1/chat", `{"agent":"demo","message":"hi"}`, map[string]string{"Content-Type": "application/json; charset=utf-8"})
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	})
	t.Run("no content type is accepted", func(t *testing.T) {
		t.Parallel()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+"/v1/chat", strings.NewReader(`{"agent":"demo","message":"hi"}`))
		require.NoError(t, err)
		resp, err := b.Client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
}

func TestChatConversationOfAnotherAgent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})
	before := b.getConversation(t, a.ConversationID)
	e := requireError(t, b.postChat(t, map[string]any{"agent": otherAgent, "conversation_id": a.ConversationID, "message": "hi"}),
		http.StatusConflict, "conflict")
	require.Contains(t, e.Error.Message, "another agent")
	require.Equal(t, before, b.getConversation(t, a.ConversationID))
}

func TestChatBusyConversation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})

	slow := b.setSim(sim.Config{Latency: 2 * time.Second})
	type result struct {
		resp response
		err  error
	}
	first := make(chan result, 1)
	body := mustJSON(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "slow one"})
	go func() {
		resp, err := b.send(t.Context(), http.MethodPost, "/v1/chat", body, nil)
		first <- result{resp, err}
	}()
	// The first message is in flight once its model call reached the
	// simulator (the conversation is held before the call).
	require.Eventually(t, func() bool { return slow.Requests() >= 1 }, 10*time.Second, 2*time.Millisecond)

	e := requireError(t, b.postChat(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "impatient"}),
		http.StatusConflict, "conflict")
	require.Contains(t, e.Error.Message, "busy")
	require.Equal(t, int64(1), slow.Requests(), "the refused message made no model call")

	res := <-first
	require.NoError(t, res.err)
	require.Equal(t, http.StatusOK, res.resp.Status, "body: %s", res.resp.Body)

	// Once the first finished, the conversation takes messages again.
	b.setSim(sim.Config{})
	b.chatOK(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "now"})
	c := b.getConversation(t, a.ConversationID)
	require.Equal(t, int64(3), c.Version)
	require.Len(t, c.Messages, 6)
}

func TestChatUpstreamFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		sim        sim.Config
		timeout    time.Duration
		status     int
		typ        string
		retryAfter string
	}{
		{name: "500", sim: sim.Config{Rate500: 1}, status: http.StatusBadGateway, typ: "upstream_error"},
		{name: "529", sim: sim.Config{Rate529: 1}, status: http.StatusServiceUnavailable, typ: "upstream_unavailable", retryAfter: "1"},
		{name: "429", sim: sim.Config{Rate429: 1, RetryAfter: 2500 * time.Millisecond}, status: http.StatusServiceUnavailable, typ: "upstream_unavailable", retryAfter: "3"},
		{name: "cut", sim: sim.Config{RateCut: 1, Words: 200}, status: http.StatusBadGateway, typ: "upstream_error"},
		{name: "timeout", sim: sim.Config{Latency: time.Minute}, timeout: 2 * time.Second, status: http.StatusGatewayTimeout, typ: "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []bundleOption
			if tc.timeout > 0 {
				opts = append(opts, withAgentTimeout(tc.timeout))
			}
			b := setup(t, opts...)

			// New conversation: the failure leaves none behind.
			b.setSim(tc.sim)
			resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello"})
			e := requireError(t, resp, tc.status, tc.typ)
			require.True(t, strings.HasPrefix(e.Error.RunID, "run_"), "error names the run: %s", resp.Body)
			require.Equal(t, tc.retryAfter, resp.Header.Get("Retry-After"))

			// Existing conversation: left exactly as it was.
			b.setSim(sim.Config{})
			a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})
			before := b.getConversation(t, a.ConversationID)
			b.setSim(tc.sim)
			resp = b.postChat(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "again"})
			requireError(t, resp, tc.status, tc.typ)
			require.Equal(t, tc.retryAfter, resp.Header.Get("Retry-After"))
			after := b.getConversation(t, a.ConversationID)
			require.Equal(t, before, after)
			require.Equal(t, int64(1), after.Version)
			require.Len(t, after.Messages, 2)

			// And the conversation is not left busy.
			b.setSim(sim.Config{})
			b.chatOK(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "recovered"})
		})
	}
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/nope"},
		{http.MethodGet, "/"},
		{http.MethodPost, "/v1/chats"},
		{http.MethodGet, "/v1/conversations/"},
	} {
		e := requireError(t, b.do(t, tc.method, tc.path, "", nil), http.StatusNotFound, "not_found")
		require.Contains(t, e.Error.Message, tc.path)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp := b.do(t, http.MethodGet, "/livez", "", map[string]string{"X-Request-ID": "client-id_1.2:3"})
	require.Equal(t, "client-id_1.2:3", resp.Header.Get("X-Request-ID"))

	e := requireError(t, b.do(t, http.MethodPost, "/v1/chat", `{`, map[string]string{"X-Request-ID": "abc-123"}), 400, "invalid_request")
	require.Equal(t, "abc-123", e.Error.RequestID)

	for _, bad := range []string{"has space", strings.Repeat("x", 129), "semi;colon", "é"} {
		resp := b.do(t, http.MethodGet, "/livez", "", map[string]string{"X-Request-ID": bad})
		require.Regexp(t, reqIDPattern, resp.Header.Get("X-Request-ID"), "replaces %q", bad)
	}

	resp = b.do(t, http.MethodGet, "/livez", "", nil)
	require.Regexp(t, reqIDPattern, resp.Header.Get("X-Request-ID"))
	other := b.do(t, http.MethodGet, "/livez", "", nil)
	require.NotEqual(t, resp.Header.Get("X-Request-ID"), other.Header.Get("X-Request-ID"))
}

func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp := b.do(t, http.MethodGet, "/livez", "", nil)
	require.Equal(t, http.StatusOK, resp.Status)
	require.JSONEq(t, `{"status":"ok"}`, string(resp.Body))

	readyz := func() int { return b.do(t, http.MethodGet, "/readyz", "", nil).Status }
	require.Equal(t, http.StatusServiceUnavailable, readyz(), "not ready before SetReady")
	b.Health.SetReady(true)
	require.Equal(t, http.StatusServiceUnavailable, readyz(), "no store check has run yet")
	b.Health.Check(t.Context())
	require.Equal(t, http.StatusOK, readyz())

	resp = b.do(t, http.MethodGet, "/healthz", "", nil)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	require.Equal(t, jsonType, resp.Header.Get("Content-Type"))
	var h struct {
		Status     string `json:"status"`
		Ready      bool   `json:"ready"`
		Version    string `json:"version"`
		Components struct {
			Store struct {
				Status    string    `json:"status"`
				LastError string    `json:"last_error"`
				CheckedAt time.Time `json:"checked_at"`
			} `json:"store"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &h))
	require.Equal(t, "ok", h.Status)
	require.True(t, h.Ready)
	require.Equal(t, "test", h.Version)
	require.Equal(t, "ok", h.Components.Store.Status)
	require.Empty(t, h.Components.Store.LastError)
	require.False(t, h.Components.Store.CheckedAt.IsZero())

	b.Health.SetReady(false)
	require.Equal(t, http.StatusServiceUnavailable, readyz(), "draining")
}

func TestHealthStoreDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Health.SetReady(true)
	b.Health.Store = pingerFunc(func(context.Context) error { return io.ErrClosedPipe })
	b.Health.Check(t.Context())
	resp := b.do(t, http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	require.Contains(t, string(resp.Body), "store unreachable")
	resp = b.do(t, http.MethodGet, "/healthz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	require.Contains(t, string(resp.Body), `"status":"down"`)
}

type pingerFunc func(context.Context) error

func (f pingerFunc) Ping(ctx context.Context) error { return f(ctx) }

func TestAgentsEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp := b.do(t, http.MethodGet, "/v1/agents", "", nil)
	require.Equal(t, http.StatusOK, resp.Status)
	var body struct {
		Agents []server.AgentInfo `json:"agents"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &body))
	require.Len(t, body.Agents, 2)
	require.Equal(t, demoAgent, body.Agents[0].Name)
	var names []string
	for _, tl := range body.Agents[0].Tools {
		names = append(names, tl.Name)
	}
	require.ElementsMatch(t, []string{"clock", "calculator", "word_count"}, names)
	require.NotNil(t, body.Agents[1].Tools)
	require.Empty(t, body.Agents[1].Tools)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.chatOK(t, map[string]any{"agent": demoAgent, "message": "count my tokens"})
	b.do(t, http.MethodGet, "/nope", "", nil)

	resp := b.do(t, http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, resp.Status)
	text := string(resp.Body)
	require.Regexp(t, regexp.MustCompile(`(?m)^agentd_http_requests_total\{code="200",method="POST",route="POST /v1/chat"\} 1$`), text)
	require.Regexp(t, regexp.MustCompile(`(?m)^agentd_http_requests_total\{code="404",method="GET",route="unmatched"\} 1$`), text)
	require.Regexp(t, regexp.MustCompile(`(?m)^agentd_llm_tokens_total\{agent="demo",kind="input",model="`+testModel+`"\} [1-9]`), text)
	require.Regexp(t, regexp.MustCompile(`(?m)^agentd_llm_tokens_total\{agent="demo",kind="output",model="`+testModel+`"\} [1-9]`), text)
	require.Contains(t, text, `agentd_runs_total{agent="demo",status="succeeded"} 1`)
	require.Contains(t, text, "agentd_build_info")
}

// TestConcurrentConversations runs independent chats at once: each gets
// its own conversation with its own two messages.
func TestConcurrentConversations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 8
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"agent":"demo","message":"message number ` + strconv.Itoa(i) + `"}`
			resp, err := b.send(t.Context(), http.MethodPost, "/v1/chat", body, nil)
			if err == nil && resp.Status != http.StatusOK {
				err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
			}
			var a answer
			if err == nil {
				err = json.Unmarshal(resp.Body, &a)
			}
			if err != nil {
				errs <- err
				return
			}
			ids[i] = a.ConversationID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		require.False(t, seen[id], "conversation ids are unique")
		seen[id] = true
		c := b.getConversation(t, id)
		require.Len(t, c.Messages, 2)
		var u []block
		require.NoError(t, json.Unmarshal(c.Messages[0].Content, &u))
		require.Equal(t, "message number "+strconv.Itoa(i), u[0].Text)
	}
}
