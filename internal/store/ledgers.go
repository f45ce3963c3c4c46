package store

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/agentd/agentd/internal/money"
)

// The ledgers beside runs and conversations: the audit log, retention,
// client API keys, usage and budgets (feedback is in feedback.go).

// Audit phases.
const (
	// AuditCall is written before a consequential tool call runs.
	AuditCall = "call"
	// AuditResult is written after it returned (or failed).
	AuditResult = "result"
	// AuditApproval records a call's approval: requested when its run
	// pauses for it (Outcome "requested"), and decided (Outcome approve,
	// deny or timeout; Error holds the reason; Actor who decided).
	AuditApproval = "approval"
)

// AuditEntry is one row of the append-only audit log of consequential tool
// calls: every such call gets an AuditCall row before it runs and an
// AuditResult row after.
type AuditEntry struct {
	// ID is assigned by the store; it increases with every row written.
	ID int64
	// Time is when the row was written; zero: now.
	Time      time.Time
	Tenant    string
	Agent     string
	RunID     string
	Step      int
	ToolUseID string
	Tool      string
	// Phase is AuditCall, AuditResult or AuditApproval.
	Phase string
	// IdempotencyKey is what the tool received ("run:step:tool_use").
	IdempotencyKey string
	// Input is the call's input with secrets and sensitive fields redacted
	// (JSON; nil: none).
	Input json.RawMessage
	// Outcome is "started" on AuditCall rows; on AuditResult rows "ok" or
	// the error kind (timeout, tool_error, http_status, ...).
	Outcome string
	// Error is the error message of a failed call (secrets scrubbed).
	Error string
	// Duration of the call, on AuditResult rows; the time to decision on
	// decided AuditApproval rows.
	Duration time.Duration
	// Actor is who caused the row, where it is not the run: the API key
	// id that decided an approval ("" with authentication off, "agentd"
	// for a timeout).
	Actor string
}

// Audit is the append-only audit log. Rows are never updated, and never
// deleted while younger than MinAuditRetention (the backends refuse UPDATE,
// and DELETE of such rows, on the table); only Retention.DeleteAudit
// deletes older ones.
type Audit interface {
	// AppendAudit writes e. It sets a zero Time to now.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the tenant's rows of a run in the order they were
	// written (ID order); none (and no error) for an unknown run. At most
	// MaxListAudit rows.
	ListAudit(ctx context.Context, tenant, runID string) ([]AuditEntry, error)
}

// MaxListAudit caps ListAudit.
const MaxListAudit = 10000

// RecentAuditParams page the audit log newest first (the operator
// console; backends implement it as ListRecentAudit, outside the Audit
// interface).
type RecentAuditParams struct {
	Tenant string
	// AllTenants lists every tenant's rows (Tenant is ignored).
	AllTenants bool
	// Before, when > 0, returns only rows whose ID is below it (the ID of
	// the last row of the previous page).
	Before int64
	// Limit caps the page; <= 0 means 50, at most MaxListAudit.
	Limit int
}

// MinAuditRetention is how long an audit row is kept at least: the backends
// refuse to delete a younger one.
const MinAuditRetention = 30 * 24 * time.Hour

