package run

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// countingDefs counts PutAgentDefinition calls; it fails them while fail
// is set.
type countingDefs struct {
	mu   sync.Mutex
	puts int
	fail error
}

func (c *countingDefs) PutAgentDefinition(context.Context, string, string, json.RawMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
	return c.fail
}

func (c *countingDefs) GetAgentDefinition(context.Context, string) (json.RawMessage, error) {
	return nil, store.ErrNotFound
}

// TestPinAgentStoresAgainEveryRefresh: an instance stores a configured
// agent's definition at its first run, not at every run, and again once
// definitionRefresh has passed, so that the retention sweep (which counts
// from the last store) never sees a definition in use as old; a failed
// store is tried again at the next run.
func TestPinAgentStoresAgainEveryRefresh(t *testing.T) {
	ctx := t.Context()
	a := &ChatAgent{Agent: Agent{Name: "a", Model: "m", MaxSteps: 3}}
	defs := &countingDefs{}
	s := &Service{Agents: map[string]*ChatAgent{"a": a}, Definitions: defs}

	d1, err := s.pinAgent(ctx, a)
	require.NoError(t, err)
	require.NotEmpty(t, d1)
	d2, err := s.pinAgent(ctx, a)
	require.NoError(t, err)
	require.Equal(t, d1, d2)
	require.Equal(t, 1, defs.puts, "stored once, not per run")

	p := s.ownDefinition(a)
	p.mu.Lock()
	p.storedAt = time.Now().Add(-definitionRefresh - time.Second)
	p.mu.Unlock()
	d3, err := s.pinAgent(ctx, a)
	require.NoError(t, err)
	require.Equal(t, d1, d3)
	require.Equal(t, 2, defs.puts, "stored again after definitionRefresh")

	failing := &countingDefs{fail: errors.New("store down")}
	s = &Service{Agents: map[string]*ChatAgent{"a": a}, Definitions: failing}
	_, err = s.pinAgent(ctx, a)
	require.ErrorContains(t, err, "store down")
	failing.mu.Lock()
	failing.fail = nil
	failing.mu.Unlock()
	d4, err := s.pinAgent(ctx, a)
	require.NoError(t, err)
	require.Equal(t, d1, d4)
	require.Equal(t, 2, failing.puts, "a failed store is tried again")
}
