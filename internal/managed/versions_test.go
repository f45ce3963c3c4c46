package managed

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// countingAgents counts the agent reads that reach the store.
type countingAgents struct {
	store.Managed
	reads int
}

func (c *countingAgents) GetManagedAgent(_ context.Context, tenant, id string, version int64) (store.ManagedAgent, error) {
	c.reads++
	if tenant == "other" {
		return store.ManagedAgent{}, store.ErrNotFound
	}
	if version == 0 {
		version = 3 // the latest
	}
	return store.ManagedAgent{ID: id, Tenant: tenant, Version: version}, nil
}

// A pinned version is read from the store once per tenant that asks; the
// latest (0) every time; a refusal is not kept.
func TestSessionAgentVersionCache(t *testing.T) {
	st := &countingAgents{}
	s := &Service{Store: st}
	ctx := t.Context()
	for range 3 {
		a, err := s.sessionAgentVersion(ctx, "t1", "agent_1", 2)
		require.NoError(t, err)
		require.Equal(t, int64(2), a.Version)
	}
	require.Equal(t, 1, st.reads)
	_, err := s.sessionAgentVersion(ctx, "t1", "agent_1", 1)
	require.NoError(t, err)
	require.Equal(t, 2, st.reads, "another version is another entry")
	for range 2 {
		_, err = s.sessionAgentVersion(ctx, "other", "agent_1", 2)
		require.ErrorIs(t, err, store.ErrNotFound, "another tenant asks the store")
	}
	require.Equal(t, 4, st.reads)
	for range 2 {
		_, err = s.sessionAgentVersion(ctx, "t1", "agent_1", 0)
		require.NoError(t, err)
	}
	require.Equal(t, 6, st.reads, "the latest version is read every time")
}
