// Package sqlite is the SQLite backend of store.Store, built on the pure-Go
// driver modernc.org/sqlite (no cgo). The SQL is sqlstore's, shared with
// the PostgreSQL backend; this package holds the connections, the statement
// cache and SQLite's side of sqlstore.Dialect.
//
// # Connections and locking
//
// SQLite allows one writer at a time. A Store therefore holds two pools on
// the same file:
//
//   - a write pool with exactly one connection. Every method that writes runs
//     on it, so writers inside one process queue (for the group's turn,
//     River's in database/sql), honouring their context, instead of
//     spinning on SQLITE_BUSY. Its transactions
//     start with BEGIN IMMEDIATE (DSN _txlock=immediate): the write lock is
//     taken up front, so a read-then-write transaction (the version check of
//     AppendMessages, the seq check of SaveStep, Migrate) can never fail with
//     SQLITE_BUSY when upgrading a read lock, and writers from other
//     processes on the same file wait for up to busy_timeout (5s) for it.
//     Concurrent write transactions commit together, each in a savepoint
//     of one SQLite transaction (group.go): one commit writes the changed
//     pages of all of them.
//     Its connections keep a prepared statement per query text they are
//     given as text (textCacheConn): River's driver sends every query so,
//     and the driver would parse each one at each call on the one write
//     connection.
//   - a read pool with several connections, opened with query_only. In WAL
//     mode readers never block the writer nor each other, and a statement
//     (GetConversation's one) sees one consistent snapshot.
//
// A third connection, the checkpointer's (checkpoint.go), copies the WAL
// into the database file.
//
// All three run with busy_timeout(5000); the write pool also sets
// journal_mode(WAL) (persistent in the file), foreign_keys(1) (needed for
// ON DELETE CASCADE), synchronous(NORMAL) (in WAL mode a commit is
// durable against application crashes; a power loss can lose the last
// commits but never corrupts the database) and temp_store(MEMORY): the
// savepoints of a commit group (group.go) journal the pages they change,
// and past 64 KB SQLite otherwise spills that journal to a temporary file,
// a write call a page (an eighth of the core at /v1/chat's saturation).
// It also sets wal_autocheckpoint(0): a goroutine with a connection of its
// own checkpoints the WAL instead (checkpoint.go), so that no commit waits
// for a checkpoint's fsync calls.
// The statements that change many rows at once on the write connection
// are kept bounded for it: the sweeps delete in batches, and Migrate puts
// temp_store back to DEFAULT while it runs.
//
// # Encoding
//
// Timestamps are INTEGER unix microseconds in UTC, the precision PostgreSQL's
// timestamptz has, so both backends round-trip the same values: a time is
// truncated to the microsecond when written and comes back in UTC. The zero
// time.Time is stored as NULL. JSON (message content, run input/output,
// event data, checkpoint state) is TEXT, stored byte for byte; nil is NULL.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlstore"
)

// Store is a store.Store on one SQLite database file. It is safe for
// concurrent use; several Stores (also in several processes) may share a file.
type Store struct {
	// Store is the SQL the backends share; it runs on the pools below.
	*sqlstore.Store

	write *sql.DB // one connection, BEGIN IMMEDIATE
	read  *sql.DB // several connections, query_only
	ckpt  *checkpointer
	wstmt *stmtCache
	rstmt *stmtCache
	group *group // the write transactions' (see group)
	guard sqlstore.Guard

	closeOnce sync.Once
	closeErr  error
}

var _ sqlstore.Backend[*sql.Tx] = (*Store)(nil)

// Migrate applies the migrations (sqlstore.Store.Migrate) with the write
// connection's temporary files on disk (temp_store DEFAULT) meanwhile: a
// migration that rewrites a large table in its transaction journals every
// page it changes, which temp_store(MEMORY) would hold in memory.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := s.write.ExecContext(ctx, `PRAGMA temp_store = DEFAULT`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	err := s.Store.Migrate(ctx)
	if _, perr := s.write.ExecContext(context.WithoutCancel(ctx), `PRAGMA temp_store = MEMORY`); perr != nil && err == nil {
		err = fmt.Errorf("sqlite: migrate: %w", perr)
	}
	return err
}

