// Package sqlstore is the one SQL implementation of the store seam that the
// SQLite and PostgreSQL backends share: the queries and the logic around
// them, written once where the dialects agree.
//
// A backend hands it a DB (its connections, behind the tiny Querier and Tx
// interfaces) and a Dialect (what differs: time encoding, error mapping and
// the few statements that must be spelt differently). Queries are written
// with PostgreSQL's $n placeholders, which SQLite (modernc.org/sqlite)
// binds by number too, so no query is rewritten at run time. What truly
// differs stays in the backend packages: connection pools, SQLite's single
// writer and its prepared statement cache, migrations, LISTEN/NOTIFY.
package sqlstore

import (
	"context"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Querier runs statements: a pool or a transaction.
type Querier interface {
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// QueryRow runs a query for at most one row; an error (also a missing
	// row, which the Dialect's MapErr turns into store.ErrNotFound) is
	// reported by Scan.
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Row is the result of QueryRow.
type Row interface {
	Scan(dest ...any) error
}

// Rows is the result of Query. Close is safe to call more than once.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Tx is a read-write transaction.
type Tx interface {
	Querier
	// SendBatch runs the statements of b in order. PostgreSQL sends them
	// in one round trip; SQLite, in process, runs each as its result is
	// read. Either way every statement sees the rows of those before it,
	// and the results must be read in order.
	SendBatch(ctx context.Context, b *Batch) BatchResults
	// Script runs statements without arguments, possibly several
	// separated by semicolons (a migration), never prepared.
	Script(ctx context.Context, sql string) error
	Commit(ctx context.Context) error
	// Rollback after Commit is a no-op.
	Rollback(ctx context.Context) error
}

// Batch is a list of statements for Tx.SendBatch.
type Batch struct {
	Queries []Queued
}

// Queued is one statement of a Batch.
type Queued struct {
	SQL  string
	Args []any
}

// Queue appends a statement.
func (b *Batch) Queue(query string, args ...any) {
	b.Queries = append(b.Queries, Queued{SQL: query, Args: args})
}

// BatchResults reads the results of a Batch, one per statement, in order.
type BatchResults interface {
	// Exec reads the next statement's result: rows changed.
	Exec() (int64, error)
	// QueryRow reads the next statement's result: one row.
	QueryRow() Row
	// Close reads (runs) the statements not read yet and returns the first
	// error.
	Close() error
}

// DB is a backend's connections.
type DB struct {
	// Write runs statements that write outside a transaction (SQLite: on
	// its single write connection).
	Write Querier
	// Read runs statements that only read (SQLite: on its read pool).
	Read Querier
	// Begin starts a read-write transaction (SQLite: BEGIN IMMEDIATE on
	// the write connection, so a read-then-write never fails to upgrade).
	Begin func(ctx context.Context) (Tx, error)
}

// Dialect is what the SQL of the two backends does not share.
type Dialect struct {
	// Name prefixes errors: "sqlite", "postgres".
	Name string
	// Time is the query argument for t: NULL for the zero time, else t
	// truncated to the microsecond (SQLite: INTEGER unix microseconds;
	// PostgreSQL: timestamptz).
	Time func(t time.Time) any
	// TimeType is the SQL type of a Time argument, for a CAST where
	// PostgreSQL cannot infer it ($1 IS NULL).
	TimeType string
	// ScanTime is the Scan destination for a time column that fills *t
	// (NULL: the zero time; else UTC).
	ScanTime func(t *time.Time) any
	// MapErr translates driver errors into the store's sentinels, keeping
	// the original in the chain: no rows → store.ErrNotFound, a unique or
	// primary key violation → store.ErrConflict. Nil stays nil.
	MapErr func(err error) error
	// IsForeignKey reports a foreign key violation.
	IsForeignKey func(err error) bool

	// Reclaim clears the lease of running runs whose lease expired before
	// $1 (a Time), at most $2 of them, and returns them (RunColumns). It
	// must hand each such run to exactly one of concurrent reclaimers
	// (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: its single writer).
	Reclaim string
	// ReclaimOrphans sets lease_expires_at to $1 on queued runs whose River
	// job was fetched (attempted) before $2 (a RiverTime) and whose
	// lease_expires_at is NULL or before $3, and returns them with the
	// running runs nobody holds (lease cleared by a reclaim) whose new job
	// was fetched before $2 and which have no job waiting or fetched
	// since; at most $4 in all (RunColumns).
	ReclaimOrphans string
	// HasRiver returns one boolean row: whether River's job table exists.
	HasRiver string
	// RiverTime is the query argument for a time compared with River's
	// own timestamp columns.
	RiverTime func(t time.Time) any

	// UsageDay is the SQL expression of a usage row's UTC day,
	// "YYYY-MM-DD".
	UsageDay string
	// Greatest names the function of two arguments that returns the
	// larger: GREATEST (PostgreSQL), max (SQLite).
	Greatest string
	// Param is the i-th (1-based) parameter of a statement built here with
	// many rows (a batch insert); nil is PostgreSQL's $i. SQLite's is ?:
	// it keeps $i as a named parameter, and its driver looks each bound
	// parameter's name up in a list as long as the statement's, so that
	// binding n named parameters costs n² (a 64-row usage insert spent
	// two thirds of its time there), while anonymous ones bind in order.
	// The usage rows' and a step's events' multi-row inserts use it.
	Param func(i int) string
	// ForUpdate ends a SELECT whose rows the transaction will update: "
	// FOR UPDATE" on PostgreSQL; "" on SQLite, whose write transaction
	// holds the database.
	ForUpdate string

	// CreateSchemaMigrations creates the table schema_migrations
	// (version, applied_at a Time) if it does not exist.
	CreateSchemaMigrations string
	// HasSchemaMigrations returns one boolean row: whether the table
	// schema_migrations exists.
	HasSchemaMigrations string
	// MigrateLock, when not empty, is run first in a migrating
	// transaction to keep concurrent migrators apart (PostgreSQL: an
	// advisory lock; SQLite's BEGIN IMMEDIATE does it already).
	MigrateLock string
	// Busy, when set, reports a lock held by another connection that
	// outlasted the backend's own wait (SQLite's SQLITE_BUSY after
	// busy_timeout): Migrate waits and tries again rather than fail a
	// process that starts beside others migrating the same file.
	Busy func(err error) bool
	// MigrateAtomic applies all missing migrations in one transaction
	// (PostgreSQL, whose DDL is transactional) instead of one
	// transaction per migration (SQLite).
	MigrateAtomic bool
}

// Backend is every part of the store seam a backend built on sqlstore
// implements (each asserts it at compile time).
type Backend[TTx any] interface {
	store.Store
	store.RunLeases
	store.TxRuns[TTx]
	store.Audit
	store.APIKeys
	store.Usage
	store.Budgets
	store.Retention
	store.Managed
	store.Feedback
	store.SDKSessions
}

// Store implements the store seam on a DB in a Dialect. Backends embed it.
type Store struct {
	db DB
	d  Dialect
	qb budgetQueries
	// qUsageRows[n]: the insert of n usage rows (usageInsert).
	qUsageRows map[int]string
	// qEventRows[n]: the insert of n events of a run (eventInserts).
	qEventRows [maxEventRows + 1]string
}

// New returns a Store on db in dialect d.
func New(db DB, d Dialect) *Store {
	if d.Param == nil {
		d.Param = dollarParam
	}
	return &Store{db: db, d: d, qb: newBudgetQueries(d), qUsageRows: usageInserts(d.Param), qEventRows: eventInserts(d.Param)}
}

// dollarParam is PostgreSQL's i-th parameter, $i.
func dollarParam(i int) string { return "$" + strconv.Itoa(i) }

// Now is the store's clock: UTC, truncated to the microsecond, the
// precision both backends keep.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// NormTime is what a time looks like after a round trip.
func NormTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// JSON is the query argument for JSON stored byte for byte: nil (or empty)
// is NULL.
func JSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// fromJSON turns an empty scanned JSON column into nil.
func fromJSON(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// rollback is deferred after Begin; after Commit it is a no-op. It must not
// use the caller's context, which may be canceled by then.
func rollback(tx Tx) { _ = tx.Rollback(context.Background()) }
