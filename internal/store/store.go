// Package store is agentd's system of record: conversations and their
// messages, runs, run events and checkpoints.
//
// Backends live in sub-packages (sqlite/, postgres/) and every backend
// must pass the conformance suite in storetest/. Business code depends on the
// Store interface (or on a smaller interface it declares itself), never on a
// backend, and never branches on which backend is in use.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/agentd/agentd/internal/money"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: the row does not exist (or belongs to another tenant:
	// callers must not be able to tell the two apart).
	ErrNotFound = errors.New("not found")
	// ErrConflict: an optimistic concurrency check failed (the conversation
	// changed since it was read) or a unique key is already taken.
	ErrConflict = errors.New("conflict")
	// ErrRunWaiting: ClaimRun found the run queued but not claimable yet:
	// an earlier turn of its conversation has not finished (see Run.Turn),
	// or the client that submitted it holds it (a synchronous chat waiting
	// for its turn). The caller tries again later.
	ErrRunWaiting = errors.New("run waits for its turn")
)

// NextTurn, as Run.Turn of a run given to CreateRunTx, has the store hand
// the run its conversation's next turn.
const NextTurn int64 = -1

// RunStatus is the state of a run.
type RunStatus string

// Run states. queued → running → succeeded | failed | canceled; a running
// run may pause in RunRequiresAction (see Approvals) and is queued again
// once decided.
const (
	RunQueued    RunStatus = "queued"
	RunRunning   RunStatus = "running"
	RunSucceeded RunStatus = "succeeded"
	RunFailed    RunStatus = "failed"
	RunCanceled  RunStatus = "canceled"
	// RunInterrupted: stopped on request (RequestInterrupt) keeping what it
	// had checkpointed, which its conversation received.
	RunInterrupted RunStatus = "interrupted"
)

// Terminal reports whether no further transition is possible.
func (s RunStatus) Terminal() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCanceled || s == RunInterrupted
}

// Conversation is a thread of messages owned by one tenant and one agent.
type Conversation struct {
	ID     string
	Tenant string
	Agent  string
	// Version increases by one with every successful AppendMessages; it is
	// the optimistic-concurrency token. Every write that changes a
	// conversation's messages must bump it in the same transaction: the
	// conversation cache (internal/convcache) serves a cached history only
	// while the stored version is the cached one.
	Version int64
	// NextSeq is the Seq the next appended message receives (filled by
	// GetConversation and ConversationHead). It only changes together with
	// Version, so a version determines it.
	NextSeq   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// ExpiresAt is when the sweeper may delete the conversation; zero means
	// never.
	ExpiresAt time.Time
	// Messages is filled by GetConversation, in seq order.
	Messages []Message
}

// Message is one message of a conversation. Content is a JSON array of
// Anthropic content blocks (text, tool_use, tool_result, ...), stored as is.
type Message struct {
	// Seq is assigned by the store: 1, 2, 3, ... per conversation, never
	// reused, also after trimming.
	Seq       int64
	Role      string // "user" or "assistant"
	Content   json.RawMessage
	Tokens    int64
	CreatedAt time.Time
}

// CreateConversationParams are the inputs of CreateConversation.
type CreateConversationParams struct {
	ID        string
	Tenant    string
	Agent     string
	ExpiresAt time.Time // zero: never expires
}

// AppendMessagesParams are the inputs of AppendMessages.
type AppendMessagesParams struct {
	ConversationID string
	Tenant         string
	// Create, when set, creates the conversation (of Agent, at version 0)
	// in the same transaction, before appending: a new conversation and
	// its first turn are stored together or not at all. ExpectedVersion is
	// then 0; ErrConflict if the conversation exists. CreatedAt is its
	// creation time (zero: now).
	Create    bool
	Agent     string
	CreatedAt time.Time
	// ExpectedVersion must equal the conversation's current version, else
	// ErrConflict and nothing is written.
	ExpectedVersion int64
	Messages        []Message
	// TrimBeforeSeq, when > 0, deletes every message with Seq < TrimBeforeSeq
	// in the same transaction (the caller decides where a conversation may be
	// cut so that tool_use/tool_result pairs stay together).
	TrimBeforeSeq int64
	// ExpiresAt, when not zero, replaces the conversation's expiry.
	ExpiresAt time.Time
	// FinishRun, when set, updates that run row in the same transaction
	// (as UpdateRun does): a run's turn and its final status are written
	// together, so a run resumed after a crash never appends its turn
	// twice (a finished run is not claimable). ErrNotFound if the run does
	// not exist; nothing is written then.
	FinishRun *UpdateRunParams
	// Checkpoint and Events, when set, are written as SaveStep writes them,
	// in the same transaction: a run's last events (done) are stored with
	// its turn and its final status, or none of them is.
	Checkpoint *Checkpoint
	Events     []Event
}