// Open opens (creating it if needed) the SQLite database at path, a file
// system path (config.ParseStoreURL returns it for a sqlite:// URL). It
// does not migrate: call Migrate.
// ":memory:" is refused, since the two connection pools would each see a
// database of their own.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenGuarded(ctx, path, nil)
}

// OpenGuarded is Open with the store's circuit breaker b (nil: none) in
// front of every statement and transaction (see sqlstore.Guard); SQLite's
// failures are the disk's and its locks' (see unavailable).
func OpenGuarded(ctx context.Context, path string, b *breaker.Breaker) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open %q: want a file system path", path)
	}

	wc, err := sqlite.NewConnector(dsn(path,
		"_pragma=busy_timeout(5000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=foreign_keys(1)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=temp_store(MEMORY)",
		"_pragma=wal_autocheckpoint(0)",
		"_txlock=immediate",
	))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write := sql.OpenDB(textCacheConnector{wc}) // River's queries prepared once
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// Open the write connection now: it switches the file to WAL before any
	// reader connects, and a bad path fails here rather than on first use.
	if err := write.PingContext(ctx); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	read, err := sql.Open("sqlite", dsn(path,
		"_pragma=busy_timeout(5000)",
		"_pragma=foreign_keys(1)",
		"_pragma=query_only(1)",
	))
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	read.SetConnMaxIdleTime(5 * time.Minute)
	ckpt, err := startCheckpointer(ctx, path, write, restartFrames)
	if err != nil {
		_ = read.Close()
		_ = write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	s := &Store{write: write, read: read, ckpt: ckpt, wstmt: newStmtCache(write), rstmt: newStmtCache(read),
		group: newGroup(), guard: sqlstore.Guard{Breaker: b, Unavailable: unavailable}}
	s.Store = sqlstore.New(sqlstore.DB{Write: s.guard.Querier(groupedWrites{pool: pool{c: s.wstmt}, s: s}), Read: s.guard.Querier(pool{c: s.rstmt, toEnd: true}), Begin: func(ctx context.Context) (sqlstore.Tx, error) {
		t, _, err := s.begin(ctx)
		return t, err
	}}, dialect)
	return s, nil
}

// dsn builds a "file:" URI for path, so that a '?' or '#' in the path is
// not taken for the start of the query.
func dsn(path string, params ...string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + strings.Join(params, "&")
}

// Ping checks that the database answers: it reads the schema version
// (page 1 of the file) on the read pool.
//
// It never touches the write pool: that pool has one connection, and under
// write load its queue can be seconds long, so a health check waiting for
// it would time out (and take the instance out of rotation) while the
// database is perfectly healthy; in WAL mode a reader never waits for the
// writer. The write connection is opened (and checked) by Open and kept for
// the Store's life; a write that fails reports its own error.
func (s *Store) Ping(ctx context.Context) error {
	var v int64
	if err := s.read.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the database. It is safe to call more than once; later calls
// return what the first returned.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Readers first: the last connection to close checkpoints the WAL.
		errs := []error{s.ckpt.close(), s.rstmt.close(), s.read.Close(), s.wstmt.close(), s.write.Close()}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}

// mapErr translates driver errors into the store's sentinel errors, keeping
// the original in the chain: sql.ErrNoRows becomes store.ErrNotFound, a
// primary key or unique violation store.ErrConflict.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	return err
}

func init() { store.RegisterErrorClasses(unavailable, isFull) }

// isFull reports SQLite's "database or disk is full" (SQLITE_FULL).
func isFull(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL
}

// unavailable reports an error that says the database file cannot be
// used, for the store's breaker: I/O errors, a file that cannot be
// opened, is corrupt or is not a database, and a lock still held after
// busy_timeout (5 s). Other errors are SQLite answering. A full disk is
// not one (isFull; 507 store_full): reads still work and the write fails
// at once, so opening the breaker would only refuse the reads too and
// keep refusing writes for open_timeout after space is freed (`agentd
// chaos disk` failed so: 0 of 5 chats recovered).
func unavailable(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT,
		sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_BUSY:
		return true
	}
	return false
}

func isConstraint(err error, codes ...int) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.Code() == c {
			return true
		}
	}
	return false
}

// Timestamps: unix microseconds, UTC, zero ↔ NULL (see the package doc).

func toMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}
