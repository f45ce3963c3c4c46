// Package queue wires River (github.com/riverqueue/river) as agentd's run
// queue, on SQLite (riversqlite) or PostgreSQL (riverpgxv5). A queued run is
// one River job; the job's worker hands it to a RunExecutor.
//
// River's own rescuer is only a backstop here: it cannot tell a dead worker
// from a slow one (RescueStuckJobsAfter must exceed the job timeout, and runs
// may take minutes). Fast recovery from a dead worker comes from run leases
// in the store (see store.RunLeases and run.Runs): a run whose lease
// expired is enqueued again within seconds.
package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// Defaults.
const (
	// DefaultQueue is the River queue runs go to.
	DefaultQueue = "runs"
	// DefaultWorkers is how many runs one worker instance executes at once.
	DefaultWorkers = 20
	// DefaultRescueAfter is River's backstop for jobs whose worker died
	// without the lease mechanism noticing (it should not happen).
	DefaultRescueAfter = time.Hour
)

// RunArgs is the job of one queued run.
type RunArgs struct {
	RunID  string `json:"run_id"`
	Tenant string `json:"tenant"`
	Agent  string `json:"agent"`
	// TraceParent is the W3C traceparent of the span that enqueued the
	// run (the submitting request's; empty with tracing off): the worker's
	// run span is its child, so both are one trace.
	TraceParent string `json:"traceparent,omitempty"`
}

// Kind implements river.JobArgs.
func (RunArgs) Kind() string { return "agentd_run" }

// WebhookArgs is the job of one webhook delivery.
type WebhookArgs struct {
	RunID  string `json:"run_id"`
	Tenant string `json:"tenant"`
	URL    string `json:"url"`
	// Event is what happened: WebhookRunCompleted (also when empty, as in
	// jobs queued before events existed) or WebhookRunRequiresAction.
	Event string `json:"event,omitempty"`
}

// Webhook events.
const (
	WebhookRunCompleted      = "run.completed"
	WebhookRunRequiresAction = "run.requires_action"
)

// Kind implements river.JobArgs.
func (WebhookArgs) Kind() string { return "agentd_webhook" }

// WebhookDeliverer posts a run to its webhook once; an error makes River
// retry with back-off. event is what happened (WebhookRunCompleted, ...);
// key is the delivery's idempotency key, the same for every retry: the run
// id for its completion, which happens once, and one per job for events
// that may happen several times.
type WebhookDeliverer interface {
	Deliver(ctx context.Context, tenant, runID, url, event, key string) error
}

// DefaultWebhookAttempts bounds webhook deliveries (River's back-off spreads
// them over about a day).
const DefaultWebhookAttempts = 12

// RunExecutor executes a queued run. requeue asks for the job to run again
// soon, on any worker (this worker is stopping and released the run); an
// error makes River retry the job with back-off.
type RunExecutor interface {
	ExecuteRun(ctx context.Context, tenant, runID string) (requeue bool, err error)
}

// Snoozer is an error of RunExecutor.ExecuteRun that asks for the job to
// run again after SnoozeFor, without using an attempt: the run waits for
// its turn in its conversation, or for its execution on this worker to
// return.
type Snoozer interface {
	error
	SnoozeFor() time.Duration
}

// Config configures a Queue.
type Config struct {
	// Executor, when set, makes this instance a worker: it fetches and
	// executes runs. Nil: insert-only (API instances).
	Executor RunExecutor
	// Webhooks delivers webhooks (workers only).
	Webhooks WebhookDeliverer
	// Workers is how many runs this instance executes at once. Defaults to
	// DefaultWorkers.
	Workers int
	// FetchPollInterval is how often a worker polls for new jobs when no
	// notification arrives (SQLite has none). Defaults to River's 1s;
	// lower it for lower pick-up latency.
	FetchPollInterval time.Duration
	// RescueAfter is River's stuck-job rescue backstop. Defaults to 1h.
	RescueAfter time.Duration
	Log         *slog.Logger
}

