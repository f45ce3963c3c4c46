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
//
// A statement is never prepared inside a transaction of the write pool: that
// takes a connection, and the pool's only one is the transaction's, so it
// would deadlock. A query a transaction finds unprepared (lookup) runs
// unprepared once and is prepared before the next transaction begins
// (preparePending). The mutex is never held while preparing.
type stmtCache struct {
	db      *sql.DB
	mu      sync.RWMutex
	m       map[string]*sql.Stmt
	pending map[string]struct{}
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, pending: map[string]struct{}{}}
}

// get returns the statement for query, preparing it on a pool connection
// if needed. Never call it inside a transaction of the write pool.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.RLock()
	st, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok { // prepared meanwhile
		_ = st.Close()
		return prev, nil
	}
	c.m[query] = st
	delete(c.pending, query)
	return st, nil
}

// lookup returns the statement for query if it is prepared; else nil, and
// the query is prepared before the next transaction (preparePending).
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.RLock()
	st, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return st
	}
	c.mu.Lock()
	c.pending[query] = struct{}{}
	c.mu.Unlock()
	return nil
}

// preparePending prepares the queries lookup missed. Call it before
// BeginTx. A query that fails to prepare is dropped (it runs unprepared and
// is tried again after its next miss).
func (c *stmtCache) preparePending(ctx context.Context) {
	c.mu.RLock()
	n := len(c.pending)
	c.mu.RUnlock()
	if n == 0 {
		return
	}
	c.mu.Lock()
	queries := make([]string, 0, len(c.pending))
	for q := range c.pending {
		queries = append(queries, q)
	}
	clear(c.pending)
	c.mu.Unlock()
	for _, q := range queries {
		_, _ = c.get(ctx, q)
	}
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
