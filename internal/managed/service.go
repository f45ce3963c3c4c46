package managed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// Service answers the Managed Agents API over a store.
type Service struct {
	Store store.Managed
	// Catalog is what agentd's configuration offers to agents' MCP
	// toolsets (see AgentdToolset).
	Catalog Catalog
	// Runs and RunEvents carry sessions' turns (session_events.go); nil:
	// sessions take no events on this process.
	Runs      Runner
	RunEvents RunEvents
	// Agents runs the agents created through the API (the run service's
	// Resolver); nil: their sessions refuse user.message.
	Agents *Resolver
	// Webhooks queues session webhooks (the run queue's webhook jobs,
	// delivered by WebhookDeliverer) for the tenants WebhookEndpoints
	// has an endpoint for; nil: none.
	Webhooks         run.WebhookSender
	WebhookEndpoints *WebhookEndpoints
	// Hub wakes session streams when their turn's run stores events
	// (stream_wake.go); nil: they poll.
	Hub events.Hub
	// Guard is the message guard the run service applies to a turn's
	// texts (run.MessageGuard); SendEvents asks it first too, so a text
	// it refuses refuses the whole request before any event is applied.
	// Nil: none.
	Guard interface {
		Check(text string) (string, error)
	}

	wakes    wakers
	versions versionCache
}

// ---------------------------------------------------------------------------
// agents

func decodeAgent(a store.ManagedAgent) (AgentConfig, error) {
	var c AgentConfig
	if err := json.Unmarshal(a.Config, &c); err != nil {
		return c, fmt.Errorf("decode agent %s v%d: %w", a.ID, a.Version, err)
	}
	return c, nil
}

func (s *Service) agentOut(a store.ManagedAgent) (Agent, error) {
	c, err := decodeAgent(a)
	if err != nil {
		return Agent{}, err
	}
	return renderAgent(a, c), nil
}

// checkMCPServers refuses MCP server URLs the process's private-address
// policy refuses (when it runs agents with MCP servers by URL; a process
// that does not refuses their sessions' messages instead).
func (s *Service) checkMCPServers(c AgentConfig) error {
	if s.Agents == nil || s.Agents.MCP == nil {
		return nil
	}
	if e := s.Agents.CheckMCPServers(c); e != nil {
		return e
	}
	return nil
}

// CreateAgent creates an agent at version 1.
func (s *Service) CreateAgent(ctx context.Context, tenant string, req AgentRequest) (Agent, error) {
	if present(req.Version) {
		return Agent{}, invalid("version: not accepted on create (an agent starts at version 1)")
	}
	c, err := applyAgentRequest(AgentConfig{}, req, true, s.Catalog)
	if err != nil {
		return Agent{}, err
	}
	if err := s.checkMCPServers(c); err != nil {
		return Agent{}, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return Agent{}, err
	}
	a, err := s.Store.CreateManagedAgent(ctx, store.ManagedAgent{ID: newID("agent"), Tenant: tenant, Config: b})
	if err != nil {
		return Agent{}, err
	}
	return renderAgent(a, c), nil
}

// GetAgent returns version (0: the latest) of an agent.
func (s *Service) GetAgent(ctx context.Context, tenant, id string, q url.Values) (Agent, error) {
	var version int64
	for k := range q {
		if k != "version" {
			return Agent{}, invalid("unknown query parameter %q", k)
		}
	}
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return Agent{}, invalid("version: want an integer >= 1, got %q", v)
		}
		version = n
	}
	a, err := s.Store.GetManagedAgent(ctx, tenant, id, version)
	if err != nil {
		return Agent{}, err
	}
	return s.agentOut(a)
}

// UpdateAgent applies req to the agent's latest version and stores the
// result as a new version; an update that changes nothing returns the
// current version unchanged. req.Version, when sent, must be the current
// version (ErrVersionMismatch).
func (s *Service) UpdateAgent(ctx context.Context, tenant, id string, req AgentRequest) (Agent, error) {
	var want int64
	if present(req.Version) && !isNull(req.Version) {
		if err := json.Unmarshal(req.Version, &want); err != nil || want < 1 {
			return Agent{}, invalid("version: want an integer >= 1")
		}
	}
	for range 3 { // a concurrent update between read and write: read again
		cur, err := s.Store.GetManagedAgent(ctx, tenant, id, 0)
		if err != nil {
			return Agent{}, err
		}
		if cur.Tenant != tenant {
			return Agent{}, invalid("agent %q comes from agentd's configuration file and is read-only here: change it in the configuration", id)
		}
		if !cur.ArchivedAt.IsZero() {
			return Agent{}, invalid("agent %q is archived: archived agents cannot be updated", id)
		}
		if want != 0 && want != cur.Version {
			return Agent{}, fmt.Errorf("agent %s is at version %d, the update names version %d: %w", id, cur.Version, want, ErrVersionMismatch)
		}
		c, err := decodeAgent(cur)
		if err != nil {
			return Agent{}, err
		}
		next, err := applyAgentRequest(c, req, false, s.Catalog)
		if err != nil {
			return Agent{}, err
		}
		if err := s.checkMCPServers(next); err != nil {
			return Agent{}, err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return Agent{}, err
		}
		if bytes.Equal(b, cur.Config) {
			return renderAgent(cur, c), nil
		}
		a, err := s.Store.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: tenant, ID: id, ExpectedVersion: cur.Version, Config: b})
		if errors.Is(err, store.ErrConflict) {
			if want != 0 {
				return Agent{}, fmt.Errorf("agent %s changed concurrently: %w", id, ErrVersionMismatch)
			}
			continue
		}
		if err != nil {
			return Agent{}, err
		}
		return renderAgent(a, next), nil
	}
	return Agent{}, fmt.Errorf("agent %s: updated concurrently three times: %w", id, ErrVersionMismatch)
}

