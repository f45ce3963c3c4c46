package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// opsServer is a real MCP server (the MCP go-sdk's streamable HTTP server)
// on 127.0.0.1: its tools record the calls they get and answer with text
// the model cannot make up.
type opsServer struct {
	URL      string
	sessions atomic.Int32 // MCP sessions opened (initialize requests)
	// down makes it answer every request with 503.
	down atomic.Bool

	mu    sync.Mutex
	calls []opsCall
	auth  []string // the Authorization header of every request
}

func (o *opsServer) authorizations() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.auth...)
}

type opsCall struct {
	Tool string
	Args map[string]any
}

func (o *opsServer) called() []opsCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]opsCall(nil), o.calls...)
}

type shoutIn struct {
	Text string `json:"text" jsonschema:"what to shout"`
}

func startOpsServer(t *testing.T) *opsServer {
	t.Helper()
	o := &opsServer{}
	srv := sdk.NewServer(&sdk.Implementation{Name: "ops", Version: "1"}, nil)
	record := func(name string, req *sdk.CallToolRequest) {
		var args map[string]any
		_ = json.Unmarshal(req.Params.Arguments, &args)
		o.mu.Lock()
		o.calls = append(o.calls, opsCall{Tool: name, Args: args})
		o.mu.Unlock()
	}
	sdk.AddTool(srv, &sdk.Tool{Name: "shout", Description: "Shouts the text"},
		func(_ context.Context, req *sdk.CallToolRequest, in shoutIn) (*sdk.CallToolResult, any, error) {
			record("shout", req)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "OPS-SHOUTED " + strings.ToUpper(in.Text)}}}, nil, nil
		})
	sdk.AddTool(srv, &sdk.Tool{Name: "launch", Description: "Launches the rocket"},
		func(_ context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			record("launch", req)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "OPS-LAUNCHED rocket 7"}}}, nil, nil
		})
	sdk.AddTool(srv, &sdk.Tool{Name: "wipe", Description: "Wipes the disk"},
		func(_ context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			record("wipe", req)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "wiped"}}}, nil, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.auth = append(o.auth, r.Header.Get("Authorization"))
		o.mu.Unlock()
		if o.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"method":"initialize"`)) {
			o.sessions.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	o.URL = ts.URL + "/mcp"
	return o
}

// mcpAgents is eventAgents with MCP servers on 127.0.0.1 allowed.
const mcpAgents = eventAgents + `managed:
  mcp:
    allow_hosts: [127.0.0.1]
    connect_timeout: 2s
