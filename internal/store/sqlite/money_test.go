package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/migrations"
)

// TestMigrationToNanosRoundsExistingAmounts: 0010_money_nanos turns the
// REAL dollar columns of a store written before it into INTEGER
// nano-dollars, rounded (float noise such as 0.0018180000000000002 goes).
func TestMigrationToNanosRoundsExistingAmounts(t *testing.T) {
	ms, err := migrations.For(migrations.SQLite)
	require.NoError(t, err)
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "old.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	apply := func(m migrations.Migration) {
		_, err := db.Exec(m.SQL)
		require.NoError(t, err, m.String())
	}
	i := 0
	for ; ms[i].Name != "money_nanos"; i++ {
		apply(ms[i])
	}
	_, err = db.Exec(`INSERT INTO usage (created_at, tenant, agent, model, run_id, cost_usd) VALUES
		(1, 't', 'a', 'm', 'r', 0.0018180000000000002), (2, 't', 'a', 'm', 'r', 0.000303)`)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO budget_counters (scope, subject, period, limit_usd, spent_usd, expires_at)
		VALUES ('tenant', 't', 'd:2026-12-01', 0.303, 0.30299999999999805, 1)`)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO budget_reservations (reservation_id, scope, subject, period, amount_usd, expires_at)
		VALUES ('r', 'tenant', 't', 'd:2026-12-01', 0.1, 1)`)
	require.NoError(t, err)
	apply(ms[i])

	var sum int64
	require.NoError(t, db.QueryRow(`SELECT SUM(cost_nanos) FROM usage`).Scan(&sum))
	require.Equal(t, int64(2_121_000), sum)
	var limit, spent, amount int64
	require.NoError(t, db.QueryRow(`SELECT limit_nanos, spent_nanos FROM budget_counters`).Scan(&limit, &spent))
	require.Equal(t, int64(303_000_000), limit)
	require.Equal(t, int64(303_000_000), spent)
	require.NoError(t, db.QueryRow(`SELECT amount_nanos FROM budget_reservations`).Scan(&amount))
	require.Equal(t, int64(100_000_000), amount)
	var typ string
	require.NoError(t, db.QueryRow(`SELECT typeof(cost_nanos) FROM usage LIMIT 1`).Scan(&typ))
	require.Equal(t, "integer", typ)
}
