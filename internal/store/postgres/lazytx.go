package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentd/agentd/internal/store/sqlstore"
)

// lazyTx is the store's own transaction (sqlstore.DB.Begin): its BEGIN is
// sent with its first statement instead of in a round trip of its own.
// Most of the store's transactions are one batch and a COMMIT (a run's
// step, its turn), so they take two round trips instead of three. A batch
// carries the BEGIN as its first statement, in the same pipeline; any
// other first statement is preceded by it. Transactions that hand a
// pgx.Tx to River (Store.begin) are pgx's own.
//
// Nothing is sent until the first statement; a transaction ended before
// one only returns its connection. The breaker (sqlstore.Guard) judges the
// BEGIN's outcome, as it judged pgx's Begin (a transaction that sent
// nothing counts as nothing). Not safe for concurrent use, as no
// transaction is.
type lazyTx struct {
	conn *pgxpool.Conn
	// judge reports the BEGIN's outcome to the breaker; nil once it has.
	judge func(ctx context.Context, err error)
	begun bool  // BEGIN sent and answered
	err   error // the BEGIN's error, if it failed: Commit returns it
	ended bool  // committed or rolled back: the connection is released
}

// beginLazy starts a lazyTx on a connection of the pool.
func (s *Store) beginLazy(ctx context.Context) (sqlstore.Tx, error) {
	judge, err := s.guard.Allow()
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		judge(ctx, err)
		return nil, err
	}
	return &lazyTx{conn: conn, judge: judge}, nil
}

// judged reports the BEGIN's outcome, once.
func (t *lazyTx) judged(ctx context.Context, err error) {
	if t.judge != nil {
		t.judge(ctx, err)
		t.judge = nil
	}
}

var errTxEnded = errors.New("postgres: transaction already ended")

// begin sends the BEGIN on its own, for a first statement that is not a
// batch.
func (t *lazyTx) begin(ctx context.Context) error {
	if t.ended {
		return errTxEnded
	}
	if t.begun {
		return nil
	}
	if t.err != nil {
		return t.err
	}
	_, err := t.conn.Exec(ctx, "begin")
	t.judged(ctx, err)
	if err != nil {
		t.err = err
		return err
	}
	t.begun = true
	return nil
}

// q runs statements on the transaction's connection (the pool's
// adapter, querier).
func (t *lazyTx) q() querier[*pgxpool.Conn] { return querier[*pgxpool.Conn]{t.conn} }

func (t *lazyTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := t.begin(ctx); err != nil {
		return 0, err
	}
	return t.q().Exec(ctx, query, args...)
}

func (t *lazyTx) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	return t.q().Query(ctx, query, args...)
}

func (t *lazyTx) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	if err := t.begin(ctx); err != nil {
		return sqlstore.ErrRow(err)
	}
	return t.q().QueryRow(ctx, query, args...)
}

// Script runs sql without arguments with the simple protocol, which
// allows several statements.
func (t *lazyTx) Script(ctx context.Context, sql string) error {
	if err := t.begin(ctx); err != nil {
		return err
	}
	_, err := t.conn.Exec(ctx, sql) // no arguments: pgx's simple protocol
	return err
}

// SendBatch sends the statements in one round trip, the BEGIN first if it
// was not sent yet.
func (t *lazyTx) SendBatch(ctx context.Context, b *sqlstore.Batch) sqlstore.BatchResults {
	if t.ended {
		return errBatch{errTxEnded}
	}
	if t.err != nil {
		return errBatch{t.err}
	}
	pb := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.Queries)+1)}
	first := !t.begun
	if first {
		pb.Queue("begin")
	}
	for _, q := range b.Queries {
		pb.Queue(q.SQL, q.Args...)
	}
	br := t.conn.SendBatch(ctx, pb)
	if first {
		_, err := br.Exec()
		t.judged(ctx, err)
		if err != nil {
			_ = br.Close()
			t.err = err
			return errBatch{err}
		}
		t.begun = true
	}
	return batchResults{br}
}

// Commit commits, or returns pgx.ErrTxCommitRollback if the transaction
// had failed (PostgreSQL then rolls back), as pgx.Tx does.
func (t *lazyTx) Commit(ctx context.Context) error {
	if t.ended {
		return errTxEnded
	}
	if !t.begun {
		t.judged(ctx, sqlstore.ErrNotUsed)
		t.release()
		return t.err // nil, unless the BEGIN failed
	}
	tag, err := t.conn.Exec(ctx, "commit")
	t.release()
	if err != nil {
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback after Commit is a no-op. A connection whose ROLLBACK failed is
// closed by the pool (it is not idle when released).
func (t *lazyTx) Rollback(ctx context.Context) error {
	if t.ended {
		return nil
	}
	var err error
	if t.begun {
		_, err = t.conn.Exec(ctx, "rollback")
	} else {
		t.judged(ctx, sqlstore.ErrNotUsed)
	}
	t.release()
	return err
}

func (t *lazyTx) release() {
	t.ended = true
	t.conn.Release()
}

type errBatch struct{ err error }

func (r errBatch) Exec() (int64, error)   { return 0, r.err }
func (r errBatch) QueryRow() sqlstore.Row { return sqlstore.ErrRow(r.err) }
func (r errBatch) Close() error           { return r.err }
