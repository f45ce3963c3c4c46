package run

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentd/agentd/internal/observe"
)

// RetentionStore deletes old rows in small batches (store.Retention).
type RetentionStore interface {
	DeleteRunEvents(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	DeleteCheckpoints(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	DeleteRuns(ctx context.Context, finishedBefore time.Time, limit int) (int, error)
	RollUpUsage(ctx context.Context, createdBefore time.Time, limit int) (int, error)
	DeleteAudit(ctx context.Context, createdBefore time.Time, limit int) (int, error)
	DeleteFeedback(ctx context.Context, updatedBefore time.Time, limit int) (int, error)
	DeleteSDKSessions(ctx context.Context, lastAppendBefore time.Time, limit int) (int, error)
	DeleteAgentDefinitions(ctx context.Context, storedBefore time.Time, limit int) (int, error)
}

// Tables of the retention sweep, the values of the metric's table label.
const (
	TableRunEvents   = "run_events"
	TableCheckpoints = "checkpoints"
	TableRuns        = "runs"
	TableUsage       = "usage"
	TableAudit       = "audit"
	TableFeedback    = "feedback"
	TableSDKSessions = "sdk_session_entries"
	TableAgentDefs   = "agent_definitions"
)

// RetentionSweeper deletes rows older than their retention every
// Interval, table by table, in batches of BatchSize rows (one short
// statement each), until its context ends. Events and checkpoints of a run
// go no later than the run: their cutoff is the later of their own and
// the runs' one. Only finished runs are ever touched (the store's
// contract).
type RetentionSweeper struct {
	Store RetentionStore
	// Ages: a finished run's events, checkpoints and the run itself are
	// deleted this long after it finished; usage rows (rolled up) and
	// audit rows this long after they were written. Feedback entries
	// go with usage: Usage after their last update; hosted programs' SDK
	// sessions with runs: Runs after their last append. All > 0.
	RunEvents, Checkpoints, Runs, Usage, Audit time.Duration
	// AgentDefinitions: a stored agent definition that no run references
	// any more (its runs were deleted, by Runs) is deleted this long
	// after it was last stored; > definitionRefresh (run/definition.go),
	// which is how often an instance stores its definitions again while
	// it submits runs with them.
	AgentDefinitions time.Duration
	BatchSize        int
	Interval         time.Duration
	Log              *slog.Logger
	Metrics          *observe.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RetentionResult is how many rows one sweep removed, by table.
type RetentionResult struct {
	RunEvents, Checkpoints, Runs, Usage, Audit, Feedback, SDKSessions, AgentDefinitions int
}

// Run sweeps until ctx is done; it returns nil then.
func (s *RetentionSweeper) Run(ctx context.Context) error {
	return every(ctx, s.Interval, func(ctx context.Context) { s.SweepOnce(ctx) })
}

// SweepOnce deletes what is older than its retention now. An error on one
// table is logged and the sweep goes on with the next.
func (s *RetentionSweeper) SweepOnce(ctx context.Context) RetentionResult {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	now = now.UTC()
	runs := now.Add(-s.Runs)
	var r RetentionResult
	r.RunEvents = s.sweep(ctx, TableRunEvents, s.Store.DeleteRunEvents, later(now.Add(-s.RunEvents), runs))
	r.Checkpoints = s.sweep(ctx, TableCheckpoints, s.Store.DeleteCheckpoints, later(now.Add(-s.Checkpoints), runs))
	r.Runs = s.sweep(ctx, TableRuns, s.Store.DeleteRuns, runs)
	r.Usage = s.sweep(ctx, TableUsage, s.Store.RollUpUsage, now.Add(-s.Usage))
	r.Audit = s.sweep(ctx, TableAudit, s.Store.DeleteAudit, now.Add(-s.Audit))
	r.Feedback = s.sweep(ctx, TableFeedback, s.Store.DeleteFeedback, now.Add(-s.Usage))
	r.SDKSessions = s.sweep(ctx, TableSDKSessions, s.Store.DeleteSDKSessions, runs)
	// After the runs: a definition whose last runs went above goes now.
	r.AgentDefinitions = s.sweep(ctx, TableAgentDefs, s.Store.DeleteAgentDefinitions, now.Add(-s.AgentDefinitions))
	if r != (RetentionResult{}) {
		s.Log.InfoContext(ctx, "retention sweep", "run_events", r.RunEvents, "checkpoints", r.Checkpoints,
			"runs", r.Runs, "usage", r.Usage, "audit", r.Audit, "feedback", r.Feedback, "sdk_session_entries", r.SDKSessions,
			"agent_definitions", r.AgentDefinitions)
	}
	return r
}

// sweep calls del with batches of BatchSize until one deletes fewer, the
// context ends or del fails; it returns the rows deleted.
func (s *RetentionSweeper) sweep(ctx context.Context, table string,
	del func(context.Context, time.Time, int) (int, error), before time.Time) int {
	total := 0
	for ctx.Err() == nil {
		n, err := del(ctx, before, s.BatchSize)
		total += n
		s.Metrics.AddRetentionDeleted(table, n)
		if err != nil {
			if ctx.Err() == nil {
				s.Log.WarnContext(ctx, "retention sweep", "table", table, "err", err)
			}
			break
		}
		if n < s.BatchSize {
			break
		}
	}
	return total
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
