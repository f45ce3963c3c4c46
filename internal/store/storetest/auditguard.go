package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// ExecFunc runs one SQL statement on the backend's database, below the
// Store, and returns the rows it changed.
type ExecFunc func(ctx context.Context, sql string) (int64, error)

// ExerciseAuditGuard checks that, below the store, the database itself
// refuses to delete an audit row younger than store.MinAuditRetention and
// to update any row, while an older row may be deleted (retention).
func ExerciseAuditGuard(t *testing.T, s store.Audit, exec ExecFunc) {
	t.Helper()
	ctx := t.Context()
	for id, ago := range map[string]time.Duration{"young": 29 * 24 * time.Hour, "old": 31 * 24 * time.Hour} {
		require.NoError(t, s.AppendAudit(ctx, store.AuditEntry{Time: time.Now().Add(-ago), Tenant: "t", Agent: "a",
			RunID: "r", ToolUseID: id, Tool: "kv", Phase: store.AuditCall, IdempotencyKey: id, Outcome: "started"}))
	}
	_, err := exec(ctx, `DELETE FROM audit WHERE tool_use_id = 'young'`)
	require.ErrorContains(t, err, "append-only")
	_, err = exec(ctx, `UPDATE audit SET outcome = 'x' WHERE tool_use_id = 'old'`)
	require.ErrorContains(t, err, "append-only")
	n, err := exec(ctx, `DELETE FROM audit WHERE tool_use_id = 'old'`)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}
