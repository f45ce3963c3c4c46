package run_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
)

// TestEventJSON pins the JSON of every event type: the bytes clients and
// stored runs have, which were built from maps before the payloads were
// typed (the map column is that old form).
func TestEventJSON(t *testing.T) {
	t.Parallel()
	input := json.RawMessage(`{"key":"a<b"}`)
	cases := []struct {
		data run.EventData
		typ  string
		old  any // the payload as it was built before it was typed; nil: it already was a struct
		want string
	}{
		{
			run.StartEvent{RunID: "r1", ConversationID: "c1", Agent: "demo", Model: "claude-sonnet-4-5"}, run.EventStart,
			map[string]any{"run_id": "r1", "conversation_id": "c1", "agent": "demo", "model": "claude-sonnet-4-5"},
			`{"agent":"demo","conversation_id":"c1","model":"claude-sonnet-4-5","run_id":"r1"}`,
		},
		{
			run.TextDeltaEvent{Step: 2, Index: 1, Text: "héllo <b>"}, run.EventTextDelta, nil,
			`{"step":2,"index":1,"text":"héllo \u003cb\u003e"}`,
		},
		{
			run.ToolUseEvent{Step: 1, ID: "tu1", Name: "lookup", Input: input}, run.EventToolUse,
			map[string]any{"step": 1, "id": "tu1", "name": "lookup", "input": input},
			`{"id":"tu1","input":{"key":"a\u003cb"},"name":"lookup","step":1}`,
		},
		{
			run.ToolUseEvent{Step: 1, ID: "tu2", Name: "now"}, run.EventToolUse,
			map[string]any{"step": 1, "id": "tu2", "name": "now", "input": json.RawMessage(nil)},
			`{"id":"tu2","input":null,"name":"now","step":1}`,
		},
		{
			run.ToolResultEvent{Step: 1, ToolUseID: "tu1", Name: "lookup", Content: "v", IsError: true, DurationMS: 12},
			run.EventToolResult,
			map[string]any{"step": 1, "tool_use_id": "tu1", "name": "lookup", "content": "v", "is_error": true, "duration_ms": int64(12)},
			`{"content":"v","duration_ms":12,"is_error":true,"name":"lookup","step":1,"tool_use_id":"tu1"}`,
		},
		{
			run.UsageEvent{Step: 1, Model: "claude-sonnet-4-5-20250929", RequestID: "req_1", StopReason: "tool_use",
				InputTokens: 100, OutputTokens: 20, CacheCreationInputTokens: 3, CacheReadInputTokens: 4, CostUSD: money.FromUSD(0.000123)},
			run.EventUsage,
			map[string]any{
				"step": 1, "model": "claude-sonnet-4-5-20250929", "request_id": "req_1", "stop_reason": "tool_use",
				"input_tokens": int64(100), "output_tokens": int64(20),
				"cache_creation_input_tokens": int64(3), "cache_read_input_tokens": int64(4),
				"cost_usd": 0.000123,
			},
			`{"cache_creation_input_tokens":3,"cache_read_input_tokens":4,"cost_usd":0.000123,"input_tokens":100,"model":"claude-sonnet-4-5-20250929","output_tokens":20,"request_id":"req_1","step":1,"stop_reason":"tool_use"}`,
		},
		{
			run.ResumedEvent{Step: 3, AfterSeq: 41}, run.EventResumed,
			map[string]any{"step": 3, "after_seq": int64(41)},
			`{"after_seq":41,"step":3}`,
		},
		{
			run.NewAnswer("r1", "c1", "demo", run.Result{
				Output:     []llm.Block{{Type: "text", Text: "hi"}},
				StopReason: "end_turn", Steps: 1, Usage: llm.Usage{InputTokens: 5, OutputTokens: 1}, CostUSD: money.FromUSD(0.5),
			}), run.EventDone, nil,
			`{"run_id":"r1","conversation_id":"c1","agent":"demo","content":[{"type":"text","text":"hi"}],"text":"hi","stop_reason":"end_turn","steps":1,"usage":{"input_tokens":5,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"cost_usd":0.5}`,
		},
		{
			run.ClassifyError(run.ErrMaxSteps), run.EventError, nil,
			`{"type":"max_steps","message":"max_steps reached while the model still asked for tools"}`,
		},
	}
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			require.Equal(t, c.typ, c.data.EventType())
			raw, err := json.Marshal(c.data)
			require.NoError(t, err)
			require.JSONEq(t, c.want, string(raw))
			require.Equal(t, c.want, string(raw), "the same bytes, key order included")
			if c.old != nil {
				old, err := json.Marshal(c.old)
				require.NoError(t, err)
				require.Equal(t, string(old), string(raw), "the bytes of the map the payload replaced")
			}
		})
	}
}
