package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlstore"
)

// dialect is PostgreSQL's side of sqlstore.Dialect.
var dialect = sqlstore.Dialect{
	Name: "postgres",
	// Timestamps are timestamptz, returned in UTC; NULL is the zero time.
	Time:         toTime,
	TimeType:     "timestamptz",
	ScanTime:     func(t *time.Time) any { return (*scanTime)(t) },
	MapErr:       mapErr,
	IsForeignKey: func(err error) bool { return isCode(err, codeForeignKeyViolation) },
	// SKIP LOCKED: concurrent reclaimers split the expired runs instead of
	// queueing on each other's rows. A run another transaction reclaimed
	// (or claimed) and committed meanwhile fails the re-check of the WHERE
	// clause that READ COMMITTED does on a changed row, so each expired run
	// is reclaimed once.
	Reclaim: `WITH expired AS (
			SELECT id AS expired_id FROM runs
			WHERE status = 'running' AND lease_expires_at < $1
			ORDER BY lease_expires_at LIMIT $2
			FOR UPDATE SKIP LOCKED)
		UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		FROM expired WHERE id = expired_id
		RETURNING ` + sqlstore.RunColumns,
	ReclaimOrphans: `WITH orphans AS (
			SELECT r.id AS orphan_id FROM runs r
			JOIN river_job j ON j.kind = 'agentd_run' AND j.state = 'running'
				AND j.args->>'run_id' = r.id AND j.attempted_at < $2
			WHERE (r.status = 'queued' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < $3))
				OR (r.status = 'running' AND r.lease_owner IS NULL AND r.lease_expires_at IS NULL
					AND NOT EXISTS (SELECT 1 FROM river_job p WHERE p.kind = 'agentd_run' AND p.args->>'run_id' = r.id
						AND (p.state IN ('available', 'scheduled', 'retryable', 'pending')
							OR (p.state = 'running' AND p.attempted_at >= $2))))
			LIMIT $4
			FOR UPDATE OF r SKIP LOCKED)
		UPDATE runs SET lease_expires_at = CASE WHEN status = 'queued' THEN $1 ELSE lease_expires_at END
		FROM orphans WHERE id = orphan_id
		RETURNING ` + sqlstore.RunColumns,
	HasRiver:  `SELECT to_regclass('river_job') IS NOT NULL`,
	RiverTime: toTime,
	UsageDay:  "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
	Greatest:  "GREATEST",
	ForUpdate: " FOR UPDATE",
	CreateSchemaMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint      NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)`,
	HasSchemaMigrations: `SELECT to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL`,
	// The two-key form, with the current schema as the second key, so
	// that stores in different schemas of one database do not wait for
	// each other; released at commit.
	MigrateLock:   `SELECT pg_advisory_xact_lock(hashtext('agentd.store.migrate'), hashtext(current_schema()))`,
	MigrateAtomic: true,
}

// scanTime scans a timestamptz (NULL: the zero time) in UTC, without
// reflection (pgx calls ScanTimestamptz directly).
type scanTime time.Time

func (t *scanTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*t = scanTime{}
		return nil
	}
	*t = scanTime(v.Time.UTC())
	return nil
}

var _ pgtype.TimestamptzScanner = (*scanTime)(nil)

// pgxQuerier is what a pool and a pgx.Tx have in common.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// querier adapts a pool or a transaction to sqlstore.Querier.
type querier[Q pgxQuerier] struct{ q Q }

func (q querier[Q]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (q querier[Q]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (q querier[Q]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.q.QueryRow(ctx, query, args...)
}

// tx is a pgx.Tx as a sqlstore.Tx.
type tx struct{ querier[pgx.Tx] }

func (s *Store) begin(ctx context.Context) (sqlstore.Tx, pgx.Tx, error) {
	var t pgx.Tx
	err := s.guard.Do(ctx, func() (err error) {
		t, err = s.pool.Begin(ctx)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return tx{querier[pgx.Tx]{t}}, t, nil
}

// Script runs sql without arguments: pgx sends it with the simple
// protocol, which allows several statements.
func (t tx) Script(ctx context.Context, sql string) error {
	_, err := t.q.Exec(ctx, sql)
	return err
}

func (t tx) Commit(ctx context.Context) error   { return t.q.Commit(ctx) }
func (t tx) Rollback(ctx context.Context) error { return t.q.Rollback(ctx) }

// SendBatch sends the statements in one round trip.
func (t tx) SendBatch(ctx context.Context, b *sqlstore.Batch) sqlstore.BatchResults {
	pb := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.Queries))}
	for _, q := range b.Queries {
		pb.Queue(q.SQL, q.Args...)
	}
	return batchResults{t.q.SendBatch(ctx, pb)}
}

type batchResults struct{ br pgx.BatchResults }

func (r batchResults) Exec() (int64, error) {
	tag, err := r.br.Exec()
	return tag.RowsAffected(), err
}

func (r batchResults) QueryRow() sqlstore.Row { return r.br.QueryRow() }
func (r batchResults) Close() error           { return r.br.Close() }

// ReclaimBatch is the most runs one ReclaimExpiredRuns call reclaims.
const ReclaimBatch = sqlstore.ReclaimBatch

// CreateRunTx inserts r like CreateRun and then, when fn is not nil, calls
// fn with the transaction, a pgx.Tx (River's riverpgxv5 driver takes it);
// if fn fails, nothing is written and its error is returned wrapped (as is,
// not mapped to the store's sentinels).
func (s *Store) CreateRunTx(ctx context.Context, r store.Run, fn store.TxFunc[pgx.Tx]) error {
	return sqlstore.CreateRunTx(ctx, s.Store, s.begin, r, fn)
}

// ReclaimExpiredRuns clears the lease of up to ReclaimBatch running runs
// whose lease expired before now and calls fn for each, in one
// transaction: fn gets its pgx.Tx (to enqueue the run again). If fn fails,
// nothing is written and its error is returned wrapped. Concurrent
// reclaimers (also in other processes) skip the runs another one has
// locked, so each expired run is reclaimed by exactly one of them.
func (s *Store) ReclaimExpiredRuns(ctx context.Context, t time.Time, fn store.ReclaimFunc[pgx.Tx]) (int, error) {
	return sqlstore.ReclaimExpiredRuns(ctx, s.Store, s.begin, t, fn)
}

// DecideApprovalTx records a decision and, when it was the run's last
// pending call, queues the run and calls fn with the transaction (to
// enqueue it); see store.ApprovalsTx.
func (s *Store) DecideApprovalTx(ctx context.Context, p store.DecideApprovalParams, fn store.ReclaimFunc[pgx.Tx]) (store.Approval, store.Run, error) {
	return sqlstore.DecideApprovalTx(ctx, s.Store, s.begin, p, fn)
}
