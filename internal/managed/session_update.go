package managed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// A session's agent is the agent version it was created with, whose tools
// and MCP servers an update may replace (Managed Agents: "only tools and
// mcp_servers are updatable mid-session"). The replacement is kept in the
// session's data (SessionData.Agent) and applies to every turn the session
// runs after it: the Resolver reads it when a turn's run executes
// (ResolveConversationAgent), the session's Get, history and stream show
// it. An update of agent is refused while a turn is unfinished (queued,
// running, or waiting for the client), as the API refuses it while the
// session runs, so a turn keeps the definition it started with to its end
// (every resume of it included).
//
// Every update that changes something appends a session.updated event
// (store.ManagedSessionEvent), placed in the history among the session's
// turns by its time: after every turn created at or before it, before the
// next one.

// SessionAgentConfig is what an update replaced of a session's agent
// version: its tools and MCP servers, both (the other one as it was).
type SessionAgentConfig struct {
	Tools      []Tool      `json:"tools"`
	MCPServers []MCPServer `json:"mcp_servers"`
}

// apply returns c with the session's tools and MCP servers.
func (sa *SessionAgentConfig) apply(c AgentConfig) AgentConfig {
	if sa != nil {
		c.Tools, c.MCPServers = sa.Tools, sa.MCPServers
	}
	return c
}

// sessionAgentOf returns the agent version a with the session's
// replacements (if any) in its Config, and that config.
func sessionAgentOf(ms store.ManagedSession, a store.ManagedAgent) (store.ManagedAgent, AgentConfig, error) {
	c, err := decodeAgent(a)
	if err != nil {
		return a, c, err
	}
	var d SessionData
	if err := json.Unmarshal(ms.Data, &d); err != nil {
		return a, c, fmt.Errorf("decode session %s: %w", ms.ID, err)
	}
	if d.Agent == nil {
		return a, c, nil
	}
	c = d.Agent.apply(c)
	b, err := json.Marshal(c)
	if err != nil {
		return a, c, err
	}
	a.Config = b
	return a, c, nil
}

// ResolveConversationAgent implements run.ConversationAgentResolver: agent
// id at version, with the tools and MCP servers of the session whose
// conversation it is (a conversation of no session: the version's).
func (r *Resolver) ResolveConversationAgent(ctx context.Context, tenant, id string, version int, conversationID string) (*run.ChatAgent, error) {
	ms, err := r.Store.GetManagedSessionByConversation(ctx, tenant, conversationID)
	if errors.Is(err, store.ErrNotFound) {
		return r.ResolveAgent(ctx, tenant, id, version)
	}
	if err != nil {
		return nil, err
	}
	a, err := r.Store.GetManagedAgent(ctx, tenant, id, int64(version))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q (version %d)", run.ErrAgentNotFound, id, version)
	}
	if err != nil {
		return nil, err
	}
	a, c, err := sessionAgentOf(ms, a)
	if err != nil {
		return nil, err
	}
	return r.Build(tenant, a.ID, c)
}

// sessionAgentUpdate is the agent of a session update
// (BetaManagedAgentsSessionAgentUpdateParam).
type sessionAgentUpdate struct {
	Tools      json.RawMessage `json:"tools"`
	MCPServers json.RawMessage `json:"mcp_servers"`
}

