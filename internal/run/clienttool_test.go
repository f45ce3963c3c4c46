package run_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// A call of a tool the client executes pauses the run until the client
// sends its result; the model gets that result and the run completes. An
// approval decision cannot stand in for the result, and the tool is never
// called by agentd.
func TestRunsClientToolPausesForItsResult(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		weather := tool.Client{S: llm.ToolSpec{Name: "weather", Description: "Weather at a place.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"place":{"type":"string"}},"required":["place"]}`)}}
		env.agents["demo"].Tools = append(env.agents["demo"].Tools, weather)
		w := env.newWorker(t, "w1", nil)
		ctx := t.Context()

		r, _, err := w.runs.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: "what is the weather in Paris"})
		require.NoError(t, err)
		env.waitRun(t, r.ID, func(r store.Run) bool { return r.Status == store.RunRequiresAction })
		pending, err := env.st.ListApprovals(ctx, r.ID)
		require.NoError(t, err)
		require.Len(t, pending, 1)
		require.Equal(t, store.ApprovalKindCustomTool, pending[0].Kind)
		require.Equal(t, "weather", pending[0].Name)

		_, _, err = w.runs.Decide(ctx, run.DecideParams{Tenant: runsTenant, RunID: r.ID, ToolUseID: pending[0].ToolUseID, Decision: store.DecisionApprove})
		require.ErrorIs(t, err, store.ErrNotFound, "an approval is not a result")
		_, _, err = w.runs.SubmitToolResult(ctx, run.ToolResultParams{Tenant: "other", RunID: r.ID, ToolUseID: pending[0].ToolUseID, Content: "x"})
		require.ErrorIs(t, err, store.ErrNotFound, "another tenant's run")

		_, after, err := w.runs.SubmitToolResult(ctx, run.ToolResultParams{
			Tenant: runsTenant, RunID: r.ID, ToolUseID: pending[0].ToolUseID, Content: "sunny, 21 degrees",
		})
		require.NoError(t, err)
		require.Equal(t, store.RunQueued, after.Status)
		_, _, err = w.runs.SubmitToolResult(ctx, run.ToolResultParams{Tenant: runsTenant, RunID: r.ID, ToolUseID: pending[0].ToolUseID, Content: "again"})
		require.ErrorIs(t, err, store.ErrConflict, "one result per call")

		done := env.waitRun(t, r.ID, func(r store.Run) bool { return r.Status.Terminal() })
		require.Equal(t, store.RunSucceeded, done.Status, done.Error)
		require.Contains(t, string(done.Output), "sunny, 21 degrees", "the model read the client's result")
		evs, err := env.st.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		var required, results int
		for _, e := range evs {
			switch e.Type {
			case run.EventToolResultRequired:
				required++
			case run.EventToolResult:
				results++
				require.Contains(t, string(e.Data), "sunny, 21 degrees")
			case run.EventApprovalRequired:
				t.Fatalf("a client tool is not an approval: %s", e.Data)
			}
		}
		require.Equal(t, 1, required)
		require.Equal(t, 1, results)
	})
}
