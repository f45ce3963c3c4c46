package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	// The backends register how their errors are classified.
	_ "github.com/agentd/agentd/internal/store/postgres"
	_ "github.com/agentd/agentd/internal/store/sqlite"
	_ "modernc.org/sqlite"
)

// A store that cannot be reached is a 503 with Retry-After, not a 500:
// the error of a real failed connection (a closed port), wrapped as the
// run service wraps it, and a server-side shutdown (57P01).
func TestStoreDownIs503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, cerr := pgconn.Connect(ctx, "postgres://postgres@"+addr+"/db?sslmode=disable&connect_timeout=2")
	require.Error(t, cerr)

	for name, err := range map[string]error{
		"refused":        fmt.Errorf("look up idempotency key: postgres: get run: %w", cerr),
		"admin shutdown": fmt.Errorf("postgres: insert run: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}),
		"cut mid-answer": fmt.Errorf("look up idempotency key: postgres: get run: %w", io.ErrUnexpectedEOF),
	} {
		he := toHTTP(err)
		require.Equal(t, http.StatusServiceUnavailable, he.Status, name)
		require.Equal(t, "store_unavailable", he.Type, name)
		require.Equal(t, 1, he.RetryAfter, name)
	}
	// A query error is still the server's fault.
	he := toHTTP(fmt.Errorf("postgres: %w", &pgconn.PgError{Code: "42P01"}))
	require.Equal(t, http.StatusInternalServerError, he.Status)
	require.Equal(t, http.StatusInternalServerError, toHTTP(errors.New("boom")).Status)
	// The model provider's network is not the store's.
	up := toHTTP(&llm.Error{Type: "connection_error", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}})
	require.NotEqual(t, "store_unavailable", up.Type)
}

// SQLite's "database or disk is full", from a real database capped with
// max_page_count, is a 507 store_full, not a 500.
func TestStoreFullIs507(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "full.db"))
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec("PRAGMA max_page_count = 8; CREATE TABLE t (b BLOB)")
	require.NoError(t, err)
	var full error
	for range 100 {
		if _, full = db.Exec("INSERT INTO t VALUES (randomblob(4096))"); full != nil {
			break
		}
	}
	require.Error(t, full)
	he := toHTTP(fmt.Errorf("append messages: sqlite: append: %w", full))
	require.Equal(t, http.StatusInsufficientStorage, he.Status, "%v", full)
	require.Equal(t, "store_full", he.Type)
}
