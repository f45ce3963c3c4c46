package postgres

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/sqlstore"
)

// countBegins counts the BEGINs a pool's connections send as statements
// of their own (not in a batch).
type countBegins struct{ alone atomic.Int64 }

func (c *countBegins) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if d.SQL == "begin" {
		c.alone.Add(1)
	}
	return ctx
}

func (c *countBegins) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// lazyStore is a store on a fresh schema whose pool counts lone BEGINs,
// with a table t (n int primary key).
func lazyStore(t *testing.T) (*Store, *countBegins) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(newSchema(t))
	require.NoError(t, err)
	tr := &countBegins{}
	cfg.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(t.Context(), `CREATE TABLE t (n int PRIMARY KEY)`)
	require.NoError(t, err)
	return &Store{pool: pool}, tr
}

func countRows(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	require.NoError(t, s.pool.QueryRow(t.Context(), `SELECT count(*) FROM t`).Scan(&n))
	return n
}

func insertBatch(ns ...int) *sqlstore.Batch {
	b := &sqlstore.Batch{}
	for _, n := range ns {
		b.Queue(`INSERT INTO t (n) VALUES ($1)`, n)
	}
	return b
}

// A transaction that begins with a batch sends its BEGIN in the batch; it
// is one transaction all the same: invisible until committed, undone by a
// rollback.
func TestLazyTxBatchFirst(t *testing.T) {
	s, tr := lazyStore(t)
	ctx := t.Context()

	tx, err := s.beginLazy(ctx)
	require.NoError(t, err)
	br := tx.SendBatch(ctx, insertBatch(1, 2))
	for range 2 {
		n, err := br.Exec()
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	}
	require.NoError(t, br.Close())
	require.Zero(t, countRows(t, s), "not committed yet")
	n, err := tx.Exec(ctx, `INSERT INTO t (n) VALUES (3)`)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 3, countRows(t, s))
	require.NoError(t, tx.Rollback(ctx), "rollback after commit is a no-op")
	require.ErrorIs(t, tx.Commit(ctx), errTxEnded)

	tx, err = s.beginLazy(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.SendBatch(ctx, insertBatch(4)).Close())
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 3, countRows(t, s), "rolled back")
	require.Zero(t, tr.alone.Load(), "every BEGIN went in a batch")
	require.Equal(t, int32(0), s.pool.Stat().AcquiredConns(), "connections returned")
}

// A transaction that begins with a single statement sends BEGIN before
// it; one that ends before any statement sends nothing.
func TestLazyTxStatementFirst(t *testing.T) {
	s, tr := lazyStore(t)
	ctx := t.Context()

	tx, err := s.beginLazy(ctx)
	require.NoError(t, err)
	var one int
	require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one))
	require.Equal(t, int64(1), tr.alone.Load())
	br := tx.SendBatch(ctx, insertBatch(1))
	require.NoError(t, br.Close())
	require.NoError(t, tx.Script(ctx, `INSERT INTO t (n) VALUES (2); INSERT INTO t (n) VALUES (3)`))
	rows, err := tx.Query(ctx, `SELECT n FROM t ORDER BY n`)
	require.NoError(t, err)
	var got []int
	for rows.Next() {
		var n int
		require.NoError(t, rows.Scan(&n))
		got = append(got, n)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{1, 2, 3}, got, "the transaction sees its own rows")
	require.Equal(t, int64(1), tr.alone.Load(), "one BEGIN")
	require.NoError(t, tx.Rollback(ctx))
	require.Zero(t, countRows(t, s))

	tx, err = s.beginLazy(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, int64(1), tr.alone.Load(), "nothing sent")
	require.Equal(t, int32(0), s.pool.Stat().AcquiredConns())
}

// A failed statement fails the transaction: COMMIT then rolls back and
// says so, as pgx.Tx's Commit does, and the connection goes back clean.
func TestLazyTxFailedCommit(t *testing.T) {
	s, _ := lazyStore(t)
	ctx := t.Context()
	tx, err := s.beginLazy(ctx)
	require.NoError(t, err)
	br := tx.SendBatch(ctx, insertBatch(1, 1, 2))
	_, err = br.Exec()
	require.NoError(t, err)
	_, err = br.Exec()
	require.Error(t, err, "duplicate key")
	_ = br.Close()
	require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxCommitRollback)
	require.Zero(t, countRows(t, s))
	require.Equal(t, int32(0), s.pool.Stat().AcquiredConns())

	// A statement refused after the BEGIN (its context ended): the
	// rollback ends the transaction, and the connection goes back idle.
	tx, err = s.beginLazy(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.SendBatch(ctx, insertBatch(5)).Close())
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = tx.Exec(cctx, `INSERT INTO t (n) VALUES (6)`)
	require.Error(t, err)
	require.NoError(t, tx.Rollback(ctx))
	require.Zero(t, countRows(t, s))
	require.Equal(t, int32(0), s.pool.Stat().AcquiredConns())
	require.Equal(t, 0, countRows(t, s), "the pool's connections are usable")
}

// A BEGIN that fails (the connection is gone) fails the batch, and the
// transaction's Commit reports it instead of a success.
func TestLazyTxBeginFails(t *testing.T) {
	s, _ := lazyStore(t)
	ctx := t.Context()
	tx, err := s.beginLazy(ctx)
	require.NoError(t, err)
	pid := tx.(*lazyTx).conn.Conn().PgConn().PID()
	var killed bool
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed))
	require.True(t, killed)
	br := tx.SendBatch(ctx, insertBatch(1))
	_, err = br.Exec()
	require.Error(t, err)
	require.Error(t, br.Close())
	require.Error(t, tx.Commit(ctx), "nothing was committed")
	require.Zero(t, countRows(t, s))
}
