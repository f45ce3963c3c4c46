package managed

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// runEvents turns payloads into a run's store events, numbered from 1.
func runEvents(t *testing.T, runID string, t0 time.Time, payloads ...run.EventData) []store.Event {
	t.Helper()
	var out []store.Event
	for i, p := range payloads {
		b, err := json.Marshal(p)
		require.NoError(t, err)
		out = append(out, store.Event{RunID: runID, Seq: int64(i + 1), Type: p.EventType(), Data: b, CreatedAt: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	return out
}

func testAgent() AgentConfig {
	return AgentConfig{Name: "a", Model: ModelConfig{ID: "m"}, Tools: []Tool{
		{Type: ToolCustom, Name: "lookup", Description: "d", InputSchema: json.RawMessage(`{"type":"object"}`)},
		{Type: ToolMCPToolset, MCPServerName: "docs"},
		{Type: ToolMCPToolset, MCPServerName: AgentdToolset, DefaultConfig: &ToolConfig{PermissionPolicy: PolicyAlwaysAllow}},
	}}
}

func testTools() func(string) ToolInfo {
	return ToolsOf(testAgent(), func(name string) (string, bool) {
		switch name {
		case "search":
			return "docs", true
		case "clock":
			return AgentdToolset, true
		}
		return "", false
	})
}

// decodeStream decodes o as the SDK's stream union and returns the variant.
func decodeStream(t *testing.T, o Out) any {
	t.Helper()
	var u anthropic.BetaManagedAgentsStreamSessionEventsUnion
	require.NoError(t, json.Unmarshal(o.Data, &u), string(o.Data))
	require.Equal(t, o.Type, u.Type, string(o.Data))
	v := u.AsAny()
	require.NotNil(t, v, "the SDK knows no variant %q", u.Type)
	if !o.StreamOnly {
		// History events decode as the list's union too.
		var h anthropic.BetaManagedAgentsSessionEventUnion
		require.NoError(t, json.Unmarshal(o.Data, &h))
		require.NotNil(t, h.AsAny(), "history union lacks %q", h.Type)
		require.Equal(t, o.ID, h.ID)
	}
	return v
}

// A turn with a custom tool (paused for the client), an MCP tool and a
// final answer, as the SDK decodes it.
func TestTranslateTurn(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	budget := &Budget{Type: "limit", MaxListCost: Money{Amount: "500", Currency: "USD"}}
	tr := &Translator{Tools: testTools(), Budget: budget}
	evs := runEvents(t, "run1", t0,
		run.StartEvent{Agent: "a", RunID: "run1"},
		run.TextDeltaEvent{Step: 1, Index: 0, Text: "Let me "},
		run.TextDeltaEvent{Step: 1, Index: 0, Text: "look."},
		run.ToolUseEvent{Step: 1, ID: "toolu_1", Name: "lookup", Input: json.RawMessage(`{"q":"x"}`)},
		run.UsageEvent{Step: 1, InputTokens: 10, OutputTokens: 5, CacheReadInputTokens: 2, CacheCreationInputTokens: 4, CostUSD: 15_000_000},
		run.ToolResultEvent{Step: 1, ToolUseID: "toolu_1", Name: "lookup", Content: "from the client"},
		run.ToolUseEvent{Step: 2, ID: "toolu_2", Name: "search", Input: json.RawMessage(`{}`)},
		run.UsageEvent{Step: 2, InputTokens: 20, OutputTokens: 1},
		run.ToolResultEvent{Step: 2, ToolUseID: "toolu_2", Name: "search", Content: "found", IsError: true},
		run.ToolUseEvent{Step: 3, ID: "toolu_3", Name: "clock"},
		run.UsageEvent{Step: 3},
		run.ToolResultEvent{Step: 3, ToolUseID: "toolu_3", Name: "clock", Content: "noon"},
		run.TextDeltaEvent{Step: 4, Index: 0, Text: "Done."},
		run.UsageEvent{Step: 4, InputTokens: 30, OutputTokens: 2, CostUSD: 1},
		run.Answer{Text: "Done.", Content: []llm.Block{}},
	)
	var all []Out
	for _, e := range evs {
		outs, err := tr.Translate(e)
		require.NoError(t, err)
		all = append(all, outs...)
	}
	var types []string
	ids := map[string]bool{}
	for _, o := range all {
		types = append(types, o.Type)
		if o.ID != "" {
			require.False(t, ids[o.ID], "duplicate id %s", o.ID)
			ids[o.ID] = true
		}
	}
	require.Equal(t, []string{
		"session.status_running",
		"span.model_request_start", "event_start", "event_delta", "event_delta",
		"agent.message", "agent.custom_tool_use", "span.model_request_end", "session.usage", "user.custom_tool_result",
		"span.model_request_start", "agent.mcp_tool_use", "span.model_request_end", "session.usage", "agent.mcp_tool_result",
		"span.model_request_start", "agent.mcp_tool_use", "span.model_request_end", "session.usage", "agent.mcp_tool_result",
		"span.model_request_start", "event_start", "event_delta", "agent.message", "span.model_request_end", "session.usage",
		"session.status_idle",
	}, types)

	// Each decodes as the SDK's variant with the fields a client reads.
	byType := func(typ string, n int) Out {
		for _, o := range all {
			if o.Type == typ {
				if n == 0 {
					return o
				}
				n--
			}
		}
		t.Fatalf("no %s #%d", typ, n)
		return Out{}
	}
	// session.usage: the session's sums so far, after each call's span.
	u1 := decodeStream(t, byType("session.usage", 0)).(anthropic.BetaManagedAgentsSessionUsageEvent)
	require.Equal(t, int64(10), u1.Usage.InputTokens)
	require.Equal(t, int64(4), u1.Usage.CacheCreation.Ephemeral5mInputTokens)
	require.Equal(t, "2", u1.Usage.ListCost.Amount, "1.5 cents, rounded up")
	require.Equal(t, "500", u1.Budget.MaxListCost.Amount)
	require.Equal(t, evs[4].CreatedAt.Sub(t0).Seconds(), u1.Usage.ActiveSeconds, "from the turn's start to the call's end")
	u4 := decodeStream(t, byType("session.usage", 3)).(anthropic.BetaManagedAgentsSessionUsageEvent)
	require.Equal(t, int64(60), u4.Usage.InputTokens)
	require.Equal(t, int64(8), u4.Usage.OutputTokens)
	require.Equal(t, int64(2), u4.Usage.CacheReadInputTokens)
	require.Equal(t, "2", u4.Usage.ListCost.Amount, "15 000 001 nano-dollars: 1.5 cents and a bit, rounded up")
	require.Equal(t, "0.015000001", u4.Usage.JSON.ExtraFields["cost_usd"].Raw())

	running := decodeStream(t, byType("session.status_running", 0)).(anthropic.BetaManagedAgentsSessionStatusRunningEvent)
	require.Equal(t, t0, running.ProcessedAt)

	start := decodeStream(t, byType("event_start", 0)).(anthropic.BetaManagedAgentsStartEvent)
	require.Equal(t, "agent.message", start.Event.Type)
	delta := decodeStream(t, byType("event_delta", 1)).(anthropic.BetaManagedAgentsDeltaEvent)
	require.Equal(t, start.Event.ID, delta.EventID)
	require.Equal(t, "look.", delta.Delta.Content.Text)
	require.Equal(t, int64(0), delta.Delta.Index)
	msg := decodeStream(t, byType("agent.message", 0)).(anthropic.BetaManagedAgentsAgentMessageEvent)
	require.Equal(t, start.Event.ID, msg.ID, "the buffered message reconciles its preview")
	require.Equal(t, "Let me look.", msg.Content[0].Text)

	custom := decodeStream(t, byType("agent.custom_tool_use", 0)).(anthropic.BetaManagedAgentsAgentCustomToolUseEvent)
	require.Equal(t, "toolu_1", custom.ID, "the event id is the tool_use id the run knows")
	require.Equal(t, "lookup", custom.Name)
	require.Equal(t, map[string]any{"q": "x"}, custom.Input)
	result := decodeStream(t, byType("user.custom_tool_result", 0)).(anthropic.BetaManagedAgentsUserCustomToolResultEvent)
	require.Equal(t, "toolu_1", result.CustomToolUseID, "the client's result, as the run applied it")
	require.Equal(t, CustomToolResultID("run1", "toolu_1"), result.ID)
	require.Equal(t, "from the client", result.Content[0].AsText().Text)

	span := decodeStream(t, byType("span.model_request_end", 0)).(anthropic.BetaManagedAgentsSpanModelRequestEndEvent)
	spanStart := decodeStream(t, byType("span.model_request_start", 0)).(anthropic.BetaManagedAgentsSpanModelRequestStartEvent)
	require.Equal(t, spanStart.ID, span.ModelRequestStartID)
	require.Equal(t, int64(10), span.ModelUsage.InputTokens)
	require.Equal(t, int64(5), span.ModelUsage.OutputTokens)
	require.Equal(t, int64(2), span.ModelUsage.CacheReadInputTokens)
	require.False(t, span.IsError)

	mcpUse := decodeStream(t, byType("agent.mcp_tool_use", 0)).(anthropic.BetaManagedAgentsAgentMCPToolUseEvent)
	require.Equal(t, "docs", mcpUse.MCPServerName)
	require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAsk, mcpUse.EvaluatedPermission, "MCP toolsets ask by default")
	mcpRes := decodeStream(t, byType("agent.mcp_tool_result", 0)).(anthropic.BetaManagedAgentsAgentMCPToolResultEvent)
	require.Equal(t, "toolu_2", mcpRes.MCPToolUseID)
	require.True(t, mcpRes.IsError)
	require.Equal(t, "found", mcpRes.Content[0].Text)
	own := decodeStream(t, byType("agent.mcp_tool_use", 1)).(anthropic.BetaManagedAgentsAgentMCPToolUseEvent)
	require.Equal(t, AgentdToolset, own.MCPServerName)
	require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAllow, own.EvaluatedPermission)
	require.Empty(t, own.Input)

	idle := decodeStream(t, byType("session.status_idle", 0)).(anthropic.BetaManagedAgentsSessionStatusIdleEvent)
	require.Equal(t, "end_turn", idle.StopReason.Type)

	// Deltas never reach the history.
	for _, o := range all {
		require.Equal(t, o.Type == "event_start" || o.Type == "event_delta", o.StreamOnly, o.Type)
	}
}

// Translating the same events again gives the same ids (a reconnecting
// stream and the history agree).
func TestTranslateDeterministic(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC()
	evs := runEvents(t, "run2", t0, run.StartEvent{}, run.TextDeltaEvent{Step: 1, Text: "a"}, run.UsageEvent{Step: 1},
		run.Answer{Text: "a"})
	var first, second []Out
	tr1, tr2 := &Translator{}, &Translator{}
	for _, e := range evs {
		a, err := tr1.Translate(e)
		require.NoError(t, err)
		first = append(first, a...)
		b, err := tr2.Translate(e)
		require.NoError(t, err)
		second = append(second, b...)
	}
	require.Equal(t, first, second)
}

func TestTranslateEndings(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC()
	for _, tc := range []struct {
		name  string
		last  run.EventData
		types []string
		stop  string
	}{
		{"answer without deltas", run.Answer{Text: "hi"}, []string{"agent.message", "session.status_idle"}, "end_turn"},
		{"interrupted", run.ErrorInfo{Type: "interrupted", Message: "interrupted"}, []string{"session.status_idle"}, "end_turn"},
		{"canceled", run.ErrorInfo{Type: "canceled", Message: "canceled"}, []string{"session.status_idle"}, "end_turn"},
		{"budget", run.ErrorInfo{Type: "budget_exceeded", Message: "over"}, []string{"session.status_idle"}, "budget_reached"},
		{"model down", run.ErrorInfo{Type: "upstream_unavailable", Message: "overloaded"}, []string{"session.error", "session.status_idle"}, "retries_exhausted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Translator{}
			var got []Out
			for _, e := range runEvents(t, "r", t0, run.StartEvent{}, tc.last) {
				outs, err := tr.Translate(e)
				require.NoError(t, err)
				got = append(got, outs...)
			}
			require.Equal(t, "session.status_running", got[0].Type)
			var types []string
			for _, o := range got[1:] {
				types = append(types, o.Type)
				decodeStream(t, o)
			}
			require.Equal(t, tc.types, types)
			idle := decodeStream(t, got[len(got)-1]).(anthropic.BetaManagedAgentsSessionStatusIdleEvent)
			require.Equal(t, tc.stop, idle.StopReason.Type)
			if tc.types[0] == "session.error" {
				se := decodeStream(t, got[1]).(anthropic.BetaManagedAgentsSessionErrorEvent)
				require.Equal(t, "model_overloaded_error", se.Error.Type)
				require.Equal(t, "overloaded", se.Error.Message)
				require.Equal(t, "exhausted", se.Error.RetryStatus.Type)
			}
		})
	}
}

