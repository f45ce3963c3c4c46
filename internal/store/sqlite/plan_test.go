package sqlite

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/sqlstore"
)

// A session's stream and each of its user.messages list the runs of its
// conversation: that must find them through runs_conversation_id, not by
// scanning every run of the tenant (which made the Managed Agents face
// saturate as runs accumulated; docs/benchmarks.md).
func TestConversationRunsUseTheConversationIndex(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	require.Contains(t, queryPlan(t, s, sqlstore.QConversationRuns, "t", "c"), "USING INDEX runs_conversation_id (conversation_id=?)")
}

// queryPlan is SQLite's EXPLAIN QUERY PLAN of q, one line per step.
func queryPlan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+q, args...)
	require.NoError(t, err)
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &notused, &detail))
		plan = append(plan, detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(plan, "\n")
}

// The retention sweep's "does a run still have this digest" is a probe of
// runs_agent_digest (migration 0019), not a scan of every run for each
// stored definition.
func TestAgentDefinitionsSweepUsesTheDigestIndex(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	plan := queryPlan(t, s, sqlstore.QDeleteAgentDefinitions, 0, 10)
	require.Contains(t, plan, "INDEX runs_agent_digest (agent_digest=?)", plan)
}
