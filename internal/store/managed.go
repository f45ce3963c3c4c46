package store

import (
	"context"
	"encoding/json"
	"time"
)

// SharedTenant owns the managed agents of agentd's configuration file:
// every tenant sees them (Get and List include them), none changes them
// (Update and Archive match the caller's tenant exactly).
const SharedTenant = ""

// ManagedAgent is one version of a Managed Agents agent. Config is the
// version's configuration (package managed's JSON), opaque to the store.
type ManagedAgent struct {
	ID     string
	Tenant string
	// Version is this row's version: 1, 2, 3, ...
	Version int64
	// Latest is the agent's current version (Version when this is it).
	Latest int64
	Config json.RawMessage
	// CreatedAt is when the agent (version 1) was created; UpdatedAt when
	// this version was.
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ArchivedAt time.Time // zero while not archived
}

// ManagedEnvironment is a Managed Agents environment; Data (package
// managed's JSON: name, description, config, metadata) is opaque to the
// store.
type ManagedEnvironment struct {
	ID         string
	Tenant     string
	Data       json.RawMessage
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ArchivedAt time.Time
}

// ManagedSession is a Managed Agents session: one conversation with one
// version of one agent. Data (title, metadata, budget) is opaque to the
// store.
type ManagedSession struct {
	ID             string
	Tenant         string
	AgentID        string
	AgentVersion   int64
	EnvironmentID  string
	ConversationID string
	Status         string
	Data           json.RawMessage
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ArchivedAt     time.Time
}

// ManagedSessionEvent is an event of a session that no run produces
// (session.updated): Data is the event's JSON (package managed's), opaque
// to the store. Seq is 1, 2, 3, ... per session; CreatedAt places it among
// the session's turns.
type ManagedSessionEvent struct {
	SessionID string
	ID        string
	Seq       int64
	Type      string
	Data      json.RawMessage
	CreatedAt time.Time
}

// ManagedPage pages a list: Limit rows (<= 0: 20; backends cap it at
// 1000) after the cursor (the CreatedAt and ID of the last row of the
// previous page; zero: from the start), newest first unless Ascending.
// Archived rows are left out unless IncludeArchived.
type ManagedPage struct {
	Tenant          string
	Limit           int
	AfterCreatedAt  time.Time
	AfterID         string
	Ascending       bool
	IncludeArchived bool
}

// ListManagedSessionsParams filter ListManagedSessions; zero fields do not
// filter.
type ListManagedSessionsParams struct {
	ManagedPage
	AgentID      string
	AgentVersion int64 // only with AgentID
	Statuses     []string
	// CreatedAfter/Before bound created_at; the Inclusive flags say
	// whether the bound itself matches.
	CreatedAfter, CreatedBefore                   time.Time
	CreatedAfterInclusive, CreatedBeforeInclusive bool
}

// UpdateManagedAgentParams add a version to an agent.
type UpdateManagedAgentParams struct {
	Tenant string
	ID     string
	// ExpectedVersion must be the agent's current version, else
	// ErrConflict and nothing is written.
	ExpectedVersion int64
	Config          json.RawMessage
	At              time.Time // zero: now
}

