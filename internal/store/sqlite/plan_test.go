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
	rows, err := s.read.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+sqlstore.QConversationRuns, "t", "c")
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
	require.Contains(t, strings.Join(plan, "\n"), "USING INDEX runs_conversation_id (conversation_id=?)")
}

// The retention sweep's "does a run still have this digest" is a probe of
// runs_agent_digest (migration 0019), not a scan of every run for each
// stored definition.
func TestAgentDefinitionsSweepUsesTheDigestIndex(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	rows, err := s.read.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+sqlstore.QDeleteAgentDefinitions, 0, 10)
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
	require.Contains(t, strings.Join(plan, "\n"), "INDEX runs_agent_digest (agent_digest=?)", strings.Join(plan, "\n"))
}
