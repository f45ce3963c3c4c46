package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/migrations"
	"github.com/agentd/agentd/internal/store/sqlstore"
	"github.com/agentd/agentd/internal/store/storetest"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s := openTest(t, filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) storetest.Store[*sql.Tx] { return newTestStore(t) })
}

func TestNativeTx(t *testing.T) {
	t.Parallel()
	storetest.ExerciseNativeTx(t, func(t *testing.T) storetest.Store[*sql.Tx] { return newTestStore(t) }, storetest.NativeTx[*sql.Tx]{
		Exec: func(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
			_, err := tx.ExecContext(ctx, query, args...)
			return err
		},
		QueryString: func(ctx context.Context, tx *sql.Tx, query string, args ...any) (string, error) {
			var v sql.NullString
			err := tx.QueryRowContext(ctx, query, args...).Scan(&v)
			return v.String, err
		},
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "m.db"))

	// Versions and idempotence: storetest.ExerciseShared.
	ms, err := migrations.For(migrations.SQLite)
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	require.Equal(t, ms[len(ms)-1].Version, LatestSchemaVersion())
	require.NoError(t, s.Migrate(ctx))

	// Pragmas took effect on both pools.
	var mode string
	require.NoError(t, s.read.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
	var fk, syncMode, busy, temp, autoCkpt int
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&autoCkpt))
	require.Equal(t, 0, autoCkpt, "no commit checkpoints; the checkpointer does")
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&syncMode))
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy))
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&temp))
	require.Equal(t, 1, fk)
	require.Equal(t, 1, syncMode, "NORMAL")
	require.Equal(t, 2, temp, "MEMORY: a group's savepoint journal stays off the disk")
	require.Equal(t, 5000, busy)
	require.NoError(t, s.read.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy))
	require.Equal(t, 5000, busy)

	// The read pool cannot write.
	_, err = s.read.ExecContext(ctx, `DELETE FROM conversations`)
	require.Error(t, err)
}

// TestShared: several Stores on one database (storetest.ExerciseShared).
func TestShared(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	storetest.ExerciseShared(t, func(t *testing.T) storetest.SharedStore[*sql.Tx] { return openTest(t, path) }, 4, LatestSchemaVersion())
}

func TestErrors(t *testing.T) {
	t.Parallel()
	storetest.ExerciseErrors(t, newTestStore(t), "sqlite")
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := Open(t.Context(), ":memory:")
	require.Error(t, err)
	_, err = Open(t.Context(), "")
	require.Error(t, err)
	_, err = Open(t.Context(), filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"))
	require.Error(t, err)

	// Odd characters in the path are a file name, not URI syntax.
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "a?b#c%20d.db"))
	require.NoError(t, s.Migrate(t.Context()))
	matches, err := filepath.Glob(filepath.Join(dir, "a[?]b#c%20d.db"))
	require.NoError(t, err)
	require.Len(t, matches, 1)
}

// BenchmarkStore measures the chat hot path (storetest.Benchmark).
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(tb testing.TB) store.Store { return newTestStore(tb) })
}

// TestPingDoesNotQueueBehindWrites: a health check must answer while the
// single write connection is busy (a long write transaction, a queue of
// writers under load), instead of timing out and making /readyz fail.
func TestPingDoesNotQueueBehindWrites(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	tx, err := s.write.BeginTx(ctx, nil) // holds the only write connection
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(ctx, sqlstore.QAppendUsage, time.Now().UnixMicro(), "t", "", "a", "m", "r", 1, 1, 1, 0, 0, 0.1, 0, "")
	require.NoError(t, err)

	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	require.NoError(t, s.Ping(pctx))

	// A closed store does not answer.
	require.NoError(t, tx.Rollback())
	require.NoError(t, s.Close())
	require.Error(t, s.Ping(ctx))
}

