package managed

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// session.updated carries only what the update changed: a cleared title
// as null, a removed budget as null, metadata cleared to empty not at
// all, the agent as its full snapshot; an update that changes nothing
// has no event.
func TestSessionUpdatedEvent(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := store.ManagedSession{ID: "sesn_1"}
	a := store.ManagedAgent{ID: "agent_1", Version: 3, Config: mustJSON(testAgent())}
	budget := &Budget{Type: "limit", MaxListCost: Money{Amount: "100", Currency: "USD"}}
	before := SessionData{Title: "t", Metadata: map[string]string{"k": "v"}, Budget: budget}

	decode := func(ev store.ManagedSessionEvent) (anthropic.BetaManagedAgentsSessionUpdatedEvent, sessionEventRow) {
		t.Helper()
		o, row, err := decodeSessionEvent(ev)
		require.NoError(t, err)
		require.Equal(t, ev.ID, o.ID)
		var u anthropic.BetaManagedAgentsSessionEventUnion
		require.NoError(t, json.Unmarshal(o.Data, &u))
		require.Equal(t, "session.updated", u.Type)
		su := u.AsSessionUpdated()
		require.Equal(t, ev.ID, su.ID)
		require.Equal(t, at, su.ProcessedAt)
		return su, row
	}

	_, ok, err := sessionUpdatedEvent(ms, a, before, before, at)
	require.NoError(t, err)
	require.False(t, ok, "nothing changed")

	after := SessionData{Metadata: map[string]string{}}
	ev, ok, err := sessionUpdatedEvent(ms, a, before, after, at)
	require.NoError(t, err)
	require.True(t, ok)
	su, row := decode(ev)
	require.JSONEq(t, `null`, su.JSON.Title.Raw())
	require.JSONEq(t, `null`, su.JSON.Budget.Raw(), "removed")
	require.False(t, su.JSON.Metadata.Valid(), "cleared to empty: absent")
	require.False(t, su.JSON.Agent.Valid())
	require.True(t, row.BudgetChanged)
	require.Equal(t, budget, row.BudgetBefore, "what the session.usage before it reported")

	after = before
	after.Metadata = map[string]string{"k": "w"}
	after.Agent = &SessionAgentConfig{Tools: []Tool{{Type: ToolCustom, Name: "x", Description: "d", InputSchema: json.RawMessage(`{"type":"object"}`)}},
		MCPServers: []MCPServer{}}
	ev, ok, err = sessionUpdatedEvent(ms, a, before, after, at)
	require.NoError(t, err)
	require.True(t, ok)
	su, row = decode(ev)
	require.Equal(t, map[string]string{"k": "w"}, su.Metadata)
	require.False(t, su.JSON.Title.Valid())
	require.False(t, su.JSON.Budget.Valid())
	require.Equal(t, "agent_1", su.Agent.ID)
	require.Equal(t, int64(3), su.Agent.Version)
	require.Equal(t, "a", su.Agent.Name, "the rest of the agent as its version has it")
	require.Len(t, su.Agent.Tools, 1)
	require.Equal(t, "x", su.Agent.Tools[0].Name)
	require.Equal(t, after.Agent, row.Agent)
	require.False(t, row.BudgetChanged)
}
