package run_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

// versionedAgents resolves "dyn" for tenant runsTenant at any version and
// records the versions asked for.
type versionedAgents struct {
	env  *runsEnv
	mu   sync.Mutex
	seen []int
}

func (v *versionedAgents) ResolveAgent(_ context.Context, tenant, name string, version int) (*run.ChatAgent, error) {
	v.mu.Lock()
	v.seen = append(v.seen, version)
	v.mu.Unlock()
	if tenant != runsTenant || name != "dyn" {
		return nil, fmt.Errorf("%w: %q", run.ErrAgentNotFound, name)
	}
	a := *v.env.agents["demo"]
	a.Name = "dyn"
	a.System = fmt.Sprintf("version %d", version)
	return &a, nil
}

// Agents that are not in the configuration come from the Service's
// Resolver, at the version the run was submitted with, both when it is
// submitted and when a worker executes it; an unknown one is refused.
func TestRunsResolveAgentsNotInTheConfiguration(t *testing.T) {
	t.Parallel()
	env := setupRunsEnv(t, "sqlite", sim.Config{})
	res := &versionedAgents{env: env}
	svc := env.service(nil)
	svc.Resolver = res
	runs := &run.Runs{Service: svc, Store: env.st, Owner: "w1", LeaseTTL: 3 * time.Second, Log: env.log}
	q, err := env.newQueue(t.Context(), queue.Config{Executor: runs, Workers: 2, FetchPollInterval: 50 * time.Millisecond, Log: env.log})
	require.NoError(t, err)
	runs.Queue = q
	require.NoError(t, q.Start(env.bg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = q.Stop(ctx)
	})

	r, _, err := runs.Submit(t.Context(), run.SubmitParams{Tenant: runsTenant, Agent: "dyn", AgentVersion: 3, Message: "hello"})
	require.NoError(t, err)
	require.Equal(t, "dyn", r.Agent)
	done := env.waitRun(t, r.ID, func(r store.Run) bool { return r.Status.Terminal() })
	require.Equal(t, store.RunSucceeded, done.Status, done.Error)
	res.mu.Lock()
	require.Equal(t, []int{3, 3}, res.seen, "resolved at submit and at execution, pinned to version 3")
	res.mu.Unlock()

	_, _, err = runs.Submit(t.Context(), run.SubmitParams{Tenant: "other", Agent: "dyn", Message: "hello"})
	require.ErrorIs(t, err, run.ErrAgentNotFound)
}
