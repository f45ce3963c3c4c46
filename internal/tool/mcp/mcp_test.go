package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/tool"
)

// The test binary doubles as a stdio MCP server: run with
// AGENTD_MCP_TEST_SERVER=1 it serves testServer on stdin/stdout.
func TestMain(m *testing.M) {
	if os.Getenv("AGENTD_MCP_TEST_SERVER") == "1" {
		if err := testServer(true).Run(context.Background(), &sdk.StdioTransport{}); err != nil {
			fmt.Fprintln(os.Stderr, "test server:", err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type textIn struct {
	Text string `json:"text"`
}

type sizeIn struct {
	Bytes int `json:"bytes"`
}

type sleepIn struct {
	MS int `json:"ms"`
}

// testServer has well-behaved and misbehaving tools; stdio adds the ones
// that break the process or its stdout.
func testServer(stdio bool) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	text := func(s string) *sdk.CallToolResult {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
	}
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echoes"}, func(_ context.Context, _ *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
		return text(in.Text), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "kv_put"}, func(_ context.Context, req *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
		key, _ := req.Params.Meta[MetaIdempotencyKey].(string)
		return text("key=" + key), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "kv_get"}, func(_ context.Context, _ *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
		return text("v"), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "fail"}, func(_ context.Context, _ *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
		return nil, nil, fmt.Errorf("it failed: %s", in.Text)
	})
	sdk.AddTool(s, &sdk.Tool{Name: "big"}, func(_ context.Context, _ *sdk.CallToolRequest, in sizeIn) (*sdk.CallToolResult, any, error) {
		return text(strings.Repeat("x", in.Bytes)), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "sleep"}, func(ctx context.Context, _ *sdk.CallToolRequest, in sleepIn) (*sdk.CallToolResult, any, error) {
		select {
		case <-time.After(time.Duration(in.MS) * time.Millisecond):
		case <-ctx.Done():
		}
		return text("slept"), nil, nil
	})
	s.AddTool(&sdk.Tool{Name: "badout", InputSchema: json.RawMessage(`{"type":"object"}`),
		OutputSchema: json.RawMessage(`{"type":"object","required":["x"]}`)},
		func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: `{"y":1}`}}, StructuredContent: map[string]any{"y": 1}}, nil
		})
	if stdio {
		sdk.AddTool(s, &sdk.Tool{Name: "crash"}, func(context.Context, *sdk.CallToolRequest, textIn) (*sdk.CallToolResult, any, error) {
			fmt.Fprintln(os.Stderr, "crashing on purpose")
			os.Exit(3)
			return nil, nil, nil
		})
		sdk.AddTool(s, &sdk.Tool{Name: "getenv"}, func(_ context.Context, _ *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
			return text(os.Getenv(in.Text)), nil, nil
		})
		sdk.AddTool(s, &sdk.Tool{Name: "garbage"}, func(context.Context, *sdk.CallToolRequest, textIn) (*sdk.CallToolResult, any, error) {
			_, _ = os.Stdout.WriteString("{this is not json-rpc\n")
			time.Sleep(100 * time.Millisecond)
			return text("after garbage"), nil, nil
		})
	}
	return s
}

func stdioConfig(t *testing.T) Config {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	return Config{
		Name: "t", Command: []string{exe}, Env: map[string]string{"AGENTD_MCP_TEST_SERVER": "1"},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ConnectTimeout: 10 * time.Second,
		ToolPrefix: "t_", Log: slog.New(slog.DiscardHandler), Metrics: tool.NewMetrics(nil),
	}
}

func httpConfig(t *testing.T, h http.Handler) Config {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return Config{
		Name: "h", URL: ts.URL + "/mcp",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ConnectTimeout: 5 * time.Second,
		ToolPrefix: "h_", Log: slog.New(slog.DiscardHandler),
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Stop)
	return s
}

// toolsOf returns the guarded tools of s by the model's name.
func toolsOf(t *testing.T, s *Server, o ToolOptions, g tool.GuardOptions) map[string]tool.Tool {
	t.Helper()
	ts, err := s.Tools(o)
	require.NoError(t, err)
	m := map[string]tool.Tool{}
	for _, tl := range ts {
		m[tl.Spec().Name] = tool.Guard(tl, g)
	}
	return m
}

func call(t *testing.T, tl tool.Tool, input string) (string, error) {
	t.Helper()
	require.NotNil(t, tl)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ctx = tool.WithCallInfo(ctx, tool.CallInfo{RunID: "run_1", Step: 2, ToolUseID: "toolu_9"})
	return tl.Call(ctx, json.RawMessage(input))
}

