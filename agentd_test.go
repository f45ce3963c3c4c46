package agentd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

type lookupInput struct {
	Key   string `json:"key" jsonschema:"what to look up"`
	Limit int    `json:"limit,omitempty"`
}

func TestNewToolSchemaAndCall(t *testing.T) {
	t.Parallel()
	var got lookupInput
	tl, err := NewTool("lookup", "Looks a key up.", func(_ context.Context, in lookupInput) (string, error) {
		got = in
		return "found " + in.Key, nil
	})
	require.NoError(t, err)
	require.Equal(t, "lookup", tl.Name())
	require.JSONEq(t, `{"type":"object","required":["key"],"additionalProperties":false,
		"properties":{"key":{"type":"string","description":"what to look up"},"limit":{"type":"integer"}}}`,
		string(tl.InputSchema()))

	out, err := tl.impl.Call(t.Context(), json.RawMessage(`{"key":"k1","limit":3}`))
	require.NoError(t, err)
	require.Equal(t, "found k1", out)
	require.Equal(t, lookupInput{Key: "k1", Limit: 3}, got)

	// Input the schema refuses never reaches the function.
	got = lookupInput{}
	for _, in := range []string{`{}`, `{"key":7}`, `{"key":"k","extra":1}`, `[1]`, `not json`} {
		_, err := tl.impl.Call(t.Context(), json.RawMessage(in))
		require.ErrorContains(t, err, "invalid input", in)
	}
	require.Equal(t, lookupInput{}, got)
}

func TestNewToolErrorsAndPanics(t *testing.T) {
	t.Parallel()
	fn := func(context.Context, lookupInput) (string, error) { return "", nil }
	_, err := NewTool("bad name!", "", fn)
	require.ErrorContains(t, err, `tool name "bad name!"`)
	_, err = NewTool[string]("s", "", func(context.Context, string) (string, error) { return "", nil })
	require.ErrorContains(t, err, "the input must be a struct")
	_, err = NewTool[lookupInput]("nil", "", nil)
	require.ErrorContains(t, err, "nil function")
	require.Panics(t, func() { MustTool("bad name!", "", fn) })

	boom := MustTool("boom", "", func(context.Context, lookupInput) (string, error) { panic("kaput") })
	_, err = boom.impl.Call(t.Context(), json.RawMessage(`{"key":"x"}`))
	require.EqualError(t, err, "tool boom panicked: kaput")
	failing := MustTool("failing", "", func(context.Context, lookupInput) (string, error) { return "", errors.New("no luck") })
	_, err = failing.impl.Call(t.Context(), json.RawMessage(`{"key":"x"}`))
	require.EqualError(t, err, "no luck")
}

func testConfig(t *testing.T) *Config {
	cfg := &Config{Agents: []Agent{{Name: "helper", Model: "claude-sonnet-4-5", Tools: []string{"lookup", "clock"}}}}
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Server.DrainDelay = time.Millisecond
	cfg.Auth.Mode = "none"
	cfg.Providers.Anthropic.Simulate = "always"
	cfg.Store.URL = "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
	return cfg
}

