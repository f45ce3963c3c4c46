package main

import (
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"
)

func TestDemoTools(t *testing.T) {
	ctx := t.Context()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := NewServer(7).Connect(ctx, st, nil)
	require.NoError(t, err)
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	require.NoError(t, err)
	defer cs.Close()

	var names []string
	for tl, err := range cs.Tools(ctx, nil) {
		require.NoError(t, err)
		names = append(names, tl.Name)
	}
	require.ElementsMatch(t, []string{"echo", "dice", "kv_get", "kv_put"}, names)

	call := func(name string, args any, meta mcp.Meta) *mcp.CallToolResult {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args, Meta: meta})
		require.NoError(t, err)
		return res
	}
	res := call("echo", map[string]any{"text": "hi"}, nil)
	require.Equal(t, "hi", res.Content[0].(*mcp.TextContent).Text)

	roll := func() diceOut {
		var out diceOut
		raw, _ := json.Marshal(call("dice", map[string]any{"sides": 20, "count": 3}, nil).StructuredContent)
		require.NoError(t, json.Unmarshal(raw, &out))
		return out
	}
	first := roll()
	require.Len(t, first.Rolls, 3)
	// Same seed, same sequence.
	st2, ct2 := mcp.NewInMemoryTransports()
	ss2, err := NewServer(7).Connect(ctx, st2, nil)
	require.NoError(t, err)
	defer ss2.Close()
	cs2, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct2, nil)
	require.NoError(t, err)
	defer cs2.Close()
	res2, err := cs2.CallTool(ctx, &mcp.CallToolParams{Name: "dice", Arguments: map[string]any{"sides": 20, "count": 3}})
	require.NoError(t, err)
	raw, _ := json.Marshal(res2.StructuredContent)
	var again diceOut
	require.NoError(t, json.Unmarshal(raw, &again))
	require.Equal(t, first, again)

	require.True(t, call("dice", map[string]any{"sides": 1}, nil).IsError)

	meta := mcp.Meta{"io.agentd/idempotency-key": "run:1:tu"}
	call("kv_put", map[string]any{"key": "a", "value": "1"}, meta)
	call("kv_put", map[string]any{"key": "a", "value": "2"}, meta) // repeated: no effect
	raw, _ = json.Marshal(call("kv_get", map[string]any{"key": "a"}, nil).StructuredContent)
	require.JSONEq(t, `{"key":"a","value":"1","found":true}`, string(raw))
}