// Managed is the store of the Managed Agents face (internal/managed). Every
// method of a tenant's row answers ErrNotFound for another tenant's.
type Managed interface {
	// CreateManagedAgent inserts an agent at version 1 (a.Version and
	// a.Latest are ignored); zero CreatedAt is now. ErrConflict if the id
	// exists.
	CreateManagedAgent(ctx context.Context, a ManagedAgent) (ManagedAgent, error)
	// GetManagedAgent returns version (0: the latest) of the tenant's or
	// SharedTenant's agent. ErrNotFound if either does not exist.
	GetManagedAgent(ctx context.Context, tenant, id string, version int64) (ManagedAgent, error)
	// UpdateManagedAgent adds version ExpectedVersion+1 with p.Config and
	// makes it the latest. ErrConflict if the latest is not
	// ExpectedVersion; ErrNotFound if the tenant (exactly) has no such
	// agent.
	UpdateManagedAgent(ctx context.Context, p UpdateManagedAgentParams) (ManagedAgent, error)
	// ListManagedAgents returns a page of the latest versions of the
	// tenant's and SharedTenant's agents.
	ListManagedAgents(ctx context.Context, p ManagedPage) ([]ManagedAgent, error)
	// ListManagedAgentVersions returns up to limit versions of an agent
	// (of the tenant or SharedTenant), newest first, those below
	// beforeVersion when it is > 0. ErrNotFound if there is no such
	// agent.
	ListManagedAgentVersions(ctx context.Context, tenant, id string, limit int, beforeVersion int64) ([]ManagedAgent, error)
	// ArchiveManagedAgent sets the agent's ArchivedAt (kept if already
	// set) and returns its latest version. ErrNotFound as Update.
	ArchiveManagedAgent(ctx context.Context, tenant, id string, at time.Time) (ManagedAgent, error)

	// CreateManagedEnvironment inserts e; zero times are now. ErrConflict
	// if the id exists.
	CreateManagedEnvironment(ctx context.Context, e ManagedEnvironment) (ManagedEnvironment, error)
	GetManagedEnvironment(ctx context.Context, tenant, id string) (ManagedEnvironment, error)
	// UpdateManagedEnvironment replaces Data and sets UpdatedAt (zero:
	// now).
	UpdateManagedEnvironment(ctx context.Context, e ManagedEnvironment) (ManagedEnvironment, error)
	ListManagedEnvironments(ctx context.Context, p ManagedPage) ([]ManagedEnvironment, error)
	// ArchiveManagedEnvironment sets ArchivedAt (kept if already set).
	ArchiveManagedEnvironment(ctx context.Context, tenant, id string, at time.Time) (ManagedEnvironment, error)
	DeleteManagedEnvironment(ctx context.Context, tenant, id string) error

	// CreateManagedSession inserts s and its conversation (s.ConversationID,
	// for agent s.AgentID) in one transaction; zero times are now.
	// ErrConflict if either id exists.
	CreateManagedSession(ctx context.Context, s ManagedSession) (ManagedSession, error)
	GetManagedSession(ctx context.Context, tenant, id string) (ManagedSession, error)
	// GetManagedSessionByConversation returns the tenant's session whose
	// conversation is conversationID; ErrNotFound if none.
	GetManagedSessionByConversation(ctx context.Context, tenant, conversationID string) (ManagedSession, error)
	// UpdateManagedSession replaces Status and Data and sets UpdatedAt
	// (zero: now).
	UpdateManagedSession(ctx context.Context, s ManagedSession) (ManagedSession, error)
	// UpdateManagedSessionEvent is UpdateManagedSession that also appends
	// ev (its Seq the session's next, its CreatedAt the session's new
	// UpdatedAt) in the same transaction.
	UpdateManagedSessionEvent(ctx context.Context, s ManagedSession, ev ManagedSessionEvent) (ManagedSession, ManagedSessionEvent, error)
	// ListManagedSessionEvents returns the events of the tenant's session,
	// by Seq; none (or no such session) is no error.
	ListManagedSessionEvents(ctx context.Context, tenant, sessionID string) ([]ManagedSessionEvent, error)
	ListManagedSessions(ctx context.Context, p ListManagedSessionsParams) ([]ManagedSession, error)
	// ArchiveManagedSession sets ArchivedAt (kept if already set) and
	// Status to status.
	ArchiveManagedSession(ctx context.Context, tenant, id, status string, at time.Time) (ManagedSession, error)
	// DeleteManagedSession deletes the session, its events and its
	// conversation (with the conversation's messages) in one transaction.
	DeleteManagedSession(ctx context.Context, tenant, id string) error
	// ListConversationRuns returns the tenant's runs on a conversation (a
	// session's turns), oldest first; none is no error.
	ListConversationRuns(ctx context.Context, tenant, conversationID string) ([]Run, error)
	// SumConversationUsage sums the usage rows (the ledger of model
	// calls, store.Usage) of the tenant's runs on a conversation (a
	// session's turns); zero totals when there are none.
	SumConversationUsage(ctx context.Context, tenant, conversationID string) (UsageTotals, error)
}
