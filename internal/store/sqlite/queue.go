package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlstore"
)

// WriteDB returns the single-connection write pool, for River's SQLite
// driver: River wants one connection on SQLite (to avoid SQLITE_BUSY), and
// sharing the store's lets a run row and its queue job be inserted in one
// transaction (store.TxRuns: CreateRunTx hands fn a *sql.Tx of this pool).
func (s *Store) WriteDB() *sql.DB { return s.write }

// ReclaimBatch is the most runs one ReclaimExpiredRuns call reclaims.
const ReclaimBatch = sqlstore.ReclaimBatch

// CreateRunTx inserts r like CreateRun and then, when fn is not nil, calls
// fn with the transaction, a *sql.Tx on the write connection; if fn fails,
// nothing is written and its error is returned wrapped (as is, not mapped
// to the store's sentinels). fn must do all its work on that *sql.Tx: the
// Store's write pool has one connection, which the transaction holds, so
// calling the Store from fn deadlocks.
func (s *Store) CreateRunTx(ctx context.Context, r store.Run, fn store.TxFunc[*sql.Tx]) error {
	if fn == nil {
		return sqlstore.CreateRunTx(ctx, s.Store, s.begin, r, nil)
	}
	return sqlstore.CreateRunTx(ctx, s.Store, s.begin, r, func(ctx context.Context, tx *sql.Tx) error {
		ctx, err := stmtContext(ctx)
		if err != nil {
			return err
		}
		return fn(ctx, tx)
	})
}

// ReclaimExpiredRuns clears the lease of up to ReclaimBatch running runs
// whose lease expired before now and calls fn for each, in one write
// transaction: fn gets its *sql.Tx (to enqueue the run again). If fn fails,
// nothing is written and its error is returned wrapped. fn must do all its
// work on that *sql.Tx and never call the Store (the write pool's only
// connection is the transaction's: that would deadlock). Reclaimers in
// several Stores or processes serialize on SQLite's write lock, so each
// expired run is reclaimed once.
func (s *Store) ReclaimExpiredRuns(ctx context.Context, t time.Time, fn store.ReclaimFunc[*sql.Tx]) (int, error) {
	return sqlstore.ReclaimExpiredRuns(ctx, s.Store, s.begin, t, uninterrupted(fn))
}

// DecideApprovalTx records a decision and, when it was the run's last
// pending call, queues the run and calls fn with the write transaction (to
// enqueue it); see store.ApprovalsTx. fn must not call the Store (see
// CreateRunTx).
func (s *Store) DecideApprovalTx(ctx context.Context, p store.DecideApprovalParams, fn store.ReclaimFunc[*sql.Tx]) (store.Approval, store.Run, error) {
	return sqlstore.DecideApprovalTx(ctx, s.Store, s.begin, p, uninterrupted(fn))
}

// uninterrupted runs fn (River's inserts, in the store's transaction) with
// ctx's values but not its cancellation, once ctx is checked (stmtContext).
// The driver interrupts a statement whose context ends, and SQLite rolls
// back the whole transaction when a write inside one is interrupted: that
// transaction also holds the writes of the group before it (group.go),
// whose callers would see their commit fail for another caller's
// cancellation.
func uninterrupted(fn store.ReclaimFunc[*sql.Tx]) store.ReclaimFunc[*sql.Tx] {
	if fn == nil {
		return nil
	}
	return func(ctx context.Context, tx *sql.Tx, r store.Run) error {
		ctx, err := stmtContext(ctx)
		if err != nil {
			return err
		}
		return fn(ctx, tx, r)
	}
}
