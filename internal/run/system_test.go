package run

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// A run's system text: its input's texts, then those sent with its client
// tools' results in the order they were decided (not requested), none of
// an approval's reason; withSystem appends the non-empty ones to the
// agent's prompt and leaves the agent alone when there are none.
func TestSessionSystem(t *testing.T) {
	t0 := time.Now()
	approvals := []store.Approval{
		{ToolUseID: "a", Decision: store.DecisionResult, SystemMessage: "second", DecidedAt: t0.Add(2 * time.Second)},
		{ToolUseID: "b", Decision: store.DecisionResult, SystemMessage: "first", DecidedAt: t0.Add(time.Second)},
		{ToolUseID: "c", Decision: store.DecisionResult, DecidedAt: t0},
		{ToolUseID: "d", Decision: store.DecisionDeny, Reason: "no"},
		{ToolUseID: "e"},
	}
	got := SessionSystem([]string{"earlier"}, "with the message", approvals)
	require.Equal(t, []string{"earlier", "with the message", "first", "second"}, got)
	require.Equal(t, []string{"earlier"}, SessionSystem([]string{"earlier"}, "", nil))

	a := &ChatAgent{}
	a.System = "You are the demo."
	require.Same(t, a, withSystem(a))
	require.Same(t, a, withSystem(a, "", ""))
	b := withSystem(a, got...)
	require.Equal(t, "You are the demo.\n\nearlier\n\nwith the message\n\nfirst\n\nsecond", b.System)
	require.Equal(t, "You are the demo.", a.System, "a copy: the agent may be shared")
	require.Equal(t, "x", withSystem(&ChatAgent{}, "", "x").System)
}
