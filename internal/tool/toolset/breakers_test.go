package toolset_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/toolset"
)

// freeAddr returns a 127.0.0.1 address nothing listens on (a closed port).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// serveOn serves h on addr (a port freed before) until the test ends.
func serveOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func toolByName(t *testing.T, set *toolset.Set, agent, name string) tool.Tool {
	t.Helper()
	for _, tl := range set.Tools(agent) {
		if tl.Spec().Name == name {
			return tl
		}
	}
	t.Fatalf("agent %s has no tool %s", agent, name)
	return nil
}

func breakerState(set *breaker.Set, dep string) string {
	for _, s := range set.Statuses() {
		if s.Dependency == dep {
			return s.State
		}
	}
	return ""
}

// An HTTP tool whose URL is a closed port: two connection failures open
// its breaker; the next call fails at once with circuit_open and a message
// for the model; once the port serves again, the half-open probe closes it.
func TestHTTPToolBreakerClosedPort(t *testing.T) {
	addr := freeAddr(t)
	cfg := &config.Config{
		Tools: config.Tools{HTTP: []config.HTTPTool{{Name: "lookup", Method: "POST", URL: "http://" + addr + "/x",
			AllowPrivate: true, InputSchema: map[string]any{"type": "object"}}}},
		Agents: []config.Agent{{Name: "a", Model: "m", Tools: []string{"lookup"}}},
	}
	cfg.ApplyDefaults()
	require.NoError(t, cfg.Validate())
	bs := breaker.NewSet(breaker.Options{Overrides: map[string]breaker.Config{
		"tool:lookup": {ConsecutiveFailures: 2, OpenTimeout: 500 * time.Millisecond, HalfOpenProbes: 1},
	}})
	set, err := toolset.Start(t.Context(), cfg, toolset.Options{Metrics: tool.NewMetrics(nil), Breakers: bs})
	require.NoError(t, err)
	defer set.Stop()
	lookup := toolByName(t, set, "a", "lookup")

	for range 2 {
		_, err := lookup.Call(t.Context(), json.RawMessage(`{}`))
		require.Error(t, err)
		require.Equal(t, tool.KindUnavailable, tool.Outcome(err), "%v", err)
	}
	require.Equal(t, breaker.StateOpen, breakerState(bs, "tool:lookup"))

	_, err = lookup.Call(t.Context(), json.RawMessage(`{}`))
	require.Error(t, err)
	require.Equal(t, tool.KindCircuitOpen, tool.Outcome(err))
	assert.Contains(t, err.Error(), "tool lookup is unavailable")
	assert.Contains(t, err.Error(), "try it again in 1s")

	// The service comes back on the same port; after open_timeout one
	// probe reaches it and closes the breaker.
	var hits atomic.Int32
	serveOn(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	_, err = lookup.Call(t.Context(), json.RawMessage(`{}`))
	require.Equal(t, tool.KindCircuitOpen, tool.Outcome(err), "still open: the service is not called")
	require.Zero(t, hits.Load())
	require.Eventually(t, func() bool { return breakerState(bs, "tool:lookup") == breaker.StateHalfOpen }, 5*time.Second, 20*time.Millisecond)
	out, err := lookup.Call(t.Context(), json.RawMessage(`{}`))
	require.NoError(t, err)
	assert.Contains(t, out, `{"ok":true}`)
	require.EqualValues(t, 1, hits.Load())
	require.Equal(t, breaker.StateClosed, breakerState(bs, "tool:lookup"))
}

// 4xx answers are the service working: they never open the breaker; 5xx do.
func TestHTTPToolBreakerCounts5xxNot4xx(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusNotFound)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer api.Close()
	cfg := &config.Config{
		Tools:  config.Tools{HTTP: []config.HTTPTool{{Name: "lookup", Method: "GET", URL: api.URL, AllowPrivate: true}}},
		Agents: []config.Agent{{Name: "a", Model: "m", Tools: []string{"lookup"}}},
	}
	cfg.ApplyDefaults()
	require.NoError(t, cfg.Validate())
	bs := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 3, OpenTimeout: time.Minute}})
	set, err := toolset.Start(t.Context(), cfg, toolset.Options{Metrics: tool.NewMetrics(nil), Breakers: bs})
	require.NoError(t, err)
	defer set.Stop()
	lookup := toolByName(t, set, "a", "lookup")
	for range 5 {
		_, err := lookup.Call(t.Context(), json.RawMessage(`{}`))
		require.Equal(t, tool.KindHTTPStatus, tool.Outcome(err))
	}
	require.Equal(t, breaker.StateClosed, breakerState(bs, "tool:lookup"))
	status.Store(http.StatusBadGateway)
	for range 3 {
		_, err := lookup.Call(t.Context(), json.RawMessage(`{}`))
		require.Equal(t, tool.KindHTTPStatus, tool.Outcome(err))
	}
	_, err = lookup.Call(t.Context(), json.RawMessage(`{}`))
	require.Equal(t, tool.KindCircuitOpen, tool.Outcome(err))
}

// A real MCP server (go-sdk, streamable HTTP) that stops: its failures open
// the server's breaker, shared by all its tools, and calls then fail at
// once instead of each waiting for the server to come back.
func TestMCPServerBreakerStoppedServer(t *testing.T) {
	s := sdk.NewServer(&sdk.Implementation{Name: "t", Version: "1"}, nil)
	for _, name := range []string{"echo", "other"} {
		sdk.AddTool(s, &sdk.Tool{Name: name}, func(_ context.Context, _ *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ":" + in.Text}}}, nil, nil
		})
	}
	ts := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	cfg := &config.Config{
		Tools:  config.Tools{MCPServers: []config.MCPServer{{Name: "demo", URL: ts.URL + "/mcp", Timeout: 2 * time.Second}}},
		Agents: []config.Agent{{Name: "a", Model: "m", MCP: []config.AgentMCP{{Server: "demo", Tools: []string{"*"}}}}},
	}
	cfg.ApplyDefaults()
	require.NoError(t, cfg.Validate())
	bs := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 2, OpenTimeout: time.Minute}})
	set, err := toolset.Start(t.Context(), cfg, toolset.Options{Metrics: tool.NewMetrics(nil), Breakers: bs})
	require.NoError(t, err)
	defer set.Stop()
	echo, other := toolByName(t, set, "a", "demo_echo"), toolByName(t, set, "a", "demo_other")
	out, err := echo.Call(t.Context(), json.RawMessage(`{"text":"hi"}`))
	require.NoError(t, err)
	require.Contains(t, out, "echo:hi")

	ts.CloseClientConnections()
	ts.Close() // the MCP server stops
	failures := 0
	for failures < 2 {
		_, err := echo.Call(t.Context(), json.RawMessage(`{"text":"hi"}`))
		require.Error(t, err)
		require.NotEqual(t, tool.KindCircuitOpen, tool.Outcome(err), "opened after %d failures", failures)
		if tool.Outcome(err) == tool.KindUnavailable || tool.Outcome(err) == tool.KindTimeout {
			failures++
		}
	}
	require.Equal(t, breaker.StateOpen, breakerState(bs, "mcp:demo"))
	// Every tool of the server fails fast now: no wait for a reconnection
	// or the 2 s tool timeout.
	start := time.Now()
	_, err = other.Call(t.Context(), json.RawMessage(`{"text":"x"}`))
	took := time.Since(start)
	require.Equal(t, tool.KindCircuitOpen, tool.Outcome(err), "%v", err)
	assert.Contains(t, err.Error(), "mcp:demo failed repeatedly")
	assert.Less(t, took, time.Second, "an open breaker does not wait for the server")
}