func TestStdio(t *testing.T) {
	s := start(t, stdioConfig(t))
	assert.Contains(t, s.ToolNames(), "crash")
	tools := toolsOf(t, s, ToolOptions{Allow: []string{"echo", "kv_*", "fail", "big", "sleep", "crash", "garbage", "badout"},
		Consequential: func(n string) bool { return n == "kv_put" }},
		tool.GuardOptions{Source: "mcp server t", MaxOutputBytes: 1000, Timeout: 8 * time.Second})

	t.Run("AllowList", func(t *testing.T) {
		ts, err := s.Tools(ToolOptions{Allow: []string{"kv_*", "echo"}})
		require.NoError(t, err)
		var names []string
		for _, tl := range ts {
			names = append(names, tl.Spec().Name)
		}
		assert.Equal(t, []string{"t_echo", "t_kv_get", "t_kv_put"}, names)
		assert.Equal(t, "echoes", ts[0].Spec().Description)
		assert.JSONEq(t, `{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}`, string(ts[0].Spec().InputSchema))
		_, err = s.Tools(ToolOptions{Allow: []string{"["}})
		require.Error(t, err)
	})

	t.Run("Echo", func(t *testing.T) {
		out, err := call(t, tools["t_echo"], `{"text":"hello"}`)
		require.NoError(t, err)
		assert.Contains(t, out, "hello")
		assert.True(t, strings.HasPrefix(out, `<untrusted_tool_output tool="t_echo" source="mcp server t">`), out)
	})

	t.Run("IdempotencyKeyInMeta", func(t *testing.T) {
		out, err := call(t, tools["t_kv_put"], `{"text":"x"}`)
		require.NoError(t, err)
		assert.Contains(t, out, "key=run_1:2:toolu_9")
		// A tool that is not consequential sends no key.
		ts, _ := s.Tools(ToolOptions{Allow: []string{"kv_put"}})
		out, err = call(t, ts[0], `{"text":"x"}`)
		require.NoError(t, err)
		assert.Equal(t, "key=", out)
	})

	t.Run("ToolError", func(t *testing.T) {
		_, err := call(t, tools["t_fail"], `{"text":"boom"}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindToolError, tool.Outcome(err))
		assert.Contains(t, err.Error(), "it failed: boom")
		assert.Contains(t, err.Error(), "<untrusted_tool_output")
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		_, err := call(t, tools["t_echo"], `{"text":5}`)
		require.Error(t, err)
		assert.Contains(t, []string{tool.KindToolError}, tool.Outcome(err), err.Error())
	})

	t.Run("HugePayloadTruncated", func(t *testing.T) {
		out, err := call(t, tools["t_big"], `{"bytes":1500000}`)
		require.NoError(t, err)
		assert.Less(t, len(out), 1500)
		assert.Contains(t, out, "[output truncated: it exceeded 1000 bytes]")
	})

	t.Run("OutputSchema", func(t *testing.T) {
		_, err := call(t, tools["t_badout"], `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindInvalidOutput, tool.Outcome(err))
		assert.Contains(t, err.Error(), `missing required property "x"`)
	})

	t.Run("Timeout", func(t *testing.T) {
		short := toolsOf(t, s, ToolOptions{Allow: []string{"sleep"}}, tool.GuardOptions{Timeout: 500 * time.Millisecond})
		start := time.Now()
		_, err := call(t, short["t_sleep"], `{"ms":30000}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindTimeout, tool.Outcome(err))
		assert.Contains(t, err.Error(), "timed out after 500ms")
		assert.Less(t, time.Since(start), 5*time.Second)
		// The server is still usable.
		out, err := call(t, tools["t_echo"], `{"text":"still here"}`)
		require.NoError(t, err)
		assert.Contains(t, out, "still here")
	})

	t.Run("CrashMidCallThenRestart", func(t *testing.T) {
		_, err := call(t, tools["t_crash"], `{"text":"x"}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindUnavailable, tool.Outcome(err), err.Error())
		// The supervisor restarts the server; a later call works.
		require.Eventually(t, func() bool {
			out, err := call(t, tools["t_echo"], `{"text":"back"}`)
			return err == nil && strings.Contains(out, "back")
		}, 15*time.Second, 50*time.Millisecond)
	})

	t.Run("MalformedJSONRPC", func(t *testing.T) {
		_, err := call(t, tools["t_garbage"], `{"text":"x"}`)
		// Either the SDK drops the connection (unavailable) or it skips the
		// bad line and the call succeeds; it must not hang or panic.
		t.Logf("garbage: %v", err)
		if err != nil {
			assert.Contains(t, []string{tool.KindUnavailable, tool.KindProtocol, tool.KindTimeout}, tool.Outcome(err), err.Error())
		}
		require.Eventually(t, func() bool {
			out, err := call(t, tools["t_echo"], `{"text":"ok again"}`)
			return err == nil && strings.Contains(out, "ok again")
		}, 15*time.Second, 50*time.Millisecond)
	})
}