`

func askPolicy() anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion {
	return anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion{OfAlwaysAsk: &anthropic.BetaManagedAgentsAlwaysAskPolicyParam{}}
}

// opsAgent creates an agent with the MCP server at url as "ops": every
// tool enabled and always_allow, but launch always_ask and wipe disabled.
func opsAgent(t *testing.T, c anthropic.Client, url string) anthropic.BetaManagedAgentsAgent {
	t.Helper()
	agent, err := c.Beta.Agents.New(t.Context(), anthropic.BetaAgentNewParams{
		Name:  "operator",
		Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
		Tools: []anthropic.BetaAgentNewParamsToolUnion{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "ops",
			DefaultConfig: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParams{Enabled: anthropic.Bool(true),
				PermissionPolicy: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParamsPermissionPolicyUnion{
					OfAlwaysAllow: &anthropic.BetaManagedAgentsAlwaysAllowPolicyParam{}}},
			Configs: []anthropic.BetaManagedAgentsMCPToolConfigParams{
				{Name: "launch", PermissionPolicy: askPolicy()},
				{Name: "wipe", Enabled: anthropic.Bool(false)}}}}},
		MCPServers: []anthropic.BetaManagedAgentsURLMCPServerParams{{Name: "ops", URL: url}},
	})
	require.NoError(t, err)
	return *agent
}

func newSession(t *testing.T, c anthropic.Client, agentID string) string {
	t.Helper()
	env, err := c.Beta.Environments.New(t.Context(), anthropic.BetaEnvironmentNewParams{Name: "e"})
	require.NoError(t, err)
	sess, err := c.Beta.Sessions.New(t.Context(), anthropic.BetaSessionNewParams{
		Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agentID)}, EnvironmentID: env.ID})
	require.NoError(t, err)
	return sess.ID
}

func answerOf(turn []anthropic.BetaManagedAgentsStreamSessionEventsUnion) string {
	var s strings.Builder
	for _, e := range turn {
		if e.Type == "agent.message" {
			for _, b := range e.AsAgentMessage().Content {
				s.WriteString(b.Text)
			}
		}
	}
	return s.String()
}

// An agent created through the API with an MCP server by URL: the model's
// call of an always_allow tool reaches the MCP server (with the model's
// input) and its result reaches the model; an always_ask tool waits for a
// user.tool_confirmation and runs once allowed; a disabled tool is not
// offered; one MCP session serves every turn.
func TestManagedMCPByURLSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ops := startOpsServer(t)
		b := startManagedWith(t, backend, mcpAgents)
		ctx := t.Context()
		c := b.Client
		agent := opsAgent(t, c, ops.URL)
		require.Equal(t, ops.URL, agent.MCPServers[0].URL)
		require.Zero(t, ops.sessions.Load(), "nothing connects before a run needs it")
		sid := newSession(t, c, agent.ID)
		stream := openStream(t, c, sid)

		// 1. shout, always_allow: runs at once on the MCP server.
		_, err := c.Beta.Sessions.Events.Send(ctx, sid, say("please shout the news"))
		require.NoError(t, err)
		turn := stream.untilIdle()
		use := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "shout", use.Name)
		require.Equal(t, "ops", use.MCPServerName)
		require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAllow, use.EvaluatedPermission)
		calls := ops.called()
		require.Len(t, calls, 1, "the call reached the MCP server")
		require.Equal(t, "shout", calls[0].Tool)
		text, _ := calls[0].Args["text"].(string)
		require.NotEmpty(t, text, "with the model's input: %v", calls[0].Args)
		require.Equal(t, use.Input["text"], text)
		res := firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, use.ID, res.MCPToolUseID)
		require.False(t, res.IsError)
		require.Contains(t, answerOf(turn), "OPS-SHOUTED "+strings.ToUpper(text), "the server's result reached the model")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// 2. launch, always_ask: requires_action; nothing reaches the
		// server until the confirmation allows it.
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, say("please launch now"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		ask := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "launch", ask.Name)
		require.Equal(t, "ops", ask.MCPServerName)
		require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAsk, ask.EvaluatedPermission)
		idle := turn[len(turn)-1].AsSessionStatusIdle()
		require.Equal(t, "requires_action", idle.StopReason.Type)
		require.Equal(t, []string{ask.ID}, idle.StopReason.EventIDs)
		require.Len(t, ops.called(), 1, "not called before the confirmation")
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, confirm(ask.ID, true, ""))
		require.NoError(t, err)
		turn = stream.untilIdle()
		calls = ops.called()
		require.Len(t, calls, 2)
		require.Equal(t, "launch", calls[1].Tool)
		res = firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, ask.ID, res.MCPToolUseID)
		require.False(t, res.IsError)
		require.Contains(t, answerOf(turn), "OPS-LAUNCHED rocket 7")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// 3. wipe, disabled: the model is not offered it.
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, say("please wipe everything"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		require.NotContains(t, typesOf(turn), "agent.mcp_tool_use")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		require.Len(t, ops.called(), 2)

		// A second session of the agent shares the pooled connection.
		sid2 := newSession(t, c, agent.ID)
		stream2 := openStream(t, c, sid2)
		_, err = c.Beta.Sessions.Events.Send(ctx, sid2, say("shout again"))
		require.NoError(t, err)
		turn = stream2.untilIdle()
		require.Equal(t, "shout", firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse().Name)
		require.Len(t, ops.called(), 3)
		require.Equal(t, int32(1), ops.sessions.Load(), "one MCP session for every turn and session of the process")
	})
}

// A run paused for a confirmation is resumed by another agentd process
// (the first one gone): it resolves the agent's tools again, connecting to
// the MCP server from its own pool, and the allowed call runs there.
func TestManagedMCPByURLResumedElsewhereSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ops := startOpsServer(t)
		storeURL := managedStoreURL(t, backend)
		first := startManagedOn(t, storeURL, mcpAgents)
		ctx := t.Context()
		agent := opsAgent(t, first.Client, ops.URL)
		sid := newSession(t, first.Client, agent.ID)
		stream := openStream(t, first.Client, sid)
		_, err := first.Client.Beta.Sessions.Events.Send(ctx, sid, say("please launch"))
		require.NoError(t, err)
		turn := stream.untilIdle()
		ask := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "requires_action", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		require.Equal(t, int32(1), ops.sessions.Load())
		first.Stop()

		second := startManagedOn(t, storeURL, mcpAgents)
		c := second.Client
		stream = openStream(t, c, sid)
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, confirm(ask.ID, true, ""))
		require.NoError(t, err)
		var rest []anthropic.BetaManagedAgentsStreamSessionEventsUnion
		for { // the replayed history first, then the resumed turn
			turn = stream.untilIdle()
			rest = append(rest, turn...)
			if turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type != "requires_action" {
				break
			}
		}
		calls := ops.called()
		require.Len(t, calls, 1)
		require.Equal(t, "launch", calls[0].Tool)
		require.Equal(t, int32(2), ops.sessions.Load(), "the second process connected on its own")
		res := firstOf(t, rest, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, ask.ID, res.MCPToolUseID)
		require.Contains(t, answerOf(rest), "OPS-LAUNCHED rocket 7")
		require.Equal(t, "end_turn", rest[len(rest)-1].AsSessionStatusIdle().StopReason.Type)
	})
}

// MCP servers by URL that cannot be used: a private address without allow
// is refused at create (and at user.message when the process's policy
// changed since); an unreachable server fails the turn with a
// session.error naming it, within the connect timeout; credentials
// (vaults) stay refused.
func TestManagedMCPByURLErrorsSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		storeURL := managedStoreURL(t, backend)
		b := startManagedOn(t, storeURL, mcpAgents)
		ctx := t.Context()
		c := b.Client
		create := func(url string) (anthropic.BetaManagedAgentsAgent, error) {
			a, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x",
				Model:      anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Tools:      []anthropic.BetaAgentNewParamsToolUnion{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "s"}}},
				MCPServers: []anthropic.BetaManagedAgentsURLMCPServerParams{{Name: "s", URL: url}}})
			if err != nil {
				return anthropic.BetaManagedAgentsAgent{}, err
			}
			return *a, nil
		}
		for _, url := range []string{"http://10.0.0.7/mcp", "http://169.254.169.254/latest", "http://localhost:8080/mcp", "http://[::1]:9/mcp"} {
			_, err := create(url)
			msg := apiError(t, err, http.StatusBadRequest, "invalid_request_error")
			require.Contains(t, msg, "mcp_servers[0].url", url)
			require.Contains(t, msg, "managed.mcp.allow_private", url)
		}

		// Unreachable: refused connections, and a server that never
		// answers (bounded by managed.mcp.connect_timeout, 2s).
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		refused := "http://" + closed.Addr().String() + "/mcp"
		require.NoError(t, closed.Close())
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = silent.Close() })
		hung := "http://" + silent.Addr().String() + "/mcp"
		for _, url := range []string{refused, hung} {
			a, err := create(url)
			require.NoError(t, err)
			sid := newSession(t, c, a.ID)
			stream := openStream(t, c, sid)
			start := time.Now()
			_, err = c.Beta.Sessions.Events.Send(ctx, sid, say("hello"))
			require.NoError(t, err, "accepted: the server is connected when the turn runs")
			turn := stream.untilIdle()
			took := time.Since(start)
			se := firstOf(t, turn, "session.error").AsSessionError()
			require.Contains(t, se.Error.Message, url, "the error names the server")
			require.Contains(t, se.Error.Message, `"s"`)
			require.Equal(t, "retries_exhausted", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
			require.Less(t, took, 15*time.Second, "bounded, not a hang")
			got, err := c.Beta.Sessions.Get(ctx, sid, anthropic.BetaSessionGetParams{})
			require.NoError(t, err)
			require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, got.Status)
		}

		// Credentials for MCP servers (vaults) stay refused.
		a, err := create(refused)
		require.NoError(t, err)
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "v"})
		require.NoError(t, err)
		_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent:         anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(a.ID)},
			EnvironmentID: env.ID, VaultIDs: []string{"vlt_1"}})
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")

		// An agent created while 127.0.0.1 was allowed, on a process that
		// no longer allows it: its sessions refuse user.message.
		ops := startOpsServer(t)
		agent := opsAgent(t, c, ops.URL)
		sid := newSession(t, c, agent.ID)
		b.Stop()
		strict := startManagedOn(t, storeURL, eventAgents)
		_, err = strict.Client.Beta.Sessions.Events.Send(ctx, sid, say("please shout"))
		msg := apiError(t, err, http.StatusBadRequest, "invalid_request_error")
		require.Contains(t, msg, ops.URL)
		require.Contains(t, msg, "managed.mcp.allow_private")
		require.Zero(t, ops.sessions.Load())
	})
}
