package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"
)

// openTextCache opens a one-connection pool through textCacheConnector
// on a new file with a table t(k, v).
func openTextCache(t *testing.T) *sql.DB {
	t.Helper()
	c, err := sqlite.NewConnector(dsn(filepath.Join(t.TempDir(), "c.db"), "_pragma=journal_mode(WAL)", "_txlock=immediate"))
	require.NoError(t, err)
	db := sql.OpenDB(textCacheConnector{c})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	_, err = db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`)
	require.NoError(t, err)
	return db
}

// cacheOf is the pool's one connection's cache: its prepares and size.
func cacheOf(t *testing.T, db *sql.DB) (prepares, size int) {
	t.Helper()
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Raw(func(dc any) error {
		c := dc.(*textCacheConn)
		c.mu.Lock()
		defer c.mu.Unlock()
		prepares, size = c.prepares, len(c.stmts)
		return nil
	}))
	return prepares, size
}

func TestTextCachePreparesATextOnce(t *testing.T) {
	db := openTextCache(t)
	ctx := context.Background()
	p0, _ := cacheOf(t, db)
	for i := range 50 {
		_, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, i, fmt.Sprint("v", i))
		require.NoError(t, err)
		var v string
		require.NoError(t, db.QueryRowContext(ctx, `SELECT v FROM t WHERE k = $1`, i).Scan(&v))
		require.Equal(t, fmt.Sprint("v", i), v)
	}
	p1, _ := cacheOf(t, db)
	require.Equal(t, 2, p1-p0, "one prepare for each of the two texts")

	// A statement error leaves the cached statement usable.
	_, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, 1, "dup")
	require.ErrorContains(t, err, "UNIQUE")
	_, err = db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, 1000, "after")
	require.NoError(t, err)
	p2, _ := cacheOf(t, db)
	require.Equal(t, p1, p2)
}

// A query run while rows of the same text are open (in one transaction,
// on the one connection) runs uncached and both read what they should.
func TestTextCacheSameTextWhileRowsOpen(t *testing.T) {
	db := openTextCache(t)
	ctx := context.Background()
	for i := range 5 {
		_, err := db.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, i, fmt.Sprint("v", i))
		require.NoError(t, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer tx.Rollback()
	const q = `SELECT k, v FROM t WHERE k >= $1 ORDER BY k`
	outer, err := tx.QueryContext(ctx, q, 0)
	require.NoError(t, err)
	var got []string
	for outer.Next() {
		var k int
		var v string
		require.NoError(t, outer.Scan(&k, &v))
		inner, err := tx.QueryContext(ctx, q, k)
		require.NoError(t, err)
		n := 0
		for inner.Next() {
			n++
		}
		require.NoError(t, inner.Err())
		require.NoError(t, inner.Close())
		require.Equal(t, 5-k, n, "rows from k=%d", k)
		got = append(got, v)
	}
	require.NoError(t, outer.Err())
	require.NoError(t, outer.Close())
	require.Equal(t, []string{"v0", "v1", "v2", "v3", "v4"}, got)
	require.NoError(t, tx.Commit())

	// Closed, the cached statement serves the next query.
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE k >= $1`, 2).Scan(&n))
	require.Equal(t, 3, n)
}

// More distinct texts than the cache holds: it never grows past its size
// and every query still answers.
func TestTextCacheBounded(t *testing.T) {
	db := openTextCache(t)
	ctx := context.Background()
	for i := range textCacheSize + 40 {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, fmt.Sprintf(`SELECT %d + $1`, i), 1).Scan(&n))
		require.Equal(t, i+1, n)
		_, size := cacheOf(t, db)
		require.LessOrEqual(t, size, textCacheSize)
	}
}