func TestStdioNeverStarts(t *testing.T) {
	cfg := stdioConfig(t)
	cfg.Command = []string{"/nonexistent/mcp-server"}
	s, err := New(cfg)
	require.NoError(t, err)
	err = s.Start(t.Context())
	require.Error(t, err)
	t.Cleanup(s.Stop)
	ts, err := s.Tools(ToolOptions{Allow: []string{"echo", "kv_*"}})
	require.NoError(t, err)
	require.Len(t, ts, 1, "literal names stay visible, globs match nothing yet")
	assert.Equal(t, "t_echo", ts[0].Spec().Name)
	assert.Contains(t, ts[0].Spec().Description, "currently unavailable")
	_, err = call(t, tool.Guard(ts[0], tool.GuardOptions{}), `{"text":"x"}`)
	require.Error(t, err)
	assert.Equal(t, tool.KindUnavailable, tool.Outcome(err))
	assert.Contains(t, err.Error(), "MCP server t is not available")
}

func TestStdioSilentServerTimesOut(t *testing.T) {
	cfg := stdioConfig(t)
	cfg.Command = []string{"sleep", "30"}
	cfg.Env = nil
	cfg.ConnectTimeout = 300 * time.Millisecond
	s, err := New(cfg)
	require.NoError(t, err)
	start := time.Now()
	require.Error(t, s.Start(t.Context()))
	assert.Less(t, time.Since(start), 5*time.Second)
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Stop hangs")
	}
}

func TestStreamableHTTP(t *testing.T) {
	var sawAuth atomic.Value
	srv := testServer(false)
	h := sdk.NewStreamableHTTPHandler(func(r *http.Request) *sdk.Server {
		sawAuth.Store(r.Header.Get("Authorization"))
		return srv
	}, nil)
	cfg := httpConfig(t, h)
	cfg.Headers = map[string]string{"Authorization": "Bearer {{secret:tok}}"}
	cfg.Secrets = tool.NewSecrets(map[string]string{"tok": "s3cr3t-token"})
	s := start(t, cfg)
	assert.Equal(t, "Bearer s3cr3t-token", sawAuth.Load())
	tools := toolsOf(t, s, ToolOptions{Allow: []string{"*"}, Consequential: func(n string) bool { return n == "kv_put" }},
		tool.GuardOptions{Source: "mcp server h", Secrets: cfg.Secrets, MaxOutputBytes: 100, Timeout: time.Second})
	assert.Contains(t, tools, "h_echo")
	assert.NotContains(t, tools, "h_crash")

	out, err := call(t, tools["h_echo"], `{"text":"the token is s3cr3t-token"}`)
	require.NoError(t, err)
	assert.NotContains(t, out, "s3cr3t-token")
	assert.Contains(t, out, "the token is [secret:tok]")

	out, err = call(t, tools["h_kv_put"], `{"text":"x"}`)
	require.NoError(t, err)
	assert.Contains(t, out, "key=run_1:2:toolu_9")

	out, err = call(t, tools["h_big"], `{"bytes":200000}`)
	require.NoError(t, err)
	assert.Contains(t, out, "[output truncated")

	_, err = call(t, tools["h_sleep"], `{"ms":5000}`)
	assert.Equal(t, tool.KindTimeout, tool.Outcome(err))

	_, err = call(t, tools["h_fail"], `{"text":"x"}`)
	assert.Equal(t, tool.KindToolError, tool.Outcome(err))
}

