package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/internal/store/sqlstore"
)

// maxGroup is the most write transactions one SQLite transaction commits
// together, and maxGroupAge the longest a group stays open before the
// transaction that ends it commits (see group): the first member of a
// group waits for the others' writes, so a group is kept short.
const (
	maxGroup    = 16
	maxGroupAge = time.Millisecond
)

// group commits concurrent write transactions together. SQLite has one
// writer, so the store's write transactions run one after the other on its
// one write connection anyway; each used to end in a commit of its own,
// which writes every page it changed to the WAL (two write calls a page),
// the runs table's indexes each a page. Under load, the writers queue.
//
// Here a write transaction is a savepoint of a SQLite transaction that the
// next writer in the queue continues: when one ends (RELEASE, or ROLLBACK TO
// and RELEASE) while another waits to begin, the connection is handed to
// that one without a commit; the last one of the group (no writer waiting,
// maxGroup of them, or the group open for maxGroupAge) commits for all.
//
// Commit returns only when the group is committed, with the commit's error
// if it failed, so a caller that saw its Commit succeed has its writes
// durable exactly as before, and readers see them only then. A transaction
// that rolls back undoes its own savepoint only, and its Rollback too
// returns when the group has ended, so that what it saw of the members
// before it is committed (or reported lost) before its caller reads again.
// Writers still run one at a time, each seeing the writes of those before
// it, in the order they would have committed; if the group's commit fails,
// none of it is written and every member hears of it. Without a writer
// waiting, a transaction commits once it has yielded the processor (see
// end); on an idle processor that is at once. Waiting for the group
// ignores the caller's context: the writes are in it, and the group ends
// within maxGroup transactions.
//
// The write pool's single statements join groups too (groupedWrites);
// River's own statements and transactions wait for the connection as
// before, between two groups.
type group struct {
	// sem is held by the writer whose savepoint is open, and between two
	// of them by the one that hands the transaction on.
	sem     chan struct{}
	waiting atomic.Int32 // writers waiting for sem in begin
	maxAge  time.Duration
	commits atomic.Int64 // groups ended (committed or not), for tests

	// Owned by the holder of sem.
	tx      *sql.Tx
	release func()   // gives the transaction's connection back to the pool
	out     *outcome // the open group's
	members int
	opened  time.Time
}

// outcome is a group's commit: done is closed once err is set.
type outcome struct {
	done chan struct{}
	err  error
}

func newGroup() *group {
	return &group{sem: make(chan struct{}, 1), maxAge: maxGroupAge}
}

// acquire waits for the writer's turn, or for ctx to end.
func (g *group) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case g.sem <- struct{}{}:
		return nil
	default:
	}
	g.waiting.Add(1)
	select {
	case g.sem <- struct{}{}:
		g.waiting.Add(-1)
		return nil
	case <-ctx.Done():
		g.waiting.Add(-1)
		// The writer before this one may have handed the open group to
		// a waiting writer that was this one: end it.
		go g.flush()
		return ctx.Err()
	}
}

// flush commits an open group that nobody continues.
func (g *group) flush() {
	g.sem <- struct{}{}
	if g.tx == nil {
		<-g.sem
		return
	}
	g.end()
}

// end ends the holder's turn: hands the open transaction on to a waiting
// writer, or commits the group. The caller holds sem; end releases it.
//
// Before it commits for want of a waiting writer, it yields the processor
// once (runtime.Gosched): writers that are ready to run but have not yet
// reached begin get there, find sem taken and wait, and the group goes on
// with them. Without it, on a busy processor the holder runs from its
// savepoint to the commit before any other writer is scheduled, and every
// group had one member: at one core's saturation with /v1/chat, 1.02
// members a group against 6 with the yield, the WAL writes of a commit (a
// quarter of the core) shared by all of them. An idle processor returns
// from Gosched at once.
func (g *group) end() {
	if g.waiting.Load() == 0 && g.accepts() {
		runtime.Gosched()
	}
	if g.waiting.Load() > 0 && g.accepts() {
		<-g.sem
		return
	}
	g.finish(g.tx.Commit())
}

// accepts reports whether the group may take another member.
func (g *group) accepts() bool {
	return g.members < maxGroup && time.Since(g.opened) < g.maxAge
}

// finish closes the group with err (the commit's, or why it could not
// commit) and releases sem. A failed group's transaction is rolled back.
func (g *group) finish(err error) {
	if err != nil {
		_ = g.tx.Rollback()
	}
	g.release()
	out := g.out
	g.tx, g.release, g.out, g.members = nil, nil, nil, 0
	g.commits.Add(1)
	out.err = err
	close(out.done)
	<-g.sem
}

