package store

// Reads of the operator console (internal/console) that cross tenants or
// join rows for a list page; the SQL backends implement them in
// sqlstore/console.go.

// PendingApproval is a tool call a paused run waits for, with where it
// belongs: the run's agent and, when the run is a turn of a Managed Agents
// session, the session's id.
type PendingApproval struct {
	Approval
	Agent     string
	SessionID string // "" when the run is no session's turn
}

// PendingApprovalsParams select pending approvals: one tenant's, or every
// tenant's with AllTenants; at most Limit (<= 0: 100), oldest first.
type PendingApprovalsParams struct {
	Tenant     string
	AllTenants bool
	Limit      int
}

// ConsoleSession is a Managed Agents session as the console lists it: the
// session row and a digest of its turns (the runs on its conversation).
type ConsoleSession struct {
	ManagedSession
	// LastRunStatus is the status of its latest turn ("" before the
	// first).
	LastRunStatus RunStatus
	Turns         int
	InputTokens   int64
	OutputTokens  int64
	CostNanos     int64
}

// ConsoleSessionsParams filter the console's session list: one tenant's
// (or every tenant's with AllTenants), newest first, before the cursor
// (the CreatedAt and ID of the last row of the previous page), archived
// ones included. Status is the stored status (idle or terminated; "":
// any); AgentID filters by agent.
type ConsoleSessionsParams struct {
	Tenant     string
	AllTenants bool
	Status     string
	AgentID    string
	Page       ManagedPage // AfterCreatedAt/AfterID are the cursor; Limit
}
