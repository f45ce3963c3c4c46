package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// next reads the stream's next event.
func (s *sessionStream) next() anthropic.BetaManagedAgentsStreamSessionEventsUnion {
	s.t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case err := <-s.errc:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(30 * time.Second):
		s.t.Fatalf("no event within 30s")
	}
	return anthropic.BetaManagedAgentsStreamSessionEventsUnion{}
}

// A session's agent updated mid-session (its tools): the next turn's model
// request offers the new tools (the simulator calls a tool the message
// names only when it is offered), the agent's version is untouched, a
// turn in progress refuses the update; every update is a session.updated
// in the history and on the stream (resumable after it), and session.usage
// after each model call sums to the session's usage.
func TestManagedSessionUpdateAgentSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManagedWith(t, backend, eventAgents)
		ctx := t.Context()
		c := b.Client
		agent, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{
			Name:   "helper",
			Model:  anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
			System: anthropic.String("You help."),
			Tools:  []anthropic.BetaAgentNewParamsToolUnion{customTool("lookup")},
		})
		require.NoError(t, err)
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agent.ID)}, EnvironmentID: env.ID,
			Budget: anthropic.BetaManagedAgentsBudgetLimitParam{MaxListCost: anthropic.BetaMonetaryAmountParam{Amount: "1000", Currency: "USD"}}})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)

		// 1. The agent's tools: the clock is not offered, so not called.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("what does the clock say"))
		require.NoError(t, err)
		turn1 := stream.untilIdle()
		for i, e := range turn1 {
			require.NotEqual(t, "agent.mcp_tool_use", e.Type, "%v", typesOf(turn1))
			if e.Type == "span.model_request_end" {
				require.Equal(t, "session.usage", turn1[i+1].Type, "session.usage follows each model call")
			}
		}

		// 2. The update: agentd's clock replaces the custom tool.
		clockOnly := []anthropic.BetaManagedAgentsSessionAgentUpdateToolUnionParam{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{
			MCPServerName: "agentd", DefaultConfig: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParams{Enabled: anthropic.Bool(false)},
			Configs: []anthropic.BetaManagedAgentsMCPToolConfigParams{{Name: "clock", Enabled: anthropic.Bool(true),
				PermissionPolicy: anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion{OfAlwaysAllow: &anthropic.BetaManagedAgentsAlwaysAllowPolicyParam{}}}}}}}
		up, err := c.Beta.Sessions.Update(ctx, sess.ID, anthropic.BetaSessionUpdateParams{Title: anthropic.String("clocked"),
			Agent: anthropic.BetaManagedAgentsSessionAgentUpdateParam{Tools: clockOnly}})
		require.NoError(t, err)
		require.Len(t, up.Agent.Tools, 1)
		require.Equal(t, "mcp_toolset", up.Agent.Tools[0].Type)
		require.Equal(t, "agentd", up.Agent.Tools[0].MCPServerName)
		require.Equal(t, int64(1), up.Agent.Version, "the session keeps its agent version")
		require.Equal(t, "You help.", up.Agent.System)
		got, err := c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, "mcp_toolset", got.Agent.Tools[0].Type, "Get shows the session's tools")
		v1, err := c.Beta.Agents.Get(ctx, agent.ID, anthropic.BetaAgentGetParams{})
		require.NoError(t, err)
		require.Equal(t, int64(1), v1.Version, "the agent itself is not changed")
		require.Equal(t, "custom", v1.Tools[0].Type)

		updated := stream.next()
		require.Equal(t, "session.updated", updated.Type, "the live stream sends the update")
		su := updated.AsSessionUpdated()
		require.Equal(t, "clocked", su.Title)
		require.Len(t, su.Agent.Tools, 1, "the agent's full snapshot")
		require.Equal(t, "mcp_toolset", su.Agent.Tools[0].Type)
		require.Equal(t, agent.ID, su.Agent.ID)
		require.False(t, su.JSON.Budget.Valid(), "only what changed: %s", su.RawJSON())
		require.False(t, su.JSON.Metadata.Valid(), "only what changed: %s", su.RawJSON())

		// 3. The next turn offers the new tools: the clock runs, the
		// custom tool is gone.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("what does the clock say"))
		require.NoError(t, err)
		turn2 := stream.untilIdle()
		clock := firstOf(t, turn2, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "clock", clock.Name)
		require.Equal(t, "agentd", clock.MCPServerName)
		require.Equal(t, "end_turn", last(turn2).AsSessionStatusIdle().StopReason.Type)

		// A budget update: the next session.usage reports it.
		_, err = c.Beta.Sessions.Update(ctx, sess.ID, anthropic.BetaSessionUpdateParams{
			Budget: anthropic.BetaManagedAgentsBudgetLimitParam{MaxListCost: anthropic.BetaMonetaryAmountParam{Amount: "2000", Currency: "USD"}}})
		require.NoError(t, err)
		budgetUpdated := stream.next()
		require.Equal(t, "session.updated", budgetUpdated.Type)
		require.Equal(t, "2000", budgetUpdated.AsSessionUpdated().Budget.MaxListCost.Amount)
		require.False(t, budgetUpdated.AsSessionUpdated().JSON.Agent.Valid())
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please lookup the weather in Oslo"))
		require.NoError(t, err)
		turn3 := stream.untilIdle()
		for _, e := range turn3 {
			require.NotEqual(t, "agent.custom_tool_use", e.Type, "lookup is no longer offered: %v", typesOf(turn3))
		}
		require.Equal(t, "2000", firstOf(t, turn3, "session.usage").AsSessionUsage().Budget.MaxListCost.Amount)

		// 4. Refused, changing nothing: a tool this server does not run,
		// a toolset of no server, an unknown field, a session of a
		// configured agent, and a session whose turn waits.
		apiErr := func(p anthropic.BetaSessionUpdateParams, opts ...option.RequestOption) string {
			t.Helper()
			_, err := c.Beta.Sessions.Update(ctx, sess.ID, p, opts...)
			return apiError(t, err, http.StatusBadRequest, "invalid_request_error")
		}
		require.Contains(t, apiErr(anthropic.BetaSessionUpdateParams{Agent: anthropic.BetaManagedAgentsSessionAgentUpdateParam{
			Tools: []anthropic.BetaManagedAgentsSessionAgentUpdateToolUnionParam{{OfAgentToolset20260401: &anthropic.BetaManagedAgentsAgentToolset20260401Params{}}}}}),
			"agent: tools[0]")
		require.Contains(t, apiErr(anthropic.BetaSessionUpdateParams{Agent: anthropic.BetaManagedAgentsSessionAgentUpdateParam{
			Tools: []anthropic.BetaManagedAgentsSessionAgentUpdateToolUnionParam{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "nowhere"}}}}}),
			"agent: tools[0].mcp_server_name")
		require.Contains(t, apiErr(anthropic.BetaSessionUpdateParams{}, option.WithJSONSet("agent", map[string]any{"system": "x"})),
			`agent: unknown field "system"`)
		demo, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}, EnvironmentID: env.ID})
		require.NoError(t, err)
		_, err = c.Beta.Sessions.Update(ctx, demo.ID, anthropic.BetaSessionUpdateParams{Agent: anthropic.BetaManagedAgentsSessionAgentUpdateParam{Tools: clockOnly}})
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "agentd's configuration file")

		askCalc := []anthropic.BetaManagedAgentsSessionAgentUpdateToolUnionParam{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{
			MCPServerName: "agentd", DefaultConfig: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParams{Enabled: anthropic.Bool(false)},
			Configs: []anthropic.BetaManagedAgentsMCPToolConfigParams{{Name: "calculator", Enabled: anthropic.Bool(true),
				PermissionPolicy: anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion{OfAlwaysAsk: &anthropic.BetaManagedAgentsAlwaysAskPolicyParam{}}}}}}}
		_, err = c.Beta.Sessions.Update(ctx, sess.ID, anthropic.BetaSessionUpdateParams{Agent: anthropic.BetaManagedAgentsSessionAgentUpdateParam{Tools: askCalc}})
		require.NoError(t, err)
		require.Equal(t, "session.updated", stream.next().Type)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please use the calculator"))
		require.NoError(t, err)
		turn4 := stream.untilIdle()
		ask := firstOf(t, turn4, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "calculator", ask.Name)
		require.Equal(t, "requires_action", last(turn4).AsSessionStatusIdle().StopReason.Type)
		require.Contains(t, apiErr(anthropic.BetaSessionUpdateParams{Agent: anthropic.BetaManagedAgentsSessionAgentUpdateParam{Tools: clockOnly}}),
			"turn in progress", "the waiting turn keeps its tools")
		// A title may change meanwhile: its session.updated comes after
		// the turn, in the history as on the stream.
		_, err = c.Beta.Sessions.Update(ctx, sess.ID, anthropic.BetaSessionUpdateParams{Title: anthropic.String("waiting")})
		require.NoError(t, err)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm(ask.ID, true, ""))
		require.NoError(t, err)
		turn4 = stream.untilIdle()
		require.Equal(t, "end_turn", last(turn4).AsSessionStatusIdle().StopReason.Type)
		require.Equal(t, ask.ID, firstOf(t, turn4, "agent.mcp_tool_result").AsAgentMCPToolResult().MCPToolUseID)
		titled := stream.next()
		require.Equal(t, "session.updated", titled.Type, "after the turn it happened in")
		require.Equal(t, "waiting", titled.AsSessionUpdated().Title)

		// 5. The history has each update where it happened, under the id
		// the stream sent; its session.usage sums to the session's usage.
		var history []anthropic.BetaManagedAgentsSessionEventUnion
		pager := c.Beta.Sessions.Events.ListAutoPaging(ctx, sess.ID, anthropic.BetaSessionEventListParams{})
		for pager.Next() {
			history = append(history, pager.Current())
		}
		require.NoError(t, pager.Err())
		at := -1
		var updates []string
		var usages []anthropic.BetaManagedAgentsSessionUsageEvent
		var spans int
		for i, e := range history {
			switch e.Type {
			case "session.updated":
				updates = append(updates, e.ID)
				if e.ID == updated.ID {
					at = i
				}
			case "session.usage":
				usages = append(usages, e.AsSessionUsage())
			case "span.model_request_end":
				spans++
			}
		}
		require.Equal(t, []string{updated.ID, budgetUpdated.ID}, updates[:2])
		require.Len(t, updates, 4)
		require.Equal(t, titled.ID, history[len(history)-1].ID, "the update during the last turn comes after it")
		require.Positive(t, at)
		require.Equal(t, "session.status_idle", history[at-1].Type, "after the first turn")
		require.Equal(t, "user.message", history[at+1].Type, "before the second")
		require.Equal(t, "clocked", history[at].AsSessionUpdated().Title)
		require.Len(t, usages, spans, "one session.usage per model call")
		require.Equal(t, "1000", usages[0].Budget.MaxListCost.Amount, "the budget when the call was made")
		require.Equal(t, "2000", usages[len(usages)-1].Budget.MaxListCost.Amount)
		final := usages[len(usages)-1].Usage
		var in, out int64
		for _, e := range history {
			if e.Type == "span.model_request_end" {
				in, out = in+e.AsSpanModelRequestEnd().ModelUsage.InputTokens, out+e.AsSpanModelRequestEnd().ModelUsage.OutputTokens
			}
		}
		require.Equal(t, in, final.InputTokens, "cumulative")
		require.Equal(t, out, final.OutputTokens)
		// Usage rows are written in batches (every 100 ms).
		require.Eventually(t, func() bool {
			got, err = c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
			require.NoError(t, err)
			return got.Usage.InputTokens == final.InputTokens && got.Usage.OutputTokens == final.OutputTokens &&
				got.Usage.CacheReadInputTokens == final.CacheReadInputTokens && got.Usage.ListCost.Amount == final.ListCost.Amount &&
				got.Usage.JSON.ExtraFields["cost_usd"].Raw() == final.JSON.ExtraFields["cost_usd"].Raw()
		}, 10*time.Second, 50*time.Millisecond, "session.usage %s, Get %s", usages[len(usages)-1].RawJSON(), got.Usage.RawJSON())
		require.Positive(t, final.InputTokens)

		// 6. A stream resumed after the update sends what followed it,
		// without repeats, and agrees with the history.
		resumed := openStream(t, c, sess.ID, option.WithHeader("Last-Event-ID", updated.ID))
		tail := resumed.untilIdle()
		var tailIDs, wantIDs []string
		for _, e := range tail {
			if e.Type != "event_start" && e.Type != "event_delta" {
				tailIDs = append(tailIDs, e.ID)
			}
		}
		for _, h := range history[at+1:] {
			wantIDs = append(wantIDs, h.ID)
			if h.Type == "session.status_idle" {
				break
			}
		}
		require.Equal(t, wantIDs, tailIDs)
		next := resumed.next() // the budget update, between turns
		require.Equal(t, budgetUpdated.ID, next.ID)
		for _, e := range resumed.untilIdle() {
			if e.Type == "session.usage" {
				require.Equal(t, "2000", e.AsSessionUsage().Budget.MaxListCost.Amount)
			}
		}
	})
}
