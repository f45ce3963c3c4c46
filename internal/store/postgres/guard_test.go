package postgres

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/store"
)

// unavailable tells PostgreSQL being down from PostgreSQL answering, on
// real errors: a closed port versus an SQL error and a missing row.
func TestUnavailableClassifiesRealErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pgx.Connect(ctx, "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=5")
	require.Error(t, err)
	require.True(t, unavailable(err), "closed port: %v", err)

	conn, err := pgx.Connect(ctx, baseURL(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELEC 1")
	require.Error(t, err)
	require.False(t, unavailable(err), "an SQL error is PostgreSQL answering: %v", err)
	err = conn.QueryRow(ctx, "SELECT 1 WHERE false").Scan(new(int))
	require.False(t, unavailable(err), "no rows: %v", err)
}

// A guarded store on a live database: answers, "not found" included,
// keep the breaker closed.
func TestGuardedStoreAnswersKeepBreakerClosed(t *testing.T) {
	t.Parallel()
	b := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 1}}).Get(breaker.Store)
	s, err := OpenGuarded(t.Context(), newSchema(t), b)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(t.Context()))
	for range 3 {
		_, err := s.GetRun(t.Context(), "t", "run_missing")
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	require.Equal(t, breaker.StateClosed, b.State())
}
