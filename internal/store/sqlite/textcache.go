package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"sync"
)

// textCacheSize is the most statements one connection keeps prepared for
// query texts (textCacheConn). River's SQLite driver runs about thirty
// distinct texts; a full cache is emptied (its idle statements closed)
// and fills again, so query texts that vary per call cost no more than
// they did uncached.
const textCacheSize = 128

// textCacheConnector opens connections that keep a prepared statement
// per query text run on them as text (textCacheConn). The write pool
// uses it: River's SQLite driver (riversqlite) sends every query as text
// through database/sql, and modernc.org/sqlite parses and plans a text
// query at each call and finalizes it after (conn.exec, conn.query).
// River's job insert, fetch and completion run on the one write
// connection, so their parsing (about 0.9 ms of that connection's time
// per run at 200 runs/s, CPU profile of BenchmarkManagedTurnLatency) was
// time every other writer queued behind.
type textCacheConnector struct{ driver.Connector }

func (c textCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newTextCacheConn(cn)
}

// inner is what textCacheConn needs of modernc.org/sqlite's connection
// (*sqlite.conn implements all of it).
type inner interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

// textCacheConn is a connection whose ExecContext and QueryContext run a
// query text on a statement prepared for it on first use and kept (at
// most textCacheSize). A statement in use by open rows is not shared: a
// second query of the same text meanwhile (a query run while iterating
// another's rows) runs uncached. database/sql uses a connection from one
// goroutine at a time (holding its driverConn lock), rows' Close included;
// mu makes the cache safe regardless.
type textCacheConn struct {
	inner
	mu       sync.Mutex
	stmts    map[string]*textStmt
	prepares int // statements prepared for the cache, for tests
}

type textStmt struct {
	st interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	}
	busy bool // open rows read from it
}

func newTextCacheConn(cn driver.Conn) (driver.Conn, error) {
	in, ok := cn.(inner)
	if !ok {
		_ = cn.Close()
		return nil, errors.New("sqlite: the driver's connection lacks a method the statement cache needs")
	}
	return &textCacheConn{inner: in, stmts: map[string]*textStmt{}}, nil
}

// take returns the cached statement for query, marked busy, preparing it
// if needed; nil (and no error) when it is busy or the driver's statement
// cannot run with a context: the caller runs the text uncached.
func (c *textCacheConn) take(ctx context.Context, query string) (*textStmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts, ok := c.stmts[query]; ok {
		if ts.busy {
			return nil, nil
		}
		ts.busy = true
		return ts, nil
	}
	if len(c.stmts) >= textCacheSize {
		for q, ts := range c.stmts {
			if !ts.busy {
				_ = ts.st.Close()
				delete(c.stmts, q)
			}
		}
	}
	st, err := c.inner.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	ts := &textStmt{}
	var ok bool
	if ts.st, ok = st.(interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	}); !ok {
		_ = st.Close()
		return nil, nil
	}
	c.prepares++
	ts.busy = true
	c.stmts[query] = ts
	return ts, nil
}

// Unwrap is the driver's connection (what sqlite.Limit and the like look
// for behind a wrapper).
func (c *textCacheConn) Unwrap() driver.Conn { return c.inner }

func (c *textCacheConn) release(ts *textStmt) {
	c.mu.Lock()
	ts.busy = false
	c.mu.Unlock()
}

func (c *textCacheConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ts, err := c.take(ctx, query)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		return c.inner.ExecContext(ctx, query, args)
	}
	defer c.release(ts)
	return ts.st.ExecContext(ctx, args)
}

func (c *textCacheConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	ts, err := c.take(ctx, query)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		return c.inner.QueryContext(ctx, query, args)
	}
	r, err := ts.st.QueryContext(ctx, args)
	if err != nil {
		c.release(ts)
		return nil, err
	}
	return &textRows{Rows: r, release: func() { c.release(ts) }}, nil
}

// Close closes the cached statements, then the connection.
func (c *textCacheConn) Close() error {
	c.mu.Lock()
	var errs []error
	for q, ts := range c.stmts {
		errs = append(errs, ts.st.Close())
		delete(c.stmts, q)
	}
	c.mu.Unlock()
	return errors.Join(append(errs, c.inner.Close())...)
}

// textRows gives its statement back to the cache when closed (the driver
// resets it then). It passes on the column type methods of the driver's
// rows.
type textRows struct {
	driver.Rows
	release func()
	closed  bool
}

func (r *textRows) Close() error {
	err := r.Rows.Close()
	if !r.closed {
		r.closed = true
		r.release()
	}
	return err
}

func (r *textRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *textRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *textRows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *textRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *textRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
