// Package postgres is the PostgreSQL backend of store.Store, built on pgx v5
// and its connection pool, pgxpool. The SQL is sqlstore's, shared with the
// SQLite backend; this package holds the pool, the bulk usage insert and
// PostgreSQL's side of sqlstore.Dialect.
//
// # Connections
//
// A Store holds one pgxpool.Pool. Its size and the other pool settings come
// from the URL (pool_max_conns, pool_min_conns, pool_max_conn_lifetime, ...;
// see pgxpool.ParseConfig); other query parameters that are not libpq
// connection settings are sent to the server as run-time parameters, so
//
//	postgres://agentd@db/agentd?sslmode=require&pool_max_conns=20&search_path=agentd
//
// puts the tables in schema agentd (the first schema of the search_path,
// which must exist). Without pool_max_conns the pool holds up to
// DefaultPoolMaxConns() connections: max(16, 4 × GOMAXPROCS), not pgx's
// own default of max(4, NumCPU), which capped a worker's concurrent commits
// (each run's steps commit while up to worker.concurrency runs are in
// flight). Several instances share the server's max_connections (100 by
// default): size pool_max_conns × instances below it.
//
// Pool returns the pool so that a job queue (River) can share it and insert
// its jobs in the store's transactions (store.TxRuns).
//
// # Concurrency
//
// Transactions run at READ COMMITTED. The version check of AppendMessages is
// a conditional UPDATE, which locks the conversation's row, so concurrent
// appends to one conversation serialize on it and exactly one of those with
// the same expected version wins. SaveStep inserts each event only if it is
// the run's next one; two concurrent callers inserting the same seq collide
// on the primary key and the loser gets store.ErrConflict.
//
// # Encoding
//
// Timestamps are timestamptz: microsecond precision, returned in UTC, the
// zero time.Time stored as NULL, exactly like the SQLite backend. JSON
// (message content, run input/output, event data, checkpoint state) is
// stored in json columns, which keep the text byte for byte (jsonb would
// not); nil is NULL. Unlike SQLite, PostgreSQL rejects text that is not
// valid JSON or not valid UTF-8, or that contains a NUL byte.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlstore"
)

// Store is a store.Store on a PostgreSQL database. It is safe for concurrent
// use; several Stores (also in several processes) may share a database.
type Store struct {
	// Store is the SQL the backends share; it runs on the pool.
	*sqlstore.Store

	pool  *pgxpool.Pool
	guard sqlstore.Guard

	closeOnce sync.Once
}

var _ sqlstore.Backend[pgx.Tx] = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a libpq
// key=value string, see the package doc for pool settings) and checks that
// it answers. It does not migrate: call Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenGuarded(ctx, url, nil)
}

// OpenGuarded is Open with the store's circuit breaker b (nil: none) in
// front of every statement and transaction (see sqlstore.Guard): while it
// is open, store calls fail at once with a *breaker.OpenError. Open's own
// ping is not guarded.
func OpenGuarded(ctx context.Context, url string, b *breaker.Breaker) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors (and the url.Parse errors they wrap) may
		// quote the URL, password included: don't pass them on. pgxpool's
		// own (pool_max_conns=nope) don't.
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			return nil, errors.New("postgres: open: invalid database url")
		}
		return nil, fmt.Errorf("postgres: open: invalid database url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultPoolMaxConns()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	s := &Store{pool: pool, guard: sqlstore.Guard{Breaker: b, Unavailable: unavailable}}
	q := s.guard.Querier(querier[*pgxpool.Pool]{pool})
	s.Store = sqlstore.New(sqlstore.DB{Write: q, Read: q, Begin: s.beginLazy}, dialect)
	return s, nil
}

// DefaultPoolMaxConns is the pool size when the URL does not set
// pool_max_conns: max(16, 4 × GOMAXPROCS).
func DefaultPoolMaxConns() int32 {
	return int32(max(16, 4*runtime.GOMAXPROCS(0)))
}

// Pool returns the Store's connection pool, for sharing with a job queue.
// Closing the Store closes it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned. It
// is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// PostgreSQL error codes.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// mapErr translates driver errors into the store's sentinel errors, keeping
// the original in the chain: pgx.ErrNoRows becomes store.ErrNotFound, a
// unique (or primary key) violation store.ErrConflict.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if isCode(err, codeUniqueViolation) {
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	return err
}

func init() { store.RegisterErrorClasses(unavailable, nil) }

// unavailable reports an error that says PostgreSQL cannot be reached or
// used, for the store's breaker: no connection (refused, reset, DNS, TLS,
// pgconn's connect errors), a connection lost mid-query, a timeout, and
// the server's own "connection exception" (08), "insufficient resources"
// (53) and "operator intervention" (57: shutting down, cannot connect
// now) classes. Any other answer of the server is PostgreSQL working.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") || strings.HasPrefix(pe.Code, "57")
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// Timestamps: timestamptz, microseconds, UTC, zero ↔ NULL.

// toTime is the query argument for t: NULL for the zero time, else t
// truncated to the microsecond as the SQLite backend does (pgx would
// truncate too; this makes it explicit).
func toTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return sqlstore.NormTime(t)
}