// A configured server's headers go to its own host only: a server that
// redirects to another host does not hand them on.
func TestStreamableHTTPHeadersNotRedirected(t *testing.T) {
	other := startRecording(t, "/mcp")
	var sawAuth atomic.Value
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawAuth.Store(r.Header.Get("Authorization"))
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	cfg := httpConfig(t, http.NotFoundHandler())
	cfg.URL = redirect.URL + "/mcp"
	cfg.Headers = map[string]string{"Authorization": "Bearer {{secret:tok}}"}
	cfg.Secrets = tool.NewSecrets(map[string]string{"tok": "s3cr3t-token"})
	s := start(t, cfg)
	require.Contains(t, s.ToolNames(), "echo", "connected through the redirect")
	require.Equal(t, "Bearer s3cr3t-token", sawAuth.Load())
	require.NotEmpty(t, other.seen())
	for _, h := range other.seen() {
		require.Empty(t, h.Get("Authorization"))
	}
}

func TestStreamableHTTPServerGoesAway(t *testing.T) {
	srv := testServer(false)
	var down atomic.Bool
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	cfg := httpConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		h.ServeHTTP(w, r)
	}))
	s := start(t, cfg)
	tools := toolsOf(t, s, ToolOptions{Allow: []string{"echo"}}, tool.GuardOptions{Timeout: 2 * time.Second})
	_, err := call(t, tools["h_echo"], `{"text":"a"}`)
	require.NoError(t, err)

	down.Store(true)
	_, err = call(t, tools["h_echo"], `{"text":"b"}`)
	require.Error(t, err)
	assert.Contains(t, []string{tool.KindUnavailable, tool.KindTimeout}, tool.Outcome(err), err.Error())

	down.Store(false)
	require.Eventually(t, func() bool {
		_, err := call(t, tools["h_echo"], `{"text":"c"}`)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
}

func TestHTTPServerNotMCP(t *testing.T) {
	cfg := httpConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc": "2.0", "id": 1, "result": `)) // malformed
	}))
	cfg.ConnectTimeout = time.Second
	s, err := New(cfg)
	require.NoError(t, err)
	require.Error(t, s.Start(t.Context()))
	t.Cleanup(s.Stop)
	require.Error(t, s.Err())
}

func TestExposedName(t *testing.T) {
	assert.Equal(t, "demo_kv_get", ExposedName("demo_", "kv_get"))
	assert.Equal(t, "demo_a_b_c", ExposedName("demo_", "a.b/c"))
	assert.Len(t, ExposedName("p_", strings.Repeat("x", 100)), 64)
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{Name: "x"})
	assert.ErrorContains(t, err, "command or url is required")
	_, err = New(Config{Name: "x", Command: []string{"a"}, URL: "http://x"})
	assert.ErrorContains(t, err, "not both")
	_, err = New(Config{Name: "x", Command: []string{"a"}, Env: map[string]string{"K": "{{secret:nope}}"}})
	assert.ErrorContains(t, err, `env.K: unknown secret "nope"`)
}

// A stdio server's env is fixed when its process starts: when a secret it
// uses is rotated, the server is restarted and sees the new value; a
// rotation of another secret leaves it alone.
func TestStdioRestartsWhenEnvSecretRotates(t *testing.T) {
	secrets := tool.NewSecrets(map[string]string{"tok": "env-old-value", "other": "other-value"})
	var logs lockedLog
	cfg := stdioConfig(t)
	cfg.Secrets = secrets
	cfg.Env["SECRET_ENV"] = "{{ secret:tok }}"
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s := start(t, cfg)
	getenv := toolsOf(t, s, ToolOptions{Allow: []string{"getenv"}}, tool.GuardOptions{Timeout: 8 * time.Second})["t_getenv"]
	out, err := call(t, getenv, `{"text":"SECRET_ENV"}`)
	require.NoError(t, err)
	assert.Contains(t, out, "env-old-value")

	s.SecretRotated("other")
	require.True(t, secrets.Rotate("tok", "env-new-value", time.Now(), time.Hour))
	s.SecretRotated("tok")
	require.Eventually(t, func() bool {
		out, err := call(t, getenv, `{"text":"SECRET_ENV"}`)
		return err == nil && strings.Contains(out, "env-new-value")
	}, 15*time.Second, 50*time.Millisecond, "the restarted server sees the new value")
	time.Sleep(300 * time.Millisecond) // MinBackoff is 20ms: room for a spurious restart
	assert.Equal(t, 1, strings.Count(logs.String(), "restarting it"), logs.String())
	assert.Equal(t, 2, strings.Count(logs.String(), "MCP server connected"), "one restart, no more")
	assert.NotContains(t, logs.String(), "secret=other")
	assert.NotContains(t, logs.String(), "env-new-value")
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
