package app

import (
	"net/http"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

func customResult(id, text string, isError bool) anthropic.BetaSessionEventSendParams {
	return anthropic.BetaSessionEventSendParams{Events: []anthropic.BetaManagedAgentsEventParamsUnion{{
		OfUserCustomToolResult: &anthropic.BetaManagedAgentsUserCustomToolResultEventParams{
			CustomToolUseID: id, IsError: anthropic.Bool(isError),
			Content: []anthropic.BetaManagedAgentsUserCustomToolResultEventParamsContentUnion{
				{OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: text}}}}}}}
}

// An agent created through the API runs: its custom tool's call pauses
// the session (requires_action naming the call) until the client's
// user.custom_tool_result, whose text the model's answer uses; its
// agentd toolset tool runs at once.
func TestManagedCustomToolSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManagedWith(t, backend, eventAgents)
		ctx := t.Context()
		c := b.Client
		agent, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{
			Name:   "weather",
			Model:  anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
			System: anthropic.String("You report the weather."),
			Tools: []anthropic.BetaAgentNewParamsToolUnion{
				customTool("lookup"),
				{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "agentd",
					DefaultConfig: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParams{Enabled: anthropic.Bool(false)},
					Configs: []anthropic.BetaManagedAgentsMCPToolConfigParams{{Name: "clock", Enabled: anthropic.Bool(true),
						PermissionPolicy: anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion{
							OfAlwaysAllow: &anthropic.BetaManagedAgentsAlwaysAllowPolicyParam{}}}}}},
			}})
		require.NoError(t, err)
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agent.ID)}, EnvironmentID: env.ID})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)

		// 1. The custom tool: requires_action naming the call.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please lookup the weather in Oslo"))
		require.NoError(t, err)
		turn := stream.untilIdle()
		use := firstOf(t, turn, "agent.custom_tool_use").AsAgentCustomToolUse()
		require.Equal(t, "lookup", use.Name)
		require.Contains(t, use.Input, "q", "the input follows the tool's input_schema")
		idle := turn[len(turn)-1].AsSessionStatusIdle()
		require.Equal(t, "requires_action", idle.StopReason.Type)
		require.Equal(t, []string{use.ID}, idle.StopReason.EventIDs)
		for _, e := range turn {
			require.NotEqual(t, "agent.tool_result", e.Type, "the client runs a custom tool")
		}
		got, err := c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, got.Status)

		// Wrong answers are refused and change nothing.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, customResult("toolu_nope", "x", false))
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "toolu_nope")
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm(use.ID, true, ""))
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not a tool call waiting for a confirmation")
		_, err = b.Other.Beta.Sessions.Events.Send(ctx, sess.ID, customResult(use.ID, "x", false))
		apiError(t, err, http.StatusNotFound, "not_found_error")

		// 2. The result: the turn resumes and the answer uses it.
		sent, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, customResult(use.ID, "sunny and 21 degrees", false))
		require.NoError(t, err)
		require.Equal(t, "user.custom_tool_result", sent.Data[0].Type)
		require.Equal(t, use.ID, sent.Data[0].CustomToolUseID)
		turn = stream.untilIdle()
		require.Equal(t, "session.status_running", turn[0].Type)
		var answer string
		for _, e := range turn {
			if e.Type == "agent.message" {
				answer += e.AsAgentMessage().Content[0].Text
			}
		}
		require.Contains(t, answer, "sunny and 21 degrees", "the model got the client's result")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, customResult(use.ID, "again", false))
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "no custom tool call")

		// 3. An error result reaches the model as one.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("lookup Bergen please"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		use = firstOf(t, turn, "agent.custom_tool_use").AsAgentCustomToolUse()
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, customResult(use.ID, "station offline", true))
		require.NoError(t, err)
		turn = stream.untilIdle()
		require.Contains(t, firstOf(t, turn, "agent.message").AsAgentMessage().Content[0].Text, "station offline")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// 4. agentd's clock, enabled in the agentd toolset, runs at once.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("what does the clock say"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		clock := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "clock", clock.Name)
		require.Equal(t, "agentd", clock.MCPServerName)
		res := firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, clock.ID, res.MCPToolUseID)
		require.False(t, res.IsError)
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// The history has the four turns.
		var users int
		pager := c.Beta.Sessions.Events.ListAutoPaging(ctx, sess.ID, anthropic.BetaSessionEventListParams{})
		for pager.Next() {
			if pager.Current().Type == "user.message" {
				users++
			}
		}
		require.NoError(t, pager.Err())
		require.Equal(t, 3, users)
	})
}