// updateSessionAgent applies an update's agent to the session's agent
// (version a, with d's earlier replacements), validated as an agent
// update is; nil: it changes nothing. a is the session's agent version.
func (s *Service) updateSessionAgent(ctx context.Context, ms store.ManagedSession, d SessionData, raw json.RawMessage) (*SessionAgentConfig, store.ManagedAgent, error) {
	var u sessionAgentUpdate
	if err := decodeStrict("agent", raw, &u); err != nil {
		return nil, store.ManagedAgent{}, err
	}
	a, err := s.Store.GetManagedAgent(ctx, ms.Tenant, ms.AgentID, ms.AgentVersion)
	if err != nil {
		return nil, a, fmt.Errorf("session %s: its agent: %w", ms.ID, err)
	}
	if a.Tenant == store.SharedTenant {
		return nil, a, invalid("agent: %s is an agent of agentd's configuration file: its tools are the configuration's and cannot be changed per session", a.ID)
	}
	cur, err := decodeAgent(a)
	if err != nil {
		return nil, a, err
	}
	cur = d.Agent.apply(cur)
	// null clears, as [] does ("send an empty array to clear").
	for _, f := range []*json.RawMessage{&u.Tools, &u.MCPServers} {
		if present(*f) && isNull(*f) {
			*f = json.RawMessage(`[]`)
		}
	}
	// The agent update's validation: the same parsing and checks (tools
	// against MCP servers and agentd's catalog), the rest of the agent
	// kept.
	next, err := applyAgentRequest(cur, AgentRequest{Tools: u.Tools, MCPServers: u.MCPServers}, false, s.Catalog)
	if err != nil {
		return nil, a, prefixInvalid("agent", err)
	}
	if err := s.checkMCPServers(next); err != nil {
		return nil, a, prefixInvalid("agent", err)
	}
	out := &SessionAgentConfig{Tools: next.Tools, MCPServers: next.MCPServers}
	same, err := sameJSON(SessionAgentConfig{Tools: cur.Tools, MCPServers: cur.MCPServers}, *out)
	if err != nil || same {
		return nil, a, err
	}
	// Not while a turn is unfinished: it would change the tools of a turn
	// that started without them.
	if _, busy, err := s.activeRun(ctx, ms); err != nil {
		return nil, a, err
	} else if busy {
		return nil, a, invalid("agent: session %s has a turn in progress (queued, running or waiting for the client); its tools and MCP servers can be updated once it is idle with no turn waiting", ms.ID)
	}
	return out, a, nil
}

func sameJSON(a, b any) (bool, error) {
	x, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	y, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return string(x) == string(y), nil
}

// sessionEventRow is what a store.ManagedSessionEvent's Data holds: the
// event as the API shows it, and what translating later turns needs of it.
type sessionEventRow struct {
	Event json.RawMessage `json:"event"`
	// Agent: the session's tools and MCP servers after the update (set
	// when it changed them).
	Agent *SessionAgentConfig `json:"agent,omitempty"`
	// BudgetChanged: the update changed the budget from BudgetBefore.
	BudgetChanged bool    `json:"budget_changed,omitempty"`
	BudgetBefore  *Budget `json:"budget_before,omitempty"`
}

