package sqlstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Reads for the operator console that cross tenants (admin sessions) or
// page a ledger; tenant-scoped callers use the store.Store methods.

// FindRun returns the run with id whatever its tenant, or
// store.ErrNotFound: the operator console with an admin key, which sees
// every tenant. Tenant-scoped callers use GetRun.
func (s *Store) FindRun(ctx context.Context, id string) (store.Run, error) {
	r, err := s.scanRun(s.db.Read.QueryRow(ctx, `SELECT `+RunColumns+` FROM runs WHERE id = $1`, id))
	if err != nil {
		return store.Run{}, fmt.Errorf("%s: find run %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return r, nil
}

// ListRecentAudit returns a page of audit rows, newest (highest ID) first,
// of one tenant or of all (see store.RecentAuditParams). It walks the
// primary key from the newest row.
func (s *Store) ListRecentAudit(ctx context.Context, p store.RecentAuditParams) ([]store.AuditEntry, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, store.MaxListAudit)
	before := p.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	q := `SELECT id, created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us FROM audit WHERE id < $1`
	args := []any{before, limit}
	if !p.AllTenants {
		q += ` AND tenant = $3`
		args = append(args, p.Tenant)
	}
	q += ` ORDER BY id DESC LIMIT $2`
	rows, err := s.db.Read.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: list recent audit: %w", s.d.Name, err)
	}
	defer rows.Close()
	out := []store.AuditEntry{}
	for rows.Next() {
		var (
			e     store.AuditEntry
			input []byte
			durUS int64
		)
		if err := rows.Scan(&e.ID, s.d.ScanTime(&e.Time), &e.Tenant, &e.Agent, &e.RunID, &e.Step, &e.ToolUseID, &e.Tool,
			&e.Phase, &e.IdempotencyKey, &input, &e.Outcome, &e.Error, &durUS); err != nil {
			return nil, fmt.Errorf("%s: list recent audit: %w", s.d.Name, err)
		}
		e.Input = fromJSON(input)
		e.Duration = time.Duration(durUS) * time.Microsecond
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list recent audit: %w", s.d.Name, err)
	}
	return out, nil
}

