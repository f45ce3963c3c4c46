package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps one *sql.Stmt per query text on a pool, prepared on first
// use (the tables may not exist before Migrate). database/sql prepares it
// again on every pool connection it runs on and keeps those, so SQLite parses
// and plans each hot query once per connection instead of once per call;
// Tx.StmtContext reuses the connection's prepared statement too.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m[query] = st
	return st, nil
}

// getAll returns the statements for queries, in order.
//
// Call it before BeginTx, never inside a transaction: preparing takes a
// connection from the pool, and the write pool's only connection is the
// transaction's, so that would deadlock. Inside the transaction bind them
// with tx.StmtContext, which reuses the statement prepared on the
// transaction's connection.
func (c *stmtCache) getAll(ctx context.Context, queries ...string) ([]*sql.Stmt, error) {
	sts := make([]*sql.Stmt, len(queries))
	for i, q := range queries {
		st, err := c.get(ctx, q)
		if err != nil {
			return nil, err
		}
		sts[i] = st
	}
	return sts, nil
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}

// exec runs a write outside a transaction through the statement cache:
// SQLite parses each hot query once per connection, not per call.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := s.wstmt.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// queryRow runs a read through the statement cache of the read pool. A
// failed prepare surfaces from Scan.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	st, err := s.rstmt.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

type rowScanner interface{ Scan(dest ...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