// begin opens the caller's transaction: a new one (BEGIN IMMEDIATE), whose
// first writer needs no savepoint (nobody else's writes are in it yet), or
// a savepoint in the open group's. first reports which. preparePending
// runs before a new transaction begins, when the connection is free.
//
// open begins the transaction (it waits for the connection as long as ctx
// lets it; the transaction itself outlives ctx, every member ending it
// explicitly) and returns a func that gives the connection back.
func (g *group) begin(ctx context.Context, open func(ctx context.Context) (*sql.Tx, func(), error), preparePending func(ctx context.Context)) (_ *sql.Tx, _ *outcome, first bool, _ error) {
	if err := g.acquire(ctx); err != nil {
		return nil, nil, false, err
	}
	if g.tx == nil {
		preparePending(ctx)
		tx, release, err := open(ctx)
		if err != nil {
			<-g.sem
			return nil, nil, false, err
		}
		g.tx, g.release, g.out, g.opened, g.members = tx, release, &outcome{done: make(chan struct{})}, time.Now(), 1
		return g.tx, g.out, true, nil
	}
	if _, err := g.tx.ExecContext(context.WithoutCancel(ctx), "SAVEPOINT agentd_tx"); err != nil {
		err = fmt.Errorf("sqlite: savepoint: %w", err)
		g.finish(err)
		return nil, nil, false, err
	}
	g.members++
	return g.tx, g.out, false, nil
}

// groupTx is one writer's transaction: its group's first, or a savepoint
// of it.
type groupTx struct {
	*tx
	g     *group
	out   *outcome
	first bool
	ended bool
}

// Commit releases the savepoint, if any, and waits for the group's
// commit.
func (t *groupTx) Commit(ctx context.Context) error {
	if t.ended {
		return sql.ErrTxDone
	}
	t.ended = true
	if !t.first {
		if _, err := t.tx.tx.ExecContext(context.WithoutCancel(ctx), "RELEASE agentd_tx"); err != nil {
			// The transaction is gone (SQLite rolls a transaction back
			// on some errors): so is every member's work.
			t.g.finish(fmt.Errorf("sqlite: release savepoint: %w", err))
			<-t.out.done
			return fmt.Errorf("sqlite: commit: %w", t.out.err)
		}
	}
	t.g.end()
	<-t.out.done
	if t.out.err != nil {
		return fmt.Errorf("sqlite: commit: %w", t.out.err)
	}
	return nil
}

// Rollback undoes the transaction's writes; the group goes on without
// them. After Commit it does nothing. The first writer of a group is alone
// in it: its transaction is rolled back whole, as before. A later one
// rolls back its savepoint and waits for the group's end; if the group
// failed to commit, Rollback says so: what the transaction read of the
// members before it (a check that failed on their writes) never was.
func (t *groupTx) Rollback(ctx context.Context) error {
	if t.ended {
		return nil
	}
	t.ended = true
	if t.first {
		err := t.tx.tx.Rollback()
		t.g.finish(nil) // rolled back already; nobody else is in it
		return err
	}
	ctx = context.WithoutCancel(ctx)
	_, err := t.tx.tx.ExecContext(ctx, "ROLLBACK TO agentd_tx")
	if err == nil {
		_, err = t.tx.tx.ExecContext(ctx, "RELEASE agentd_tx")
	}
	if err != nil {
		t.g.finish(fmt.Errorf("sqlite: roll back savepoint: %w", err))
		return err
	}
	// What this transaction saw (the writes of the group's members
	// before it) is committed, or known not to be, when it returns: a
	// caller that rolls back after a check failed and then reads on the
	// read pool (ClaimRun's "claimed by whom?") must not read older
	// rows than the check saw.
	t.g.end()
	<-t.out.done
	if t.out.err != nil {
		return fmt.Errorf("sqlite: the writes this transaction saw were not committed: %w", t.out.err)
	}
	return nil
}

var _ sqlstore.Tx = (*groupTx)(nil)

// groupedWrites runs the single statements of the write pool (a claim, a
// lease renewal, a run's update) as write transactions of their own, so
// that they join a group too instead of each committing alone. Query,
// whose rows are read after it returns, runs on the pool as before. The
// store's breaker guards it from outside (guard.Querier), so its
// transactions begin unguarded: a statement counts once.
type groupedWrites struct {
	pool
	s *Store
}

func (w groupedWrites) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	t, err := w.s.beginTx(ctx, false)
	if err != nil {
		return 0, err
	}
	n, err := t.Exec(ctx, query, args...)
	if err != nil {
		return 0, rolledBack(ctx, t, err)
	}
	return n, t.Commit(ctx)
}

// rolledBack rolls t back after its statement failed with err and returns
// err, or the group's failure if what the statement saw was not committed.
func rolledBack(ctx context.Context, t sqlstore.Tx, err error) error {
	if rerr := t.Rollback(ctx); rerr != nil {
		return rerr
	}
	return err
}

// QueryRow runs the statement when its row is scanned.
func (w groupedWrites) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return groupedRow{w: w, ctx: ctx, query: query, args: args}
}

type groupedRow struct {
	w     groupedWrites
	ctx   context.Context
	query string
	args  []any
}

func (r groupedRow) Scan(dest ...any) error {
	t, err := r.w.s.beginTx(r.ctx, false)
	if err != nil {
		return err
	}
	if err := t.QueryRow(r.ctx, r.query, r.args...).Scan(dest...); err != nil {
		return rolledBack(r.ctx, t, err)
	}
	return t.Commit(r.ctx)
}
