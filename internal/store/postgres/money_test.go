package postgres

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/migrations"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// TestMigrationToNanosRoundsExistingAmounts: 0010_money_nanos turns the
// double precision dollar columns of a store written before it into bigint
// nano-dollars, rounded (float noise such as 0.0018180000000000002 goes).
func TestMigrationToNanosRoundsExistingAmounts(t *testing.T) {
	ctx := t.Context()
	ms, err := migrations.For(migrations.Postgres)
	require.NoError(t, err)
	db, err := pgxpool.New(ctx, pgtest.Schema(t, pgtest.BaseURL(t), 2))
	require.NoError(t, err)
	t.Cleanup(db.Close)
	exec := func(q string) {
		t.Helper()
		_, err := db.Exec(ctx, q)
		require.NoError(t, err)
	}
	i := 0
	for ; ms[i].Name != "money_nanos"; i++ {
		exec(ms[i].SQL)
	}
	exec(`INSERT INTO usage (created_at, tenant, agent, model, run_id, cost_usd) VALUES
		(now(), 't', 'a', 'm', 'r', 0.0018180000000000002), (now(), 't', 'a', 'm', 'r', 0.000303)`)
	exec(`INSERT INTO budget_counters (scope, subject, period, limit_usd, spent_usd, expires_at)
		VALUES ('tenant', 't', 'd:2026-12-01', 0.303, 0.30299999999999805, now())`)
	exec(`INSERT INTO budget_reservations (reservation_id, scope, subject, period, amount_usd, expires_at)
		VALUES ('r', 'tenant', 't', 'd:2026-12-01', 0.1, now())`)
	exec(ms[i].SQL)

	var sum, limit, spent, amount int64
	require.NoError(t, db.QueryRow(ctx, `SELECT SUM(cost_nanos)::bigint FROM usage`).Scan(&sum))
	require.Equal(t, int64(2_121_000), sum)
	require.NoError(t, db.QueryRow(ctx, `SELECT limit_nanos, spent_nanos FROM budget_counters`).Scan(&limit, &spent))
	require.Equal(t, int64(303_000_000), limit)
	require.Equal(t, int64(303_000_000), spent)
	require.NoError(t, db.QueryRow(ctx, `SELECT amount_nanos FROM budget_reservations`).Scan(&amount))
	require.Equal(t, int64(100_000_000), amount)
}
