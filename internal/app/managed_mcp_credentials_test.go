package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// An MCP server by URL under the operator's credentials
// (managed.mcp.servers): the configured header reaches the server on every
// request, and no API client sees it (the agent shows its URL only), nor do
// the logs. When the server fails (503), its host's breaker (mcp-url:HOST,
// tuned by breakers.overrides) opens after the failures: the next turn's
// call fails at once, without a request, with an error result the model
// reads; /healthz and /metrics show the breaker and the calls by host.
func TestManagedMCPByURLCredentialsAndBreakerSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ops := startOpsServer(t)
		host := strings.TrimSuffix(strings.TrimPrefix(ops.URL, "http://"), "/mcp")
		const token = "ops-token-6f1e9c2a"
		b := startManagedWith(t, backend, eventAgents+fmt.Sprintf(`secrets:
  ops_token: %s
managed:
  mcp:
    allow_hosts: [127.0.0.1]
    connect_timeout: 2s
    servers:
      - url: http://%s/
        headers:
          Authorization: "Bearer {{secret:ops_token}}"
breakers:
  overrides:
    "mcp-url:%s": {consecutive_failures: 2, open_timeout: 1m}
`, token, host, host))
		ctx := t.Context()
		c := b.Client
		agent := opsAgent(t, c, ops.URL)
		got, err := c.Beta.Agents.Get(ctx, agent.ID, anthropic.BetaAgentGetParams{})
		require.NoError(t, err)
		require.Equal(t, ops.URL, got.MCPServers[0].URL)
		require.NotContains(t, got.RawJSON(), token)
		require.NotContains(t, got.RawJSON(), "Authorization")
		sid := newSession(t, c, agent.ID)
		stream := openStream(t, c, sid)

		// Up: the call reaches the server, every request with the header.
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, say("please shout the news"))
		require.NoError(t, err)
		turn := stream.untilIdle()
		res := firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.False(t, res.IsError, res.RawJSON())
		require.Len(t, ops.called(), 1)
		auth := ops.authorizations()
		require.GreaterOrEqual(t, len(auth), 4, "initialize, initialized, tools/list, tools/call")
		for i, a := range auth {
			require.Equal(t, "Bearer "+token, a, "request %d", i)
		}
		state, _ := breakerOf(t, b.URL, "mcp-url:"+host)
		require.Equal(t, "closed", state)

		// Down: the model reads the failed call; the failures (the call,
		// the reconnection) open the host's breaker.
		ops.down.Store(true)
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, say("please shout again"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		res = firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.True(t, res.IsError, res.RawJSON())
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		require.Eventually(t, func() bool {
			state, _ := breakerOf(t, b.URL, "mcp-url:"+host)
			return state == "open"
		}, 15*time.Second, 20*time.Millisecond, "the breaker of the server's host opens")

		// Open: the turn runs with the tools the server offered; the call
		// fails at once and sends nothing; the model reads why.
		sent := len(ops.authorizations())
		start := time.Now()
		_, err = c.Beta.Sessions.Events.Send(ctx, sid, say("please shout once more"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		took := time.Since(start)
		use := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "shout", use.Name)
		res = firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.True(t, res.IsError)
		require.Contains(t, res.RawJSON(), "tool shout is unavailable: mcp-url:"+host+" failed repeatedly, so its circuit breaker is open")
		require.Contains(t, answerOf(turn), "circuit breaker is open", "the model read it")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		require.Len(t, ops.authorizations(), sent, "no request while the breaker is open")
		require.Less(t, took, 2*time.Second, "not the connect timeout: loose bound for a loaded machine")
		t.Logf("turn with the MCP server's breaker open: %s", took)

		metrics := call(t, "GET", b.URL+"/metrics", "").body
		require.Contains(t, metrics, fmt.Sprintf(`agentd_breaker_state{dependency="mcp-url:%s"} 2`, host))
		for _, outcome := range []string{"ok", "unavailable", "circuit_open"} {
			require.Contains(t, metrics, fmt.Sprintf(`agentd_mcp_url_calls_total{outcome=%q,server=%q} 1`, outcome, host))
		}
		require.Contains(t, metrics, fmt.Sprintf(`agentd_mcp_url_call_duration_seconds_count{server=%q} 3`, host))
		require.Contains(t, metrics, fmt.Sprintf(`agentd_mcp_url_connects_total{outcome="ok",server=%q} 1`, host))
		require.NotContains(t, b.Log.String(), token, "the credential is never logged")
		require.Equal(t, http.StatusOK, call(t, "GET", b.URL+"/readyz", "").status, "an MCP server never makes the instance unready")
	})
}

// Credentials restricted to tenants (managed.mcp.servers[].tenants): two
// tenants' agents name the same server URL, each entry of that URL names
// one tenant; each tenant's turn reaches the server with its own header
// only, over a connection of its own.
func TestManagedMCPByURLTenantCredentialsSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ops := startOpsServer(t)
		host := strings.TrimSuffix(strings.TrimPrefix(ops.URL, "http://"), "/mcp")
		b := startManagedWith(t, backend, eventAgents+fmt.Sprintf(`managed:
  mcp:
    allow_hosts: [127.0.0.1]
    connect_timeout: 2s
    servers:
      - url: http://%[1]s/
        headers:
          Authorization: "Bearer t1-token"
        tenants: [t1]
      - url: http://%[1]s
        headers:
          Authorization: "Bearer t2-token"
        tenants: [t2]
`, host))
		ctx := t.Context()
		for _, tc := range []struct {
			c    anthropic.Client
			want string
		}{{b.Client, "Bearer t1-token"}, {b.Other, "Bearer t2-token"}} {
			agent := opsAgent(t, tc.c, ops.URL)
			sid := newSession(t, tc.c, agent.ID)
			stream := openStream(t, tc.c, sid)
			n := len(ops.authorizations())
			_, err := tc.c.Beta.Sessions.Events.Send(ctx, sid, say("please shout the news"))
			require.NoError(t, err)
			turn := stream.untilIdle()
			res := firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
			require.False(t, res.IsError, res.RawJSON())
			auth := ops.authorizations()[n:]
			require.GreaterOrEqual(t, len(auth), 4, "initialize, initialized, tools/list, tools/call")
			for i, a := range auth {
				require.Equal(t, tc.want, a, "request %d", i)
			}
		}
		require.Len(t, ops.called(), 2)
		require.Equal(t, int32(2), ops.sessions.Load(), "a connection per tenant")
	})
}