// Retention deletes old rows in small batches, for the retention sweeper.
// Each call deletes at most limit (> 0) rows in one short statement or
// transaction, so that no lock is held for long, and returns how many it
// deleted; the caller calls again until fewer than limit come back. Only
// finished runs (succeeded, failed, canceled: FinishedAt set) and their
// rows are ever deleted; a queued or running run keeps its events and
// checkpoints whatever their age.
type Retention interface {
	// DeleteRunEvents deletes events of runs that finished before
	// finishedBefore.
	DeleteRunEvents(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	// DeleteCheckpoints deletes checkpoints of runs that finished before
	// finishedBefore.
	DeleteCheckpoints(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	// DeleteRuns deletes runs that finished before finishedBefore and have
	// no events and no checkpoints left (delete those first), so that a
	// batch never cascades into an unbounded number of rows.
	DeleteRuns(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	// RollUpUsage deletes usage rows created before createdBefore and adds
	// them, in the same transaction, to the daily totals (one per UTC day,
	// tenant, key, agent and model) that SumUsage adds to the rows left.
	RollUpUsage(ctx context.Context, createdBefore time.Time, limit int) (int, error)
	// DeleteAudit deletes audit rows created before createdBefore; an
	// error if createdBefore is less than MinAuditRetention ago.
	DeleteAudit(ctx context.Context, createdBefore time.Time, limit int) (int, error)
	// DeleteFeedback deletes feedback entries whose UpdatedAt is before
	// updatedBefore.
	DeleteFeedback(ctx context.Context, updatedBefore time.Time, limit int) (int, error)
	// DeleteSDKSessions deletes the entries of SDK sessions (store.SDKSessions;
	// a tenant's session id, all its subpaths) that had no entry appended
	// since lastAppendBefore: a session goes whole, never its oldest part.
	DeleteSDKSessions(ctx context.Context, lastAppendBefore time.Time, limit int) (int, error)
	// DeleteAgentDefinitions deletes stored agent definitions
	// (AgentDefinitions) that no run references any more (no row of runs,
	// finished or not, has their digest) and that were last stored before
	// storedBefore. The age guard keeps a definition stored for a run that
	// is being submitted: its row is written before the run's.
	DeleteAgentDefinitions(ctx context.Context, storedBefore time.Time, limit int) (int, error)
}

// APIKey is a client API key. The key itself is never stored: Hash is the
// hex SHA-256 of the whole key, Prefix a short, non-secret part of it shown
// in listings and logs.
type APIKey struct {
	// ID is "key_" and random hex, assigned by the caller.
	ID string
	// Prefix is the key's display prefix ("agd_" and a few characters);
	// unique.
	Prefix string
	// Hash is the lower-case hex SHA-256 of the key; unique.
	Hash   string
	Tenant string
	// Scopes the key grants (chat, runs, admin); never empty.
	Scopes []string
	// Name is an optional label.
	Name string
	// CreatedAt: zero is set to now by the store.
	CreatedAt time.Time
	// RevokedAt is when the key was revoked; zero while it is active.
	RevokedAt time.Time
}

// APIKeys stores client API keys. Every backend implements it.
type APIKeys interface {
	// CreateAPIKey inserts k. ErrConflict if its id, prefix or hash
	// exists.
	CreateAPIKey(ctx context.Context, k APIKey) error
	// GetAPIKeyByHash returns the key with that hash, revoked or not
	// (the caller checks RevokedAt), or ErrNotFound.
	GetAPIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	// ListAPIKeys returns the tenant's keys, or every key when tenant is
	// empty, oldest first (created_at, then id); revoked keys included.
	ListAPIKeys(ctx context.Context, tenant string) ([]APIKey, error)
	// RevokeAPIKey revokes the key whose id or prefix is idOrPrefix at
	// time at and returns it. A key already revoked keeps its first
	// RevokedAt. ErrNotFound if no key matches.
	RevokeAPIKey(ctx context.Context, idOrPrefix string, at time.Time) (APIKey, error)
}

// Usage groupings of SumUsage.
const (
	UsageByAgent = "agent"
	UsageByModel = "model"
	UsageByKey   = "key" // the API key id; "" until API keys exist
	UsageByDay   = "day" // the UTC day, "2006-01-02"
)

// UsageGroupings lists the groupings SumUsage accepts.
func UsageGroupings() []string { return []string{UsageByAgent, UsageByModel, UsageByKey, UsageByDay} }

// UsageRecord is one model call's tokens and cost: a row of the usage
// ledger.
type UsageRecord struct {
	// ID is assigned by the store; it increases with every row written.
	ID int64
	// Time is when the call finished; zero: now.
	Time   time.Time
	Tenant string
	// Key is the id of the API key the call was made for; "" for none.
	Key   string
	Agent string
	// Model is the model that answered (a fallback model may have).
	Model string
	RunID string
	// Step is the run's model call this row is for (1, 2, ...).
	Step                     int
	InputTokens              int64
	OutputTokens             int64
	CacheCreationInputTokens int64
	CacheReadInputTokens     int64
	// CostUSD is the call's price when it was made (never re-priced).
	CostUSD money.Nanos
	// Cached: agentd's response cache answered (no tokens, no cost).
	Cached bool
	// UID identifies the row for idempotent writes: a row whose UID is
	// already stored is skipped, so writing a batch again (a retry after
	// an error although the batch committed) writes none of its rows
	// twice. internal/usagelog assigns one to every row it buffers; ""
	// stores no UID (such rows are never skipped).
	UID string
}

// UsageQuery selects and groups usage rows for SumUsage.
type UsageQuery struct {
	Tenant string
	// GroupBy is one of UsageGroupings.
	GroupBy string
	// From (inclusive) and To (exclusive) bound the rows' Time.
	From, To time.Time
}

// UsageTotals sum usage rows.
type UsageTotals struct {
	Requests                 int64
	InputTokens              int64
	OutputTokens             int64
	CacheCreationInputTokens int64
	CacheReadInputTokens     int64
	CostUSD                  money.Nanos
}

// Add returns t + o.
func (t UsageTotals) Add(o UsageTotals) UsageTotals {
	return UsageTotals{
		Requests:                 t.Requests + o.Requests,
		InputTokens:              t.InputTokens + o.InputTokens,
		OutputTokens:             t.OutputTokens + o.OutputTokens,
		CacheCreationInputTokens: t.CacheCreationInputTokens + o.CacheCreationInputTokens,
		CacheReadInputTokens:     t.CacheReadInputTokens + o.CacheReadInputTokens,
		CostUSD:                  t.CostUSD + o.CostUSD,
	}
}

// UsageGroup is one group of SumUsage: the value of the grouping column
// (agent name, model, key id or UTC day) and its totals.
type UsageGroup struct {
	Group string
	UsageTotals
}

// Usage is the usage ledger: one row per model call, appended, summed.
type Usage interface {
	// AppendUsage writes r. It sets a zero Time to now. If r.UID is
	// already stored it writes nothing (and succeeds).
	AppendUsage(ctx context.Context, r UsageRecord) error
	// AppendUsageBatch writes rs in one transaction, all or nothing, in
	// order: their ids increase in the order of rs. It sets each zero
	// Time to now. An empty rs writes nothing. Rows whose UID is already
	// stored (or earlier in rs) are skipped, so writing the same batch
	// twice stores each row once.
	AppendUsageBatch(ctx context.Context, rs []UsageRecord) error
	// SumUsage sums the tenant's rows with From <= Time < To by
	// q.GroupBy, one UsageGroup per distinct value, ordered by Group; an
	// empty (non-nil) slice when there are none. An unknown GroupBy is an
	// error.
	SumUsage(ctx context.Context, q UsageQuery) ([]UsageGroup, error)
}

// BudgetCounterKey names one budget counter: a scope ("tenant", "key",
// "agent" or "run"), the subject within it (a tenant name, key id, agent
// name or run id) and a period ("d:2026-12-01", "m:2026-12", "run"). The
// store does not interpret them.
type BudgetCounterKey struct {
	Scope   string
	Subject string
	Period  string
}

// BudgetLimit is a counter with its limit and when its row may be deleted
// (after its period ended).
type BudgetLimit struct {
	BudgetCounterKey
	LimitUSD money.Nanos
	// ExpiresAt is when DeleteExpiredBudgets may delete the counter; a
	// later value extends it.
	ExpiresAt time.Time
}

// BudgetCounter is the state of one counter.
type BudgetCounter struct {
	BudgetCounterKey
	LimitUSD money.Nanos
	// SpentUSD is the settled spend of the period.
	SpentUSD money.Nanos
	// ReservedUSD sums the unexpired reservations held against it.
	ReservedUSD money.Nanos
	// AlertedFraction is the highest alert fraction already raised for the
	// period (MarkBudgetAlert); 0: none.
	AlertedFraction float64
}

// ReserveBudgetParams are the inputs of ReserveBudget.
type ReserveBudgetParams struct {
	// ReservationID identifies the reservation (unique, from the caller).
	ReservationID string
	// Limits are every counter the reservation must fit in.
	Limits    []BudgetLimit
	AmountUSD money.Nanos
	// Now decides which reservations have expired.
	Now time.Time
	// ExpiresAt is when the reservation stops counting if never settled
	// (its process died).
	ExpiresAt time.Time
}

// SettleBudgetParams are the inputs of SettleBudget.
type SettleBudgetParams struct {
	ReservationID string
	// Limits are the counters of the reservation (as reserved).
	Limits    []BudgetLimit
	ActualUSD money.Nanos
	Now       time.Time
}

// Budgets holds spend counters with reservations, shared by every instance
// on the store: the budget of a tenant, key, agent or run holds across the
// cluster. Every backend implements it (storetest checks it).
type Budgets interface {
	// ReserveBudget checks, for every counter of p.Limits at once, that
	// spent + unexpired reservations + p.AmountUSD <= its limit, and if
	// all do records the reservation against each; ok reports which
	// happened. It is atomic across instances: concurrent reservations
	// never together overrun a limit. Counters are created at 0 on first
	// use, also by a reservation that does not fit (nothing is reserved
	// then). It returns the counters' state before the reservation (on a
	// refusal, possibly only up to the first counter without room).
	ReserveBudget(ctx context.Context, p ReserveBudgetParams) (counters []BudgetCounter, ok bool, err error)
	// SettleBudget drops the reservation (if it has not expired and been
	// swept) and adds p.ActualUSD to the spend of every counter, in one
	// transaction. It returns the counters' state after. Settling twice
	// adds twice: call it once per reservation.
	SettleBudget(ctx context.Context, p SettleBudgetParams) ([]BudgetCounter, error)
	// MarkBudgetAlert raises the counter's AlertedFraction to fraction if
	// it is below and returns the previous value (fraction or more: the
	// alert was raised already, by this or another instance). A counter
	// that does not exist returns fraction (nothing to raise).
	MarkBudgetAlert(ctx context.Context, k BudgetCounterKey, fraction float64) (prev float64, err error)
	// DeleteExpiredBudgets deletes reservations and counters that expired
	// before now and returns how many rows it deleted.
	DeleteExpiredBudgets(ctx context.Context, now time.Time) (int, error)
}

// SortBudgetLimits returns ls ordered by key, without duplicate keys (the
// last one wins). Backends lock counters in this order, so that concurrent
// reservations over overlapping counters cannot deadlock.
func SortBudgetLimits(ls []BudgetLimit) []BudgetLimit {
	out := slices.Clone(ls)
	slices.SortStableFunc(out, func(a, b BudgetLimit) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Period, b.Period))
	})
	// Keep the last of equal keys.
	res := out[:0]
	for i, l := range out {
		if i+1 < len(out) && out[i+1].BudgetCounterKey == l.BudgetCounterKey {
			continue
		}
		res = append(res, l)
	}
	return res
}
