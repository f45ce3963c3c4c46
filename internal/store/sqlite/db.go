package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentd/agentd/internal/store/sqlstore"
)

// dialect is SQLite's side of sqlstore.Dialect.
var dialect = sqlstore.Dialect{
	Name: "sqlite",
	// Timestamps are INTEGER unix microseconds in UTC; NULL is the zero
	// time (see the package doc).
	Time:         toMicros,
	TimeType:     "INTEGER",
	ScanTime:     func(t *time.Time) any { return (*microTime)(t) },
	MapErr:       mapErr,
	IsForeignKey: func(err error) bool { return isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) },
	Busy:         func(err error) bool { return isConstraint(err, sqlite3.SQLITE_BUSY) },
	Param:        func(int) string { return "?" },
	// Reclaimers in several Stores or processes serialize on SQLite's
	// write lock (the transaction is BEGIN IMMEDIATE), so each expired run
	// is reclaimed once.
	Reclaim: `UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id IN (SELECT id FROM runs WHERE status = 'running' AND lease_expires_at < $1
			ORDER BY lease_expires_at LIMIT $2)
		RETURNING ` + sqlstore.RunColumns,
	ReclaimOrphans: `UPDATE runs SET lease_expires_at = CASE WHEN status = 'queued' THEN $1 ELSE lease_expires_at END
		WHERE id IN (SELECT r.id FROM runs r
			JOIN river_job j ON j.kind = 'agentd_run' AND j.state = 'running'
				AND json_extract(j.args, '$.run_id') = r.id AND j.attempted_at < $2
			WHERE (r.status = 'queued' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < $3))
				OR (r.status = 'running' AND r.lease_owner IS NULL AND r.lease_expires_at IS NULL
					AND NOT EXISTS (SELECT 1 FROM river_job p WHERE p.kind = 'agentd_run' AND json_extract(p.args, '$.run_id') = r.id
						AND (p.state IN ('available', 'scheduled', 'retryable', 'pending')
							OR (p.state = 'running' AND p.attempted_at >= $2))))
			LIMIT $4)
		RETURNING ` + sqlstore.RunColumns,
	HasRiver: `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'river_job'`,
	// River writes attempted_at as UTC text, 'YYYY-MM-DD HH:MM:SS.SSS'.
	RiverTime: func(t time.Time) any { return t.UTC().Format("2006-01-02 15:04:05.000") },
	UsageDay:  "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
	Greatest:  "max",
	CreateSchemaMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL
)`,
	HasSchemaMigrations: `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`,
}

// microTime scans an INTEGER of unix microseconds (NULL: the zero time).
type microTime time.Time

func (t *microTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*t = microTime{}
	case int64:
		*t = microTime(time.UnixMicro(v).UTC())
	default:
		return fmt.Errorf("sqlite: scan time: got %T, want INTEGER", src)
	}
	return nil
}

// pool runs statements on a pool through its statement cache.
//
// With toEnd (the read pool) a statement runs to its end once started
// (stmtContext). The driver interrupts a statement whose context ends
// (sqlite3_interrupt), and an interrupted connection is no longer valid
// to modernc.org/sqlite (conn.usable): database/sql closes it and opens
// another, which parses the schema again and prepares every cached
// statement again on first use. A client that went away mid-read (a
// session stream closed at the end of its turn) cost that at every
// close; a read takes microseconds to milliseconds (indexed reads,
// bounded lists). The wait for a free connection then does not end with
// the context either: a read connection is free within a read's time.
// The write pool keeps the context whole, so that a writer gives up its
// place in the one connection's queue when its context ends.
type pool struct {
	c     *stmtCache
	toEnd bool
}

// ctx is the context of a statement: see pool.
func (p pool) ctx(ctx context.Context) (context.Context, error) {
	if !p.toEnd {
		return ctx, nil
	}
	return stmtContext(ctx)
}

func (p pool) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	ctx, err := p.ctx(ctx)
	if err != nil {
		return 0, err
	}
	st, err := p.c.get(ctx, query)
	if err != nil {
		return 0, err
	}
	return affected(st.ExecContext(ctx, args...))
}

func (p pool) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	ctx, err := p.ctx(ctx)
	if err != nil {
		return nil, err
	}
	st, err := p.c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return wrapRows(st.QueryContext(ctx, args...))
}

// QueryRow reports a failed prepare from Scan.
func (p pool) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	ctx, err := p.ctx(ctx)
	if err != nil {
		return sqlstore.ErrRow(err)
	}
	st, err := p.c.get(ctx, query)
	if err != nil {
		return sqlstore.ErrRow(err)
	}
	return st.QueryRowContext(ctx, args...)
}

// tx is a write transaction; it uses the statements the cache has prepared.
type tx struct {
	tx *sql.Tx
	c  *stmtCache
}

// begin starts a write transaction (BEGIN IMMEDIATE: nobody writes between
// a check and an update), as a savepoint of a group of them (see group).
func (s *Store) begin(ctx context.Context) (sqlstore.Tx, *sql.Tx, error) {
	t, err := s.beginTx(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	return t, t.tx.tx, nil
}

// beginTx is begin, with the store's breaker around the transaction's
// start when guarded.
func (s *Store) beginTx(ctx context.Context, guarded bool) (*groupTx, error) {
	t, out, first, err := s.group.begin(ctx, func(ctx context.Context) (*sql.Tx, func(), error) {
		if !guarded {
			return s.openTx(ctx)
		}
		var (
			t       *sql.Tx
			release func()
		)
		err := s.guard.Do(ctx, func() (err error) {
			t, release, err = s.openTx(ctx)
			return err
		})
		return t, release, err
	}, s.wstmt.preparePending)
	if err != nil {
		return nil, err
	}
	return &groupTx{tx: &tx{tx: t, c: s.wstmt}, g: s.group, out: out, first: first}, nil
}

// openTx waits for the write connection as long as ctx lets it and begins
// a transaction on it that outlives ctx (a group's, ended by its members).
func (s *Store) openTx(ctx context.Context) (*sql.Tx, func(), error) {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return t, func() { _ = conn.Close() }, nil
}

// stmtContext is the context of a statement of the read pool (see pool)
// or inside a write transaction: ctx without its cancellation once ctx is
// checked. With a cancellable context the driver starts a goroutine per
// statement (and sets a progress handler) to interrupt it; a statement of
// a write transaction takes microseconds, and a cancelled ctx still ends
// the transaction: its next statement fails with ctx's error, and its
// caller rolls it back (its savepoint, in a group: see group).
func stmtContext(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return ctx, err
	}
	return context.WithoutCancel(ctx), nil
}

func (t *tx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	ctx, err := stmtContext(ctx)
	if err != nil {
		return 0, err
	}
	if st := t.c.lookup(query); st != nil {
		return affected(t.tx.StmtContext(ctx, st).ExecContext(ctx, args...))
	}
	return affected(t.tx.ExecContext(ctx, query, args...))
}

func (t *tx) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	ctx, err := stmtContext(ctx)
	if err != nil {
		return nil, err
	}
	if st := t.c.lookup(query); st != nil {
		return wrapRows(t.tx.StmtContext(ctx, st).QueryContext(ctx, args...))
	}
	return wrapRows(t.tx.QueryContext(ctx, query, args...))
}

func (t *tx) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	ctx, err := stmtContext(ctx)
	if err != nil {
		return sqlstore.ErrRow(err)
	}
	if st := t.c.lookup(query); st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

func (t *tx) Script(ctx context.Context, sql string) error {
	_, err := t.tx.ExecContext(ctx, sql)
	return err
}

func (t *tx) Commit(context.Context) error   { return t.tx.Commit() }
func (t *tx) Rollback(context.Context) error { return t.tx.Rollback() }

// SendBatch runs each statement when its result is read: SQLite is in
// process, there is no round trip to save.
func (t *tx) SendBatch(ctx context.Context, b *sqlstore.Batch) sqlstore.BatchResults {
	return &batch{ctx: ctx, tx: t, b: b}
}

type batch struct {
	ctx    context.Context
	tx     *tx
	b      *sqlstore.Batch
	next   int
	failed bool
}

func (b *batch) pop() (sqlstore.Queued, bool) {
	if b.next >= len(b.b.Queries) {
		return sqlstore.Queued{}, false
	}
	q := b.b.Queries[b.next]
	b.next++
	return q, true
}

func (b *batch) Exec() (int64, error) {
	q, ok := b.pop()
	if !ok {
		return 0, errors.New("sqlite: batch: no more results")
	}
	n, err := b.tx.Exec(b.ctx, q.SQL, q.Args...)
	if err != nil {
		b.failed = true
	}
	return n, err
}

func (b *batch) QueryRow() sqlstore.Row {
	q, ok := b.pop()
	if !ok {
		return sqlstore.ErrRow(errors.New("sqlite: batch: no more results"))
	}
	return batchRow{row: b.tx.QueryRow(b.ctx, q.SQL, q.Args...), b: b}
}

// Close runs the statements not read yet, unless one failed (the
// transaction is being abandoned then).
func (b *batch) Close() error {
	for !b.failed {
		if _, ok := b.pop(); !ok {
			return nil
		}
		b.next--
		if _, err := b.Exec(); err != nil {
			return err
		}
	}
	return nil
}

type batchRow struct {
	row sqlstore.Row
	b   *batch
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if err != nil {
		r.b.failed = true
	}
	return err
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// rows adapts *sql.Rows to sqlstore.Rows (a one-pointer struct: no
// allocation).
type rows struct{ *sql.Rows }

func (r rows) Close() { _ = r.Rows.Close() }

func wrapRows(r *sql.Rows, err error) (sqlstore.Rows, error) {
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}
