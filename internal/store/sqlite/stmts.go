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