// FindManagedSession returns the session with id whatever its tenant
// (admin console sessions), or store.ErrNotFound.
func (s *Store) FindManagedSession(ctx context.Context, id string) (store.ManagedSession, error) {
	m, err := s.scanSession(s.db.Read.QueryRow(ctx, `SELECT `+sessColumns+` FROM managed_sessions WHERE id = $1`, id))
	if err != nil {
		return store.ManagedSession{}, fmt.Errorf("%s: find managed session %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return m, nil
}

// ListConsoleSessions returns a page of sessions, newest first, each with
// a digest of its turns (runs_conversation_id). It reads
// managed_sessions_tenant for one tenant, managed_sessions_created_at for
// all.
func (s *Store) ListConsoleSessions(ctx context.Context, p store.ConsoleSessionsParams) ([]store.ConsoleSession, error) {
	w := &where{}
	if !p.AllTenants {
		w.add("m.tenant = " + w.arg(p.Tenant))
	}
	if p.Status != "" {
		w.add("m.status = " + w.arg(p.Status))
	}
	if p.AgentID != "" {
		w.add("m.agent_id = " + w.arg(p.AgentID))
	}
	pg := p.Page
	pg.IncludeArchived, pg.Ascending = true, false
	if len(w.conds) == 0 {
		w.add("1 = 1")
	}
	tail := s.page(w, pg, "m.")
	q := `SELECT m.id, m.tenant, m.agent_id, m.agent_version, m.environment_id, m.conversation_id, m.status, m.data,
			m.created_at, m.updated_at, m.archived_at,
			COALESCE((SELECT r.status FROM runs r WHERE r.conversation_id <> '' AND r.conversation_id = m.conversation_id
				ORDER BY r.created_at DESC, r.id DESC LIMIT 1), ''),
			(SELECT count(*) FROM runs r WHERE r.conversation_id <> '' AND r.conversation_id = m.conversation_id),
			(SELECT COALESCE(sum(r.input_tokens), 0) FROM runs r WHERE r.conversation_id <> '' AND r.conversation_id = m.conversation_id),
			(SELECT COALESCE(sum(r.output_tokens), 0) FROM runs r WHERE r.conversation_id <> '' AND r.conversation_id = m.conversation_id),
			(SELECT COALESCE(sum(r.cost_nanos), 0) FROM runs r WHERE r.conversation_id <> '' AND r.conversation_id = m.conversation_id)
		FROM managed_sessions m` + w.String() + tail
	rows, err := s.db.Read.Query(ctx, q, w.args...)
	if err != nil {
		return nil, fmt.Errorf("%s: list console sessions: %w", s.d.Name, err)
	}
	defer rows.Close()
	out := []store.ConsoleSession{}
	for rows.Next() {
		var (
			c      store.ConsoleSession
			data   []byte
			status string
		)
		if err := rows.Scan(&c.ID, &c.Tenant, &c.AgentID, &c.AgentVersion, &c.EnvironmentID, &c.ConversationID, &c.Status, &data,
			s.d.ScanTime(&c.CreatedAt), s.d.ScanTime(&c.UpdatedAt), s.d.ScanTime(&c.ArchivedAt),
			&status, &c.Turns, &c.InputTokens, &c.OutputTokens, &c.CostNanos); err != nil {
			return nil, fmt.Errorf("%s: list console sessions: %w", s.d.Name, err)
		}
		c.Data, c.LastRunStatus = fromJSON(data), store.RunStatus(status)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list console sessions: %w", s.d.Name, err)
	}
	return out, nil
}

// qPendingApprovals lists the calls paused runs wait for, oldest first,
// with the run's agent and the session whose turn the run is, if any. It
// reads the paused runs (runs_status_id), then their calls by primary key,
// and sorts those. $2 is the tenant; $3 true lists every tenant's.
const qPendingApprovals = `SELECT a.run_id, a.tenant, a.tool_use_id, a.step, a.name, a.input, a.requested_at,
		a.expires_at, a.decision, a.reason, a.decided_by, a.decided_at, a.kind, a.result, a.is_error,
		r.agent, COALESCE(m.id, '')
	FROM run_approvals a
	JOIN runs r ON r.id = a.run_id
	LEFT JOIN managed_sessions m ON r.conversation_id <> '' AND m.conversation_id = r.conversation_id
	WHERE a.decision = '' AND r.status = 'requires_action' AND ($3 OR a.tenant = $2)
	ORDER BY a.requested_at, a.run_id, a.tool_use_id LIMIT $1`

// ListPendingApprovals returns the tool calls paused runs wait for, of one
// tenant or all, oldest first.
func (s *Store) ListPendingApprovals(ctx context.Context, p store.PendingApprovalsParams) ([]store.PendingApproval, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.Read.Query(ctx, qPendingApprovals, limit, p.Tenant, p.AllTenants)
	if err != nil {
		return nil, fmt.Errorf("%s: list pending approvals: %w", s.d.Name, err)
	}
	defer rows.Close()
	out := []store.PendingApproval{}
	for rows.Next() {
		var (
			pa             store.PendingApproval
			decision, kind string
			input, result  []byte
		)
		a := &pa.Approval
		if err := rows.Scan(&a.RunID, &a.Tenant, &a.ToolUseID, &a.Step, &a.Name, &input, s.d.ScanTime(&a.RequestedAt),
			s.d.ScanTime(&a.ExpiresAt), &decision, &a.Reason, &a.DecidedBy, s.d.ScanTime(&a.DecidedAt), &kind, &result, &a.IsError,
			&pa.Agent, &pa.SessionID); err != nil {
			return nil, fmt.Errorf("%s: list pending approvals: %w", s.d.Name, err)
		}
		a.Decision, a.Kind, a.Input, a.Result = store.Decision(decision), store.ApprovalKind(kind), fromJSON(input), fromJSON(result)
		out = append(out, pa)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list pending approvals: %w", s.d.Name, err)
	}
	return out, nil
}

// CountPendingApprovals counts the tool calls paused runs wait for, of
// one tenant or all.
func (s *Store) CountPendingApprovals(ctx context.Context, tenant string, allTenants bool) (int, error) {
	var n int
	err := s.db.Read.QueryRow(ctx, `SELECT count(*) FROM run_approvals a JOIN runs r ON r.id = a.run_id
		WHERE a.decision = '' AND r.status = 'requires_action' AND ($2 OR a.tenant = $1)`, tenant, allTenants).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("%s: count pending approvals: %w", s.d.Name, err)
	}
	return n, nil
}