// Run is one invocation of an agent.
type Run struct {
	ID             string
	Tenant         string
	Agent          string
	ConversationID string
	Status         RunStatus
	Input          json.RawMessage // the request as submitted
	Output         json.RawMessage // the final answer (content blocks), once succeeded
	Error          string          // why it failed, once failed
	Attempt        int
	Steps          int
	InputTokens    int64
	OutputTokens   int64
	CostUSD        money.Nanos
	IdempotencyKey string // empty: none
	// InterruptRequested: RequestInterrupt asked the run to stop keeping
	// what it checkpointed (read-only; set by the store).
	InterruptRequested bool
	// Turn is the run's place in its conversation's order (concurrency
	// policies enqueue, interrupt, rollback): 1, 2, 3, ... in the order
	// the store accepted the runs; such a run is claimable only when every
	// run of its conversation with a lower turn, or with none (0), has
	// finished (ClaimRun). 0: outside the order (policy reject). On
	// insert, NextTurn takes the next one (CreateRunTx only).
	Turn int64
	// AgentDigest names the definition of the configured agent the run
	// was submitted under (AgentDefinitions; the SHA-256 of its JSON, hex);
	// "" for agents defined through the API (they pin a version in the
	// run's input instead) and runs from before it was recorded.
	AgentDigest string
	// HeldBy and HeldUntil, on insert of a queued or running run only,
	// give its lease to the client that submitted it, in the insert itself
	// (no extra write). A queued run is claimed by that client itself when
	// its turn comes (a synchronous chat that takes a turn): no worker
	// claims it while the lease lasts (ClaimRun), and once it lapses (that
	// client died) any worker may. A running one is an inline synchronous
	// chat that executes at once and renews the lease (ExtendLease) while
	// it runs: once it lapses (its process died) ReclaimExpiredRuns hands
	// it to a worker, which takes it over from its checkpoint. Not read
	// back.
	HeldBy     string
	HeldUntil  time.Time
	CreatedAt  time.Time
	StartedAt  time.Time // zero until running
	FinishedAt time.Time // zero until terminal
}

// UpdateRunParams changes a run's mutable fields. Every field is written.
type UpdateRunParams struct {
	ID           string
	Status       RunStatus
	Output       json.RawMessage
	Error        string
	Attempt      int
	Steps        int
	InputTokens  int64
	OutputTokens int64
	CostUSD      money.Nanos
	StartedAt    time.Time
	FinishedAt   time.Time
}

// Event is one numbered event of a run. Seq starts at 1 and has no gaps.
type Event struct {
	RunID     string
	Seq       int64
	Type      string
	Data      json.RawMessage
	CreatedAt time.Time
}

// Checkpoint is the resumable state of a run after a step.
type Checkpoint struct {
	RunID     string
	Step      int
	State     json.RawMessage
	CreatedAt time.Time
}

// ListRunsParams filter and page ListRuns. Runs come newest first (ids are
// UUIDv7, so id order is creation order).
type ListRunsParams struct {
	Tenant string
	// AllTenants lists the runs of every tenant (Tenant is ignored): the
	// operator console with an admin key. Without a Tenant filter the
	// newest-first walk uses the primary key, not the (tenant, id) index.
	AllTenants bool
	// Status and Agent filter when not empty.
	Status RunStatus
	Agent  string
	// Limit caps the page; <= 0 means 50. Backends cap it at 1000.
	Limit int
	// Cursor, when not empty, returns only runs whose id sorts before it
	// (the id of the last run of the previous page).
	Cursor string
}

// TxFunc runs inside a backend transaction. tx is the backend's native
// transaction, TTx (*sql.Tx for SQLite, pgx.Tx for PostgreSQL), so that a
// queue sharing the database can insert its job atomically with the
// store's rows.
type TxFunc[TTx any] func(ctx context.Context, tx TTx) error

// ReclaimFunc is called for each run ReclaimExpiredRuns reclaims, inside
// its transaction (see TxFunc).
type ReclaimFunc[TTx any] func(ctx context.Context, tx TTx, r Run) error