// syncBuffer is a log sink written by many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A server built in code serves the HTTP API with the Go tool, logs to the
// program's logger, registers its metrics on the program's registry, and
// Shutdown stops Run.
func TestServerEmbedded(t *testing.T) {
	t.Parallel()
	calls := make(chan lookupInput, 4)
	lookup := MustTool("lookup", "Looks a key up.", func(_ context.Context, in lookupInput) (string, error) {
		calls <- in
		return "value-of-" + in.Key, nil
	})
	cfg := testConfig(t)
	agentsBefore := append([]Agent(nil), cfg.Agents...)
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := New(t.Context(), cfg, WithTools(lookup), WithRegistry(reg), WithVersion("v-test"),
		WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	require.NoError(t, err)
	require.Equal(t, agentsBefore, cfg.Agents, "New does not change the caller's config")
	require.Zero(t, cfg.Agents[0].MaxSteps, "defaults went to a copy")

	ctx := t.Context()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	<-srv.Ready()

	var events []Event
	ans, err := srv.Chat(ctx, ChatRequest{Agent: "helper", Message: "Look it up. Use the lookup tool.",
		OnEvent: func(e Event) { events = append(events, e) }})
	require.NoError(t, err)
	require.Equal(t, "start", events[0].Type)
	require.Equal(t, "done", events[len(events)-1].Type)
	var types []string
	for i, e := range events {
		require.Equal(t, int64(i+1), e.Seq)
		types = append(types, e.Type)
	}
	require.Contains(t, types, "text_delta")
	require.Contains(t, types, "tool_use")
	require.Contains(t, types, "tool_result")
	require.Equal(t, `Tool results: [lookup] => "value-of-example"`, ans.Text)
	require.Equal(t, 2, ans.Steps)
	require.Equal(t, lookupInput{Key: "example", Limit: 1}, <-calls, "the simulator fills strings with \"example\", numbers with 1")
	require.NotEmpty(t, ans.RunID)
	require.Regexp(t, `^0\.\d+$`, ans.CostUSD)

	// The same agent over HTTP.
	base := "http://" + srv.Addr()
	resp, err := http.Post(base+"/v1/chat", "application/json",
		strings.NewReader(`{"agent":"helper","message":"Again, use the lookup tool.","conversation_id":"`+ans.ConversationID+`"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `value-of-example`)
	resp, err = http.Get(base + "/v1/agents")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `{"name":"lookup","description":"Looks a key up.","source":"builtin"}`)

	// Metrics on the program's registry, also served at /metrics.
	families, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	require.True(t, names["agentd_build_info"] && names["agentd_tool_calls_total"] && names["go_goroutines"], names)
	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `agentd_build_info{version="v-test"} 1`)

	require.Contains(t, logs.String(), `"msg":"agentd ready"`)
	_, err = New(ctx, testConfig(t), WithTools(lookup), WithRegistry(reg))
	require.ErrorContains(t, err, "the registry holds agentd's metrics already", "an error, not a panic")

	require.NoError(t, srv.Shutdown(ctx))
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Shutdown")
	}
	_, err = srv.Chat(ctx, ChatRequest{Agent: "helper", Message: "late"})
	require.ErrorIs(t, err, ErrNotServing)
	require.ErrorContains(t, srv.Run(ctx), "Run called twice")
}

// LoadConfig reads the YAML file as agentd serve does.
func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte("agents:\n  - name: filed\n    model: claude-sonnet-4-5\n    max_steps: 3\n"), 0o600))
	t.Setenv("AGENTD_LOG_LEVEL", "debug")
	cfg, err := LoadConfig(path)
	require.NoError(t, err)
	require.Equal(t, "filed", cfg.Agents[0].Name)
	require.Equal(t, 3, cfg.Agents[0].MaxSteps)
	require.Equal(t, "debug", cfg.Log.Level, "AGENTD_* overrides apply")
	require.NoError(t, os.WriteFile(path, []byte("agents:\n  - name: filed\n    modle: x\n"), 0o600))
	_, err = LoadConfig(path)
	require.ErrorContains(t, err, "modle")
}

// Configuration mistakes fail New with the field's path.
func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	fn := func(context.Context, lookupInput) (string, error) { return "", nil }
	quiet := WithLogger(slog.New(slog.DiscardHandler))
	cfg := testConfig(t)
	cfg.Agents[0].Model = ""
	_, err := New(t.Context(), cfg, quiet, WithTools(MustTool("lookup", "", fn)))
	require.ErrorContains(t, err, "agents[0].model")

	cfg = testConfig(t)
	_, err = New(t.Context(), cfg, quiet) // no Go tool "lookup"
	require.ErrorContains(t, err, `agents[0].tools[0]: unknown tool "lookup"`)

	cfg = testConfig(t)
	_, err = New(t.Context(), cfg, WithTools(MustTool("lookup", "", fn), MustTool("clock", "", fn)))
	require.ErrorContains(t, err, `Go tool "clock": a built-in tool has that name`)
	_, err = New(t.Context(), cfg, WithTools(MustTool("lookup", "", fn), MustTool("lookup", "", fn)))
	require.ErrorContains(t, err, `Go tool "lookup" is given twice`)
	_, err = New(t.Context(), nil)
	require.Error(t, err)
}

// Server.Chat follows the agent's concurrency policy (and the request's):
// concurrent turns on one conversation under enqueue are all answered,
// each once, in order; a bad policy is refused.
func TestServerEmbeddedEnqueue(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Agents[0].ConcurrencyPolicy = "enqueue"
	cfg.Agents[0].Tools = []string{"clock"}
	srv, err := New(t.Context(), cfg, WithRegistry(prometheus.NewRegistry()),
		WithLogger(slog.New(slog.NewJSONHandler(&syncBuffer{}, nil))))
	require.NoError(t, err)
	ctx := t.Context()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	<-srv.Ready()

	first, err := srv.Chat(ctx, ChatRequest{Agent: "helper", Message: "hello"})
	require.NoError(t, err)
	_, err = srv.Chat(ctx, ChatRequest{Agent: "helper", Message: "x", ConversationID: first.ConversationID, ConcurrencyPolicy: "later"})
	require.ErrorContains(t, err, "concurrency_policy")
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = srv.Chat(ctx, ChatRequest{Agent: "helper", Message: fmt.Sprintf("message %d", i), ConversationID: first.ConversationID})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "message %d", i)
	}
	require.NoError(t, srv.Shutdown(context.Background()))
	require.NoError(t, <-errc)
}
