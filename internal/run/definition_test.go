package run_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// diesAtCall is a worker's model that dies at its n-th call (1-based):
// the worker stops (its runs' context ends, as when River stops it at the
// end of a drain) before the call reaches the upstream.
type diesAtCall struct {
	llm.Model
	n, calls atomic.Int64
	die      func()
}

func (m *diesAtCall) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if m.calls.Add(1) == m.n.Load() {
		m.die()
		<-ctx.Done()
		return llm.Response{}, context.Cause(ctx)
	}
	return m.Model.Stream(ctx, req, onDelta)
}

// TestRunKeepsItsAgentDefinitionAcrossADeploy: a run submitted under
// definition A (system prompt A) and checkpointed after its first step
// (a tool call) is resumed by a worker configured with definition B
// (another system prompt, one more tool): every model call of the run, at
// the upstream, carries A's system prompt and only A's tools. A run
// submitted under A that no worker of A started runs with A too; a run
// submitted under B runs with B; a run whose definition names a tool the
// worker does not have fails saying so, never runs with another
// definition.
func TestRunKeepsItsAgentDefinitionAcrossADeploy(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{Ledger: true})
		ctx := t.Context()
		defs, ok := env.st.(store.AgentDefinitions)
		require.True(t, ok, "the %s store keeps agent definitions", backend)
		const sysA, sysB = "definition A: be brief", "definition B: be verbose"
		agentsOf := func(system string, tools ...tool.Tool) map[string]*run.ChatAgent {
			a := *env.agents["demo"]
			a.System, a.Tools = system, append(tool.Builtins(nil), tools...)
			return map[string]*run.ChatAgent{"demo": &a}
		}
		extra := tool.Client{S: llm.ToolSpec{Name: "extra", Description: "B's new tool.", InputSchema: json.RawMessage(`{"type":"object"}`)}}
		serviceOf := func(agents map[string]*run.ChatAgent, model llm.Model) *run.Service {
			s := env.service(model)
			s.Agents, s.Definitions = agents, defs
			return s
		}
		worker := func(owner string, s *run.Service) *run.Runs {
			return &run.Runs{Service: s, Store: env.st, Queue: noEnqueue{env.st}, Owner: owner, LeaseTTL: 3 * time.Second, Log: env.log}
		}

		// Blue: definition A. Its worker dies at the run's second model
		// call, after the first step (the lookup) is checkpointed.
		wctx, die := context.WithCancel(ctx)
		defer die()
		dying := &diesAtCall{Model: env.model, die: die}
		dying.n.Store(2)
		blue := worker("blue", serviceOf(agentsOf(sysA, env.lookup), dying))
		const msgA = "definition test A: please use lookup"
		rn, _, err := blue.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msgA})
		require.NoError(t, err)
		require.Len(t, rn.AgentDigest, 64, "the run records its definition's digest")
		requeue, err := blue.ExecuteRun(wctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.True(t, requeue, "suspended, not finished")
		cp, err := env.st.LatestCheckpoint(ctx, rn.ID)
		require.NoError(t, err)
		require.Equal(t, 2, cp.Step, "checkpointed: the first answer, then its tool results")
		require.Equal(t, int64(1), env.lookup.n.Load())

		// A queued run of A that no worker of A starts.
		const msgQueued = "definition test queued A: hello"
		queued, _, err := blue.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msgQueued})
		require.NoError(t, err)
		require.Equal(t, rn.AgentDigest, queued.AgentDigest)

		// Green: definition B, on every instance from now on.
		green := worker("green", serviceOf(agentsOf(sysB, env.lookup, extra), nil))
		for _, id := range []string{rn.ID, queued.ID} {
			requeue, err = green.ExecuteRun(ctx, runsTenant, id)
			require.NoError(t, err)
			require.False(t, requeue)
			final := env.waitFinished(t, id)
			require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
			require.Equal(t, rn.AgentDigest, final.AgentDigest)
		}
		require.Equal(t, 2, env.waitFinished(t, rn.ID).Attempt, "resumed once, by green")
		require.Equal(t, int64(1), env.lookup.n.Load(), "the checkpointed tool call is not repeated")

		// A new run of B.
		const msgB = "definition test B: please use lookup"
		rb, _, err := green.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msgB})
		require.NoError(t, err)
		require.Len(t, rb.AgentDigest, 64)
		require.NotEqual(t, rn.AgentDigest, rb.AgentDigest)
		_, err = green.ExecuteRun(ctx, runsTenant, rb.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunSucceeded, env.waitFinished(t, rb.ID).Status)

		// At the upstream: every call of each run carried its definition's
		// system prompt, and only its tools.
		want := map[string]map[string]int{
			msgA:      {sysA: 2}, // step 1 by blue, step 2 resumed by green
			msgQueued: {sysA: 1},
			msgB:      {sysB: 2},
		}
		require.Equal(t, want, systemsByText(t, env.sim.Load()))
		stored, err := defs.GetAgentDefinition(ctx, rn.AgentDigest)
		require.NoError(t, err)
		var d run.AgentDefinition
		require.NoError(t, json.Unmarshal(stored, &d))
		require.Equal(t, sysA, d.System)
		require.Contains(t, d.Tools, "lookup")
		require.NotContains(t, d.Tools, "extra")

		// A worker without A's lookup tool cannot run A faithfully: the
		// run fails and says why.
		const msgLost = "definition test lost A: please use lookup"
		lost, _, err := blue.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msgLost})
		require.NoError(t, err)
		bare := worker("bare", serviceOf(agentsOf(sysB), nil))
		_, err = bare.ExecuteRun(ctx, runsTenant, lost.ID)
		require.NoError(t, err)
		final := env.waitFinished(t, lost.ID)
		require.Equal(t, store.RunFailed, final.Status)
		require.Contains(t, final.Error, `tool "lookup" is not configured on this instance`)
		require.NotContains(t, systemsByText(t, env.sim.Load()), msgLost, "no model call was made with another definition")

		_, err = defs.GetAgentDefinition(ctx, "0000")
		require.True(t, errors.Is(err, store.ErrNotFound), "%v", err)
	})
}

// systemsByText is the simulator's count of requests per conversation and
// system prompt, both as text: the conversation's first message's.
func systemsByText(t *testing.T, s *sim.Server) map[string]map[string]int {
	t.Helper()
	text := func(raw string) string {
		var blocks []llm.Block
		require.NoError(t, json.Unmarshal([]byte(raw), &blocks), "%s", raw)
		out := ""
		for _, b := range blocks {
			out += b.Text
		}
		return out
	}
	out := map[string]map[string]int{}
	for first, bySystem := range s.Systems() {
		m := map[string]int{}
		for sys, n := range bySystem {
			m[text(sys)] += n
		}
		out[text(first)] = m
	}
	return out
}