// A resumed run drops the unfinished call's streamed text: the message
// holds only the new attempt's.
func TestTranslateResumed(t *testing.T) {
	t.Parallel()
	tr := &Translator{}
	var got []Out
	for _, e := range runEvents(t, "r", time.Now().UTC(),
		run.StartEvent{}, run.TextDeltaEvent{Step: 1, Text: "half"}, run.ResumedEvent{AfterSeq: 1, Step: 1},
		run.TextDeltaEvent{Step: 1, Text: "whole"}, run.UsageEvent{Step: 1}, run.Answer{Text: "whole"}) {
		outs, err := tr.Translate(e)
		require.NoError(t, err)
		got = append(got, outs...)
	}
	var msgs []string
	for _, o := range got {
		if o.Type == "agent.message" {
			m := decodeStream(t, o).(anthropic.BetaManagedAgentsAgentMessageEvent)
			msgs = append(msgs, m.Content[0].Text)
		}
	}
	require.Equal(t, []string{"whole"}, msgs)
}

func TestRequiresAction(t *testing.T) {
	t.Parallel()
	o, err := (&Translator{}).RequiresAction("sevt_x", time.Now(), []string{"toolu_1", "toolu_2"})
	require.NoError(t, err)
	idle := decodeStream(t, o).(anthropic.BetaManagedAgentsSessionStatusIdleEvent)
	require.Equal(t, "requires_action", idle.StopReason.Type)
	require.Equal(t, []string{"toolu_1", "toolu_2"}, idle.StopReason.EventIDs)
}

