package managed

import (
	"context"
	"sync"

	"github.com/agentd/agentd/internal/store"
)

// maxCachedVersions bounds versionCache: past it the cache starts over.
const maxCachedVersions = 4096

// versionCache keeps the agent versions sessions name. A version's
// configuration never changes (an update adds a version; a configured
// agent's change too), so a session's hot paths — a send, a stream's
// opening — read it from the store once per process instead of at every
// request. Those paths use only its ID, Tenant, Version and Config;
// Latest, UpdatedAt and ArchivedAt are as first read, so nothing that
// shows an agent reads through it. Keyed by the tenant that asked: the
// store decides, on a miss, whether that tenant may see the agent.
type versionCache struct {
	mu sync.Mutex
	m  map[versionKey]store.ManagedAgent
}

type versionKey struct {
	tenant, id string
	version    int64
}

// sessionAgentVersion is version (> 0) of agent id, as tenant's session
// names it (store.Managed.GetManagedAgent's errors; version 0, the
// latest, is not cached).
func (s *Service) sessionAgentVersion(ctx context.Context, tenant, id string, version int64) (store.ManagedAgent, error) {
	if version <= 0 {
		return s.Store.GetManagedAgent(ctx, tenant, id, version)
	}
	c, k := &s.versions, versionKey{tenant, id, version}
	c.mu.Lock()
	a, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := s.Store.GetManagedAgent(ctx, tenant, id, version)
	if err != nil {
		return a, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedVersions {
		c.m = make(map[versionKey]store.ManagedAgent)
	}
	c.m[k] = a
	c.mu.Unlock()
	return a, nil
}