// ListAgents lists the latest versions of the tenant's agents and of
// agentd's configured agents, newest first.
func (s *Service) ListAgents(ctx context.Context, tenant string, q url.Values) (Page[Agent], error) {
	for _, k := range []string{"created_at[gte]", "created_at[lte]"} {
		if q.Has(k) {
			return Page[Agent]{}, unsupported(k, "filtering agents by creation time")
		}
	}
	p, err := parseList(tenant, q)
	if err != nil {
		return Page[Agent]{}, err
	}
	limit := p.Limit
	p.Limit++ // one more tells whether there is a next page
	rows, err := s.Store.ListManagedAgents(ctx, p)
	if err != nil {
		return Page[Agent]{}, err
	}
	out := Page[Agent]{Data: []Agent{}}
	for i, a := range rows {
		if i == limit {
			out.NextPage = encodeCursor(rows[i-1].CreatedAt, rows[i-1].ID)
			break
		}
		w, err := s.agentOut(a)
		if err != nil {
			return Page[Agent]{}, err
		}
		out.Data = append(out.Data, w)
	}
	return out, nil
}

// ListAgentVersions lists an agent's versions, newest first; the cursor is
// the last version of the page.
func (s *Service) ListAgentVersions(ctx context.Context, tenant, id string, q url.Values) (Page[Agent], error) {
	limit, before := DefaultLimit, int64(0)
	for k := range q {
		if k != "limit" && k != "page" {
			return Page[Agent]{}, invalid("unknown query parameter %q", k)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return Page[Agent]{}, invalid("limit: want an integer from 1 to %d, got %q", MaxLimit, v)
		}
		limit = n
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return Page[Agent]{}, invalid("page: not a cursor this server returned")
		}
		before = n
	}
	rows, err := s.Store.ListManagedAgentVersions(ctx, tenant, id, limit+1, before)
	if err != nil {
		return Page[Agent]{}, err
	}
	out := Page[Agent]{Data: []Agent{}}
	for i, a := range rows {
		if i == limit {
			next := strconv.FormatInt(rows[i-1].Version, 10)
			out.NextPage = &next
			break
		}
		w, err := s.agentOut(a)
		if err != nil {
			return Page[Agent]{}, err
		}
		out.Data = append(out.Data, w)
	}
	return out, nil
}

// ArchiveAgent archives the tenant's agent. Sessions of an archived agent
// go on; new sessions cannot name it.
func (s *Service) ArchiveAgent(ctx context.Context, tenant, id string) (Agent, error) {
	cur, err := s.Store.GetManagedAgent(ctx, tenant, id, 0)
	if err != nil {
		return Agent{}, err
	}
	if cur.Tenant != tenant {
		return Agent{}, invalid("agent %q comes from agentd's configuration file and is read-only here: remove it from the configuration", id)
	}
	a, err := s.Store.ArchiveManagedAgent(ctx, tenant, id, time.Time{})
	if err != nil {
		return Agent{}, err
	}
	return s.agentOut(a)
}

// SyncConfigAgents records the agents of agentd's configuration file as
// shared, read-only managed agents whose id is their name: a new one at
// version 1, a changed one as a new version, so that their versions follow
// the configuration across restarts. Safe to run from several processes
// at once.
func (s *Service) SyncConfigAgents(ctx context.Context, agents []AgentConfig) error {
	for _, c := range agents {
		c.Source = "config"
		if c.Metadata == nil {
			c.Metadata = map[string]string{}
		}
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if err := s.syncOne(ctx, c.Name, b); err != nil {
			return fmt.Errorf("managed agents: record configured agent %s: %w", c.Name, err)
		}
	}
	return nil
}

func (s *Service) syncOne(ctx context.Context, id string, cfg []byte) error {
	for range 5 {
		cur, err := s.Store.GetManagedAgent(ctx, store.SharedTenant, id, 0)
		switch {
		case errors.Is(err, store.ErrNotFound):
			_, err = s.Store.CreateManagedAgent(ctx, store.ManagedAgent{ID: id, Tenant: store.SharedTenant, Config: cfg})
		case err != nil:
			return err
		case cur.Tenant != store.SharedTenant:
			return fmt.Errorf("a tenant's agent has the id %q", id)
		case bytes.Equal(cur.Config, cfg):
			return nil
		default:
			_, err = s.Store.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: store.SharedTenant, ID: id,
				ExpectedVersion: cur.Version, Config: cfg})
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errors.New("changed concurrently five times")
}
