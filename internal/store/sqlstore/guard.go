package sqlstore

import (
	"context"
	"errors"

	"github.com/agentd/agentd/internal/breaker"
)

// Guard puts the store's circuit breaker in front of a backend's
// connections: every statement outside a transaction and every Begin asks
// the breaker first, so while it is open a store call fails at once with
// a *breaker.OpenError (no pool wait, no connect timeout) and the API
// answers 503 store_unavailable. It sits at the one place every query
// passes (the backend's Querier and Begin), so no store method is listed.
// The zero Guard (nil Breaker) lets everything through.
//
// Failures are what Unavailable (the backend's) says of an error, and a
// deadline that ran out waiting for the database; successes are every
// answer, also "no rows", a constraint violation or an SQL error; a call
// its caller cancelled counts as nothing.
type Guard struct {
	Breaker *breaker.Breaker
	// Unavailable reports an error that says the database cannot be
	// reached or used (connection refused or lost, I/O error).
	Unavailable func(err error) bool
}

// ErrNotUsed is the outcome to give done (Allow) for a call that never
// reached the database (a transaction ended before its first statement):
// the breaker counts it as nothing.
var ErrNotUsed = errors.New("sqlstore: nothing was sent to the database")

// Allow asks the breaker; done records the call's outcome under ctx.
func (g Guard) Allow() (done func(ctx context.Context, err error), err error) {
	d, err := g.Breaker.Allow()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, err error) { d(g.outcome(ctx, err)) }, nil
}

func (g Guard) outcome(ctx context.Context, err error) breaker.Outcome {
	switch {
	case err == nil:
		return breaker.Success
	case errors.Is(err, ErrNotUsed):
		return breaker.Ignore
	case errors.Is(err, context.DeadlineExceeded):
		return breaker.Failure // the database did not answer in time
	case ctx.Err() != nil:
		return breaker.Ignore // the caller gave up
	case g.Unavailable != nil && g.Unavailable(err):
		return breaker.Failure
	}
	return breaker.Success // the database answered (an error of the query)
}

// Do runs fn, a call to the database, through the breaker.
func (g Guard) Do(ctx context.Context, fn func() error) error {
	done, err := g.Allow()
	if err != nil {
		return err
	}
	err = fn()
	done(ctx, err)
	return err
}

// Querier returns q with each statement through the breaker (q itself
// when there is no breaker).
func (g Guard) Querier(q Querier) Querier {
	if g.Breaker == nil {
		return q
	}
	return guardedQuerier{q: q, g: g}
}

type guardedQuerier struct {
	q Querier
	g Guard
}

func (q guardedQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	done, err := q.g.Allow()
	if err != nil {
		return 0, err
	}
	n, err := q.q.Exec(ctx, query, args...)
	done(ctx, err)
	return n, err
}

func (q guardedQuerier) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	done, err := q.g.Allow()
	if err != nil {
		return nil, err
	}
	rows, err := q.q.Query(ctx, query, args...)
	done(ctx, err)
	return rows, err
}

func (q guardedQuerier) QueryRow(ctx context.Context, query string, args ...any) Row {
	done, err := q.g.Allow()
	if err != nil {
		return errRow{err}
	}
	return &guardedRow{row: q.q.QueryRow(ctx, query, args...), ctx: ctx, done: done}
}

// guardedRow records the outcome when it is scanned (where QueryRow
// reports its error).
type guardedRow struct {
	row  Row
	ctx  context.Context
	done func(context.Context, error)
}

func (r *guardedRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if r.done != nil {
		r.done(r.ctx, err)
		r.done = nil
	}
	return err
}

// ErrRow returns a Row whose Scan fails with err: what a backend's
// QueryRow returns when the statement could not be sent.
func ErrRow(err error) Row { return errRow{err} }

// errRow is a Row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
