// Package pgtest gives tests their own PostgreSQL schema in the database
// named by AGENTD_TEST_POSTGRES_URL, so that tests run in parallel without
// seeing each other's rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable with the test database's URL.
const EnvURL = "AGENTD_TEST_POSTGRES_URL"

// BaseURL returns the test database's URL, skipping the test when it is not
// set (CI sets it, so there the tests run).
func BaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		t.Skipf("%s is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", EnvURL)
	}
	tally(t)
	return u
}

// Schema creates an empty schema in the database at base, drops it when the
// test ends, and returns base with search_path set to it and the pool size
// set to poolMaxConns (0: pgx's default).
func Schema(t testing.TB, base string, poolMaxConns int) string {
	t.Helper()
	tally(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "agentd_test_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvURL, err)
	}
	q := u.Query()
	q.Set("search_path", name)
	if poolMaxConns > 0 {
		q.Set("pool_max_conns", strconv.Itoa(poolMaxConns))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ForEachBackend runs fn as parallel subtests "sqlite" and "postgres"; the
// PostgreSQL one skips when EnvURL is not set.
func ForEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			if backend == "postgres" {
				BaseURL(t)
			}
			fn(t, backend)
		})
	}
}