// TestAuditDeleteGuard: the database itself guards the audit log
// (storetest.ExerciseAuditGuard).
func TestAuditDeleteGuard(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	storetest.ExerciseAuditGuard(t, s, func(ctx context.Context, sql string) (int64, error) {
		res, err := s.write.ExecContext(ctx, sql)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
}

// A full database (SQLITE_FULL, here from max_page_count) is store_full,
// not unavailable: the store's breaker does not open on it.
func TestFullDiskIsNotUnavailable(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "full.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	_, err = db.ExecContext(ctx, `CREATE TABLE t (b BLOB)`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `PRAGMA max_page_count = 8`)
	require.NoError(t, err)
	var full error
	for range 100 {
		if _, full = db.ExecContext(ctx, `INSERT INTO t VALUES (zeroblob(4096))`); full != nil {
			break
		}
	}
	require.Error(t, full, "the database never filled")
	require.True(t, isFull(full), "%v", full)
	require.True(t, store.IsFull(full))
	require.False(t, unavailable(full), "a full disk must not count against the store's breaker")
	require.False(t, store.IsUnavailable(full))
}

// TestAppendUsageBatchOrder: a batch is written in inserts of up to 64
// rows with anonymous parameters; its rows are numbered in batch order
// (ids increase with the position in the batch), also when some are
// skipped because their uid is stored already or repeats within the batch.
func TestAppendUsageBatchOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)
	rows := make([]store.UsageRecord, 700) // 10×64 + 32 + 16 + 8 + 4 rows
	for i := range rows {
		rows[i] = store.UsageRecord{Tenant: "t", Agent: "a", Model: "m", RunID: "r", Step: i + 1, UID: fmt.Sprintf("u%d", i)}
	}
	require.NoError(t, s.AppendUsageBatch(ctx, rows[:300]))
	require.NoError(t, s.AppendUsageBatch(ctx, append(rows, rows[699]))) // 0-299 and the repeat skipped
	got, err := s.write.QueryContext(ctx, `SELECT step FROM usage WHERE tenant = 't' ORDER BY id`)
	require.NoError(t, err)
	defer got.Close()
	var steps []int
	for got.Next() {
		var st int
		require.NoError(t, got.Scan(&st))
		steps = append(steps, st)
	}
	require.NoError(t, got.Err())
	require.Len(t, steps, 700)
	for i, st := range steps {
		require.Equal(t, i+1, st)
	}
}

// migratedAt opens and migrates a store in a file called name.
func migratedAt(t *testing.T, name string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	s := openTest(t, path)
	require.NoError(t, s.Migrate(t.Context()))
	return s, path
}

// wideUsageRows returns n usage rows of about 1 KB each.
func wideUsageRows(n int) []store.UsageRecord {
	rows := make([]store.UsageRecord, n)
	for i := range rows {
		rows[i] = store.UsageRecord{Tenant: "t", Agent: strings.Repeat("a", 1000), Model: "m", RunID: "r", Step: i + 1}
	}
	return rows
}

// TestBackgroundCheckpoint: commits do not checkpoint the WAL (the write
// connection's wal_autocheckpoint is 0); the checkpointer copies it into
// the database file within a few intervals, while the store stays open.
func TestBackgroundCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, path := migratedAt(t, "ckpt.db")
	size := func() int64 {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		return fi.Size()
	}
	before := size()
	rows := wideUsageRows(500)
	for range 8 { // 4 MB in the WAL
		require.NoError(t, s.AppendUsageBatch(ctx, rows))
	}
	require.Eventually(t, func() bool { return size() >= before+4<<20 }, 10*time.Second, 20*time.Millisecond,
		"the WAL's pages reach the database file while the store is open")
}

// TestCheckpointRestartsWAL: under writes that never pause, a checkpoint
// from another connection never catches up, and the WAL would grow by
// everything written; the checkpointer finishes it on the write
// connection once the WAL holds its restart size, and the WAL starts over.
func TestCheckpointRestartsWAL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, path := migratedAt(t, "restart.db")
	// A checkpointer that restarts the WAL past 64 frames (256 KB).
	require.NoError(t, s.ckpt.close())
	ckpt, err := startCheckpointer(ctx, path, s.write, 64)
	require.NoError(t, err)
	s.ckpt = ckpt

	rows := wideUsageRows(100) // about 100 KB a batch
	// About 40 MB of WAL frames over at least 2 s: at most about 5 MB of
	// them in one of the checkpointer's 250 ms intervals.
	const batches = 200
	for range batches {
		require.NoError(t, s.AppendUsageBatch(ctx, rows))
		time.Sleep(10 * time.Millisecond)
	}
	fi, err := os.Stat(path + "-wal")
	require.NoError(t, err)
	require.Less(t, fi.Size(), int64(16<<20), "the WAL started over; it does not hold every frame written")
}