// TxRuns is the part of the seam that shares a backend's transactions with
// a job queue on the same database (internal/queue): TTx is the backend's
// native transaction type, as River's Driver[TTx]. The SQLite backend
// implements TxRuns[*sql.Tx], the PostgreSQL one TxRuns[pgx.Tx], so a
// queue of the wrong database does not compile.
type TxRuns[TTx any] interface {
	// CreateRunTx inserts r and calls fn in the same transaction; if fn
	// fails nothing is written and its error is returned (wrapped).
	// ErrConflict if the id, or the tenant's idempotency key, exists; fn
	// is only called once r is inserted, so a conflict never reaches it.
	// A nil fn makes it CreateRun.
	CreateRunTx(ctx context.Context, r Run, fn TxFunc[TTx]) error
	// ReclaimExpiredRuns finds running runs whose lease expired before
	// now, clears their lease and calls fn for each inside the same
	// transaction (to enqueue it again); it returns how many it reclaimed.
	// It also hands fn queued runs whose queue job was fetched by a worker
	// more than OrphanedJobAfter ago without the run being claimed (the
	// worker died between fetching the job and claiming the run), at most
	// once per OrphanedJobAfter each.
	ReclaimExpiredRuns(ctx context.Context, now time.Time, fn ReclaimFunc[TTx]) (int, error)
}

// Store is the seam every backend implements. All methods are safe for
// concurrent use.
type Store interface {
	// Migrate brings the schema to the newest version. It is idempotent.
	Migrate(ctx context.Context) error
	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
	Close() error

	// CreateConversation inserts a new conversation at version 0.
	// ErrConflict if the id exists.
	CreateConversation(ctx context.Context, p CreateConversationParams) (Conversation, error)
	// GetConversation returns the conversation with its messages.
	GetConversation(ctx context.Context, tenant, id string) (Conversation, error)
	// AppendMessages appends messages atomically (see AppendMessagesParams)
	// and returns the conversation's new version.
	AppendMessages(ctx context.Context, p AppendMessagesParams) (int64, error)
	// DeleteConversation deletes a conversation and its messages.
	DeleteConversation(ctx context.Context, tenant, id string) error
	// DeleteExpiredConversations deletes conversations whose ExpiresAt is
	// before now (and not zero); it returns how many it deleted.
	DeleteExpiredConversations(ctx context.Context, now time.Time) (int, error)

	// CreateRun inserts a run. ErrConflict if the id exists.
	CreateRun(ctx context.Context, r Run) error
	// (CreateRunTx, which shares the transaction with a queue, is in
	// TxRuns.)
	// GetRun returns a run of the tenant.
	GetRun(ctx context.Context, tenant, id string) (Run, error)
	// GetRunByIdempotencyKey returns the tenant's run created with key.
	GetRunByIdempotencyKey(ctx context.Context, tenant, key string) (Run, error)
	// ListRuns returns a page of the tenant's runs (see ListRunsParams).
	ListRuns(ctx context.Context, p ListRunsParams) ([]Run, error)
	// ExpireIdempotencyKeys clears the idempotency key of runs created
	// before the given time, so the key can be used again; it returns how
	// many it cleared.
	ExpireIdempotencyKeys(ctx context.Context, createdBefore time.Time) (int, error)
	// UpdateRun overwrites a run's mutable fields.
	UpdateRun(ctx context.Context, p UpdateRunParams) error

	// SaveStep writes a checkpoint (if cp is not nil) and appends events in
	// one transaction. Events must continue the run's sequence without gaps:
	// an event whose seq already exists gives ErrConflict and nothing is
	// written.
	SaveStep(ctx context.Context, cp *Checkpoint, events []Event) error
	// ListEvents returns up to limit events with Seq > afterSeq, in order.
	ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]Event, error)
	// LatestCheckpoint returns the checkpoint with the highest step, or
	// ErrNotFound.
	LatestCheckpoint(ctx context.Context, runID string) (Checkpoint, error)
}

// AgentDefinitions keeps the definitions of configured agents that runs
// were submitted under, by digest (Run.AgentDigest): what a worker whose
// configuration defines the agent differently runs such a run with.
type AgentDefinitions interface {
	// PutAgentDefinition stores def (JSON) under digest; storing a digest
	// again changes only the time it was last stored (a digest names one
	// content), which the retention sweep's age guard counts from
	// (Retention.DeleteAgentDefinitions).
	PutAgentDefinition(ctx context.Context, digest, agent string, def json.RawMessage) error
	// GetAgentDefinition returns the definition stored under digest, or
	// ErrNotFound.
	GetAgentDefinition(ctx context.Context, digest string) (json.RawMessage, error)
}