// A run that finished without ending its turn in events (canceled while
// queued, failed outside its loop) still ends the turn, once.
func TestTranslateEnded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status store.RunStatus
		types  []string
		stop   string
	}{
		{store.RunCanceled, []string{"session.status_idle"}, "end_turn"},
		{store.RunInterrupted, []string{"session.status_idle"}, "end_turn"},
		{store.RunFailed, []string{"session.error", "session.status_idle"}, "retries_exhausted"},
	} {
		tr := &Translator{}
		outs, ok, err := tr.Ended(store.Run{ID: "r", Status: tc.status, Error: "boom", FinishedAt: time.Now()})
		require.NoError(t, err)
		require.True(t, ok)
		var types []string
		for _, o := range outs {
			types = append(types, o.Type)
			decodeStream(t, o)
		}
		require.Equal(t, tc.types, types)
		require.Equal(t, tc.stop, decodeStream(t, outs[len(outs)-1]).(anthropic.BetaManagedAgentsSessionStatusIdleEvent).StopReason.Type)
		_, ok, err = tr.Ended(store.Run{ID: "r", Status: tc.status})
		require.NoError(t, err)
		require.False(t, ok, "once")
	}
	// A turn its events ended adds nothing; a running one neither.
	tr := &Translator{}
	for _, e := range runEvents(t, "r", time.Now(), run.StartEvent{}, run.Answer{Text: "x"}) {
		_, err := tr.Translate(e)
		require.NoError(t, err)
	}
	_, ok, err := tr.Ended(store.Run{ID: "r", Status: store.RunSucceeded})
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = (&Translator{}).Ended(store.Run{ID: "r", Status: store.RunRunning})
	require.NoError(t, err)
	require.False(t, ok)
}