// sessionUpdated is a session.updated event (BetaManagedAgentsSessionUpdatedEvent):
// only the fields the update changed.
type sessionUpdated struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	ProcessedAt string            `json:"processed_at"`
	Agent       *SessionAgent     `json:"agent,omitempty"`
	Budget      json.RawMessage   `json:"budget,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Title       json.RawMessage   `json:"title,omitempty"`
}

// sessionUpdatedEvent returns the session.updated row of an update from
// before to after at at (ok false: nothing changed).
func sessionUpdatedEvent(ms store.ManagedSession, a store.ManagedAgent, before, after SessionData, at time.Time) (store.ManagedSessionEvent, bool, error) {
	id := newID("sevt")
	ev := sessionUpdated{ID: id, Type: "session.updated", ProcessedAt: mustTimestamp(at)}
	row := sessionEventRow{}
	changed := false
	if before.Title != after.Title {
		changed = true
		ev.Title = json.RawMessage(`null`)
		if after.Title != "" {
			b, _ := json.Marshal(after.Title)
			ev.Title = b
		}
	}
	if same, err := sameJSON(before.Metadata, after.Metadata); err != nil {
		return store.ManagedSessionEvent{}, false, err
	} else if !same && !(len(before.Metadata) == 0 && len(after.Metadata) == 0) {
		changed = true
		ev.Metadata = after.Metadata // absent when cleared to empty, as the API says
	}
	if same, err := sameJSON(before.Budget, after.Budget); err != nil {
		return store.ManagedSessionEvent{}, false, err
	} else if !same {
		changed = true
		row.BudgetChanged, row.BudgetBefore = true, before.Budget
		b, err := json.Marshal(after.Budget) // null when removed
		if err != nil {
			return store.ManagedSessionEvent{}, false, err
		}
		ev.Budget = b
	}
	if after.Agent != nil {
		if same, err := sameJSON(before.Agent, after.Agent); err != nil {
			return store.ManagedSessionEvent{}, false, err
		} else if !same {
			changed = true
			a, c, err := sessionAgentOf(store.ManagedSession{ID: ms.ID, Data: mustJSON(after)}, a)
			if err != nil {
				return store.ManagedSessionEvent{}, false, err
			}
			sa := renderSessionAgent(a, c) // the full snapshot, not a diff
			ev.Agent, row.Agent = &sa, after.Agent
		}
	}
	if !changed {
		return store.ManagedSessionEvent{}, false, nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return store.ManagedSessionEvent{}, false, err
	}
	row.Event = b
	data, err := json.Marshal(row)
	if err != nil {
		return store.ManagedSessionEvent{}, false, err
	}
	return store.ManagedSessionEvent{SessionID: ms.ID, ID: id, Type: "session.updated", Data: data, CreatedAt: at}, true, nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sessionEvents are a session's events that no run produces, as the
// history places them (see the top of this file).
type sessionEvents struct {
	evs    []store.ManagedSessionEvent
	next   int    // the first not yet passed
	tenant string // the session's (its MCP servers' tools are the tenant's)
}

// decode returns e's event and its row.
func decodeSessionEvent(e store.ManagedSessionEvent) (Out, sessionEventRow, error) {
	var row sessionEventRow
	if err := json.Unmarshal(e.Data, &row); err != nil {
		return Out{}, row, fmt.Errorf("decode session event %s: %w", e.ID, err)
	}
	return Out{ID: e.ID, Type: e.Type, Data: row.Event}, row, nil
}

// initialBudget is the budget the session had before its first update
// that changed it (its budget now when none did).
func initialBudget(d SessionData, evs []store.ManagedSessionEvent) (*Budget, error) {
	for _, e := range evs {
		_, row, err := decodeSessionEvent(e)
		if err != nil {
			return nil, err
		}
		if row.BudgetChanged {
			return row.BudgetBefore, nil
		}
	}
	return d.Budget, nil
}

// passTo applies to tr, and returns, the events placed before a turn
// created at before (zero: all of them).
func (se *sessionEvents) passTo(tr *Translator, s *Service, base AgentConfig, before time.Time) ([]Out, error) {
	var outs []Out
	for se.next < len(se.evs) && (before.IsZero() || se.evs[se.next].CreatedAt.Before(before)) {
		o, row, err := decodeSessionEvent(se.evs[se.next])
		if err != nil {
			return nil, err
		}
		se.next++
		if row.Agent != nil {
			tr.Tools = s.toolsOf(se.tenant, row.Agent.apply(base))
		}
		if row.BudgetChanged {
			var d struct {
				Budget *Budget `json:"budget"`
			}
			if err := json.Unmarshal(row.Event, &d); err != nil {
				return nil, fmt.Errorf("decode session event %s: %w", o.ID, err)
			}
			tr.Budget = d.Budget
		}
		outs = append(outs, o)
	}
	return outs, nil
}

// index returns the position of event id among evs (-1: none).
func (se *sessionEvents) index(id string) int {
	for i, e := range se.evs {
		if e.ID == id {
			return i
		}
	}
	return -1
}

// prefixInvalid names field in a 400's message (an invalid request
// error), leaving other errors as they are.
func prefixInvalid(field string, err error) error {
	var e *InvalidError
	if errors.As(err, &e) {
		return invalid("%s: %s", field, e.Message)
	}
	return err
}