// Queue inserts and (on workers) executes runs.
type Queue interface {
	// CreateRun inserts run r and its job in one transaction of the store
	// the queue shares its database with (store.TxRuns.CreateRunTx): a
	// run is never stored without its job. Errors are CreateRunTx's
	// (store.ErrConflict for an existing id or idempotency key).
	CreateRun(ctx context.Context, r store.Run) error
	// ReclaimExpiredRuns has the store reclaim the runs whose worker died
	// (store.TxRuns.ReclaimExpiredRuns) and enqueues each again in the
	// store's transaction; it returns how many.
	ReclaimExpiredRuns(ctx context.Context, now time.Time) (int, error)
	// DecideApproval has the store record a decision on a paused run's
	// tool call (store.ApprovalsTx.DecideApprovalTx) and, when it was the
	// last one the run waited for, enqueues the run in the store's
	// transaction.
	DecideApproval(ctx context.Context, p store.DecideApprovalParams) (store.Approval, store.Run, error)
	// EnqueueWebhook queues the delivery of a run's event (WebhookRunCompleted,
	// WebhookRunRequiresAction) to url.
	EnqueueWebhook(ctx context.Context, tenant, runID, url, event string) error
	// Start begins fetching jobs (workers only; a no-op otherwise).
	Start(ctx context.Context) error
	// Stop stops fetching and waits for running jobs until ctx is done;
	// then it cancels them.
	Stop(ctx context.Context) error
}

// riverQueue is Queue over a River client and a store that share one
// database and its transaction type TTx.
type riverQueue[TTx any] struct {
	client *river.Client[TTx]
	runs   txStore[TTx]
	worker bool
}

// txStore is the store's part that shares its transactions with the queue.
type txStore[TTx any] interface {
	store.TxRuns[TTx]
	store.ApprovalsTx[TTx]
}

// SQLiteStore is the SQLite store a queue shares its database with
// (*sqlite.Store).
type SQLiteStore interface {
	// WriteDB is the store's single-connection write pool: River's SQLite
	// driver wants a single connection.
	WriteDB() *sql.DB
	store.TxRuns[*sql.Tx]
	store.ApprovalsTx[*sql.Tx]
}

// PostgresStore is the PostgreSQL store a queue shares its database with
// (*postgres.Store).
type PostgresStore interface {
	Pool() *pgxpool.Pool
	store.TxRuns[pgx.Tx]
	store.ApprovalsTx[pgx.Tx]
}

// NewSQLite returns a queue on the database of the SQLite store st.
func NewSQLite(ctx context.Context, st SQLiteStore, cfg Config) (Queue, error) {
	return newRiver(ctx, riversqlite.New(st.WriteDB()), st, cfg)
}

// NewPostgres returns a queue on the database of the PostgreSQL store st.
func NewPostgres(ctx context.Context, st PostgresStore, cfg Config) (Queue, error) {
	return newRiver(ctx, riverpgxv5.New(st.Pool()), st, cfg)
}

func newRiver[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], runs txStore[TTx], cfg Config) (Queue, error) {
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("river migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("river migrate: %w", err)
	}
	rc := &river.Config{
		Logger:               cfg.Log,
		RescueStuckJobsAfter: cfg.RescueAfter,
		// Runs carry their own timeout; River must not cancel them.
		JobTimeout:  -1,
		MaxAttempts: 25,
	}
	if rc.RescueStuckJobsAfter <= 0 {
		rc.RescueStuckJobsAfter = DefaultRescueAfter
	}
	if cfg.Executor != nil {
		workers := river.NewWorkers()
		if err := river.AddWorkerSafely(workers, &runWorker{exec: cfg.Executor}); err != nil {
			return nil, fmt.Errorf("register run worker: %w", err)
		}
		if cfg.Webhooks != nil {
			if err := river.AddWorkerSafely(workers, &webhookWorker{d: cfg.Webhooks}); err != nil {
				return nil, fmt.Errorf("register webhook worker: %w", err)
			}
		}
		n := cfg.Workers
		if n <= 0 {
			n = DefaultWorkers
		}
		rc.Workers = workers
		rc.Queues = map[string]river.QueueConfig{DefaultQueue: {MaxWorkers: n}}
		rc.FetchPollInterval = cfg.FetchPollInterval
		if rc.FetchPollInterval > 0 && rc.FetchCooldown == 0 && rc.FetchPollInterval < river.FetchCooldownDefault {
			rc.FetchCooldown = rc.FetchPollInterval
		}
	}
	client, err := river.NewClient(driver, rc)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return &riverQueue[TTx]{client: client, runs: runs, worker: cfg.Executor != nil}, nil
}