// ConversationHeads is the cheap read of a conversation's row: one
// primary-key lookup, no messages. The conversation cache
// (internal/convcache) uses it to check that the history it holds is
// still the stored one.
type ConversationHeads interface {
	// ConversationHead returns the conversation without its messages
	// (Messages is nil). ErrNotFound as GetConversation.
	ConversationHead(ctx context.Context, tenant, id string) (Conversation, error)
}

// OrphanedJobAfter is how long a fetched queue job may leave its run
// unclaimed before ReclaimExpiredRuns enqueues the run again. Workers claim
// within milliseconds of a fetch; only a worker that died in between leaves
// the run so.
const OrphanedJobAfter = 10 * time.Second

// ClaimRunParams are the inputs of ClaimRun.
type ClaimRunParams struct {
	ID    string
	Owner string // the worker's id
	// LeaseUntil is when the claim expires unless extended.
	LeaseUntil time.Time
	Now        time.Time
}

// QueueStats describe queued runs.
type QueueStats struct {
	// Depth counts queued runs per agent.
	Depth map[string]int
	// OldestQueuedAt is the creation time of the oldest queued run; zero if
	// none.
	OldestQueuedAt time.Time
	// Running counts runs being executed.
	Running int
	// PendingApprovals counts tool calls of paused runs that wait for a
	// person's decision (kind approval; see Approvals).
	PendingApprovals int
}

// RunLeases is the part of the seam that lets workers own runs: a worker
// claims a run with a lease, extends it while it works, and a run whose
// lease expired (its worker died) is handed to another worker. Every backend
// implements it (storetest checks it next to Store).
type RunLeases interface {
	// ClaimRun makes Owner the run's executor: status becomes running,
	// attempt increases by one, started_at is set if zero. It succeeds
	// when the run is queued, or running with no lease, an expired lease,
	// or a lease already held by Owner. A running run whose cancellation
	// was requested is claimable too once its lease expired: its new owner
	// learns of the request at its first ExtendLease and ends it (a queued
	// one is already canceled). It returns the claimed run, or
	// ErrConflict (another live owner, or the run is terminal; the
	// returned Run then shows which) or ErrNotFound. A queued run with a
	// turn (Run.Turn) is claimable only when no other run of its
	// conversation that is queued, running or requires_action has a lower
	// turn or none; a queued run whose lease another live owner holds (a
	// synchronous chat waiting for its turn) is not claimable by others;
	// both give ErrRunWaiting.
	ClaimRun(ctx context.Context, p ClaimRunParams) (Run, error)
	// ExtendLease moves the lease of a run Owner holds to until and
	// reports whether cancellation was requested. ErrConflict if Owner no
	// longer holds the lease. The run may be running, or queued (a
	// synchronous chat holding its run while it waits for its turn).
	ExtendLease(ctx context.Context, id, owner string, until time.Time) (cancelRequested bool, err error)
	// ReleaseLease drops Owner's lease so that another worker may claim
	// the run at once (graceful shutdown). No error if not held.
	ReleaseLease(ctx context.Context, id, owner string) error
	// RequestCancel marks the tenant's run for cancellation: a queued run
	// becomes canceled at once, a running one is stopped by its worker at
	// its next lease extension. Terminal runs are returned unchanged.
	RequestCancel(ctx context.Context, tenant, id string, now time.Time) (Run, error)
	// RequestInterrupt is RequestCancel for a stop that keeps what the
	// run checkpointed: a queued run becomes interrupted at once; a
	// running one is stopped by its worker (ExtendLease reports it as a
	// cancellation; the run row says InterruptRequested) and ends
	// interrupted; a paused one (requires_action) is returned as it is,
	// for the caller to finish. Terminal runs are returned unchanged.
	RequestInterrupt(ctx context.Context, tenant, id string, now time.Time) (Run, error)
	// UnfinishedRuns returns the tenant's runs of a conversation that
	// are queued, running or requires_action, oldest turn first (runs
	// without a turn first).
	UnfinishedRuns(ctx context.Context, tenant, conversationID string) ([]Run, error)
	// (ReclaimExpiredRuns, which shares the transaction with a queue, is
	// in TxRuns.)
	// QueueStats reports queue depth and age.
	QueueStats(ctx context.Context) (QueueStats, error)
}
