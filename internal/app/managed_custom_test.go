package app

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
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
// user.custom_tool_result, whose text the model's answer uses; of its
// agentd toolset, always_allow tools run at once and always_ask ones wait
// for a user.tool_confirmation; its turns run the session's agent version.
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
							OfAlwaysAllow: &anthropic.BetaManagedAgentsAlwaysAllowPolicyParam{}}},
						{Name: "calculator", Enabled: anthropic.Bool(true), PermissionPolicy: anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion{
							OfAlwaysAsk: &anthropic.BetaManagedAgentsAlwaysAskPolicyParam{}}}}}},
			}})
		require.NoError(t, err)
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agent.ID)}, EnvironmentID: env.ID})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)
		// A later version without the custom tool does not change the
		// session's turns: they run the version the session names.
		v2, err := c.Beta.Agents.Update(ctx, agent.ID, anthropic.BetaAgentUpdateParams{
			Tools: []anthropic.BetaAgentUpdateParamsToolUnion{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "agentd",
				DefaultConfig: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParams{Enabled: anthropic.Bool(false)},
				Configs:       []anthropic.BetaManagedAgentsMCPToolConfigParams{{Name: "clock", Enabled: anthropic.Bool(true)}}}}}})
		require.NoError(t, err)
		require.Equal(t, int64(2), v2.Version)

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
		require.Equal(t, []string{"user.custom_tool_result", "session.status_running"}, typesOf(turn[:2]))
		require.Equal(t, sent.Data[0].ID, turn[0].ID, "the stream shows the result under the id its send answered")
		require.Equal(t, use.ID, turn[0].AsUserCustomToolResult().CustomToolUseID)
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

		// 5. The calculator, always_ask in the toolset: requires_action,
		// then a user.tool_confirmation runs it.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please use the calculator"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		ask := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "calculator", ask.Name)
		require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAsk, ask.EvaluatedPermission)
		idle = turn[len(turn)-1].AsSessionStatusIdle()
		require.Equal(t, "requires_action", idle.StopReason.Type)
		require.Equal(t, []string{ask.ID}, idle.StopReason.EventIDs)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, customResult(ask.ID, "x", false))
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), ask.ID, "a confirmed call takes no custom result")
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm(ask.ID, true, ""))
		require.NoError(t, err)
		turn = stream.untilIdle()
		res = firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, ask.ID, res.MCPToolUseID)
		require.False(t, res.IsError)
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// The history has the four turns, each custom call with its
		// result (what a reconnecting tool runner reconciles with).
		count := map[string]int{}
		pager := c.Beta.Sessions.Events.ListAutoPaging(ctx, sess.ID, anthropic.BetaSessionEventListParams{})
		for pager.Next() {
			count[pager.Current().Type]++
		}
		require.NoError(t, pager.Err())
		require.Equal(t, 4, count["user.message"])
		require.Equal(t, 2, count["agent.custom_tool_use"])
		require.Equal(t, 2, count["user.custom_tool_result"])
		require.Equal(t, 7, count["session.status_idle"], "four end_turns and three requires_action")
	})
}

// lookupTool is a custom tool the SDK's session tool runner executes.
type lookupTool struct{}

func (lookupTool) Name() string        { return "lookup" }
func (lookupTool) Description() string { return "Looks up the weather" }
func (lookupTool) InputSchema() anthropic.BetaToolInputSchemaParam {
	return anthropic.BetaToolInputSchemaParam{Properties: map[string]any{"q": map[string]any{"type": "string"}}, Required: []string{"q"}}
}
func (lookupTool) Execute(_ context.Context, input json.RawMessage) ([]anthropic.BetaToolResultBlockParamContentUnion, error) {
	var in struct {
		Q string `json:"q"`
	}
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, err
	}
	return []anthropic.BetaToolResultBlockParamContentUnion{{OfText: &anthropic.BetaTextBlockParam{Text: "runner says sunny for " + in.Q}}}, nil
}

// The SDK's session tool runner drives the custom tool round trip: it
// sees agent.custom_tool_use, runs the tool and posts the
// user.custom_tool_result; the turn ends with the answer using it.
func TestManagedSessionToolRunnerSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManagedWith(t, backend, eventAgents)
		ctx := t.Context()
		c := b.Client
		sess := weatherSession(t, c, "")
		stream := openStream(t, c, sess.ID)

		rctx, cancel := context.WithCancel(context.Background())
		noIdleStop := time.Duration(-1)
		runner := c.Beta.Sessions.Events.NewToolRunner(rctx, sess.ID, anthropic.SessionToolRunnerOptions{
			Tools: []anthropic.BetaTool{lookupTool{}}, MaxIdle: &noIdleStop,
			RequestOptions: []option.RequestOption{option.WithRequestTimeout(10 * time.Minute)}})
		calls := make(chan anthropic.DispatchedToolCall, 10)
		done := make(chan struct{})
		go func() { // the runner is used from this goroutine only
			defer close(done)
			for runner.Next() {
				calls <- runner.Current()
			}
			_ = runner.Close()
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})

		_, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please lookup the weather"))
		require.NoError(t, err)
		turn := stream.untilIdle()
		use := firstOf(t, turn, "agent.custom_tool_use").AsAgentCustomToolUse()
		require.Equal(t, "requires_action", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		select {
		case call := <-calls:
			require.True(t, call.Custom)
			require.Equal(t, use.ID, call.ToolUseID)
			require.Equal(t, "lookup", call.Name)
			require.False(t, call.IsError)
			require.True(t, call.Posted, "the server took the runner's result")
		case <-time.After(30 * time.Second):
			t.Fatal("the runner dispatched no call")
		}
		turn = stream.untilIdle()
		require.Equal(t, "user.custom_tool_result", turn[0].Type)
		require.Contains(t, firstOf(t, turn, "agent.message").AsAgentMessage().Content[0].Text, "runner says sunny for ")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		select {
		case call := <-calls:
			t.Fatalf("a second dispatch: %+v", call)
		default:
		}
	})
}