func (q *riverQueue[TTx]) CreateRun(ctx context.Context, r store.Run) error {
	return q.runs.CreateRunTx(ctx, r, func(ctx context.Context, tx TTx) error {
		return q.enqueueTx(ctx, tx, r)
	})
}

func (q *riverQueue[TTx]) ReclaimExpiredRuns(ctx context.Context, now time.Time) (int, error) {
	return q.runs.ReclaimExpiredRuns(ctx, now, q.enqueueTx)
}

func (q *riverQueue[TTx]) DecideApproval(ctx context.Context, p store.DecideApprovalParams) (store.Approval, store.Run, error) {
	return q.runs.DecideApprovalTx(ctx, p, q.enqueueTx)
}

// enqueueTx inserts the job of run r inside the store's transaction tx.
func (q *riverQueue[TTx]) enqueueTx(ctx context.Context, tx TTx, r store.Run) error {
	args := RunArgs{RunID: r.ID, Tenant: r.Tenant, Agent: r.Agent, TraceParent: observe.TraceParent(ctx)}
	if _, err := q.client.InsertTx(ctx, tx, args, &river.InsertOpts{Queue: DefaultQueue}); err != nil {
		return fmt.Errorf("enqueue run %s: %w", r.ID, err)
	}
	return nil
}

func (q *riverQueue[TTx]) EnqueueWebhook(ctx context.Context, tenant, runID, url, event string) error {
	args := WebhookArgs{RunID: runID, Tenant: tenant, URL: url, Event: event}
	if _, err := q.client.Insert(ctx, args, &river.InsertOpts{Queue: DefaultQueue, MaxAttempts: DefaultWebhookAttempts}); err != nil {
		return fmt.Errorf("enqueue webhook of run %s: %w", runID, err)
	}
	return nil
}

func (q *riverQueue[TTx]) Start(ctx context.Context) error {
	if !q.worker {
		return nil
	}
	if err := q.client.Start(ctx); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	return nil
}

func (q *riverQueue[TTx]) Stop(ctx context.Context) error {
	if !q.worker {
		return nil
	}
	// A soft stop first: running jobs see no cancellation and may finish.
	// When ctx ends, StopAndCancel cancels them: the run worker then
	// checkpoints, releases its lease and asks for a requeue.
	if err := q.client.Stop(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := q.client.StopAndCancel(cctx); err != nil {
			return fmt.Errorf("stop river: %w", err)
		}
	}
	return nil
}

// runWorker adapts RunExecutor to River.
type runWorker struct {
	river.WorkerDefaults[RunArgs]
	exec RunExecutor
}

func (w *runWorker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	ctx = observe.WithTraceParent(ctx, job.Args.TraceParent)
	requeue, err := w.exec.ExecuteRun(ctx, job.Args.Tenant, job.Args.RunID)
	var wait Snoozer
	if errors.As(err, &wait) {
		// Not its turn yet (an earlier message of its conversation is
		// unfinished), or still executing here: again after the delay,
		// without using an attempt.
		return river.JobSnooze(wait.SnoozeFor())
	}
	if requeue {
		// Snoozing does not consume an attempt; the lease is released, so
		// any worker may resume the run from its checkpoint.
		return river.JobSnooze(0)
	}
	return err
}

// webhookWorker adapts WebhookDeliverer to River.
type webhookWorker struct {
	river.WorkerDefaults[WebhookArgs]
	d WebhookDeliverer
}

func (w *webhookWorker) Work(ctx context.Context, job *river.Job[WebhookArgs]) error {
	event, key := job.Args.Event, job.Args.RunID
	if event == "" {
		event = WebhookRunCompleted
	}
	if event != WebhookRunCompleted {
		key += ":" + event + ":" + strconv.FormatInt(job.ID, 10)
	}
	return w.d.Deliver(ctx, job.Args.Tenant, job.Args.RunID, job.Args.URL, event, key)
}

func (w *webhookWorker) Timeout(*river.Job[WebhookArgs]) time.Duration { return 30 * time.Second }
