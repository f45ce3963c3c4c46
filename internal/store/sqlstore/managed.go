package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// The Managed Agents face's rows (store.Managed).

const (
	managedMaxLimit     = 1000
	managedDefaultLimit = 20

	agentColumns = `a.id, a.tenant, v.version, a.version, v.config, a.created_at, v.created_at, a.archived_at`
	agentFrom    = ` FROM managed_agents a JOIN managed_agent_versions v ON v.agent_id = a.id`
	envColumns   = `id, tenant, data, created_at, updated_at, archived_at`
	sessColumns  = `id, tenant, agent_id, agent_version, environment_id, conversation_id, status, data,
		created_at, updated_at, archived_at`
)

func managedLimit(n int) int {
	switch {
	case n <= 0:
		return managedDefaultLimit
	case n > managedMaxLimit:
		return managedMaxLimit
	}
	return n
}

// where builds a WHERE clause of ANDed conditions whose arguments are
// numbered in order.
type where struct {
	conds []string
	args  []any
}

// arg adds an argument and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) add(cond string) { w.conds = append(w.conds, cond) }

func (w *where) String() string { return " WHERE " + strings.Join(w.conds, " AND ") }

// page adds the archive filter and the cursor of p on columns prefixed
// with col ("a." or "") and returns the ORDER BY ... LIMIT tail.
func (s *Store) page(w *where, p store.ManagedPage, col string) string {
	if !p.IncludeArchived {
		w.add(col + "archived_at IS NULL")
	}
	dir, cmp := "DESC", "<"
	if p.Ascending {
		dir, cmp = "ASC", ">"
	}
	if !p.AfterCreatedAt.IsZero() {
		t := w.arg(s.d.Time(p.AfterCreatedAt))
		id := w.arg(p.AfterID)
		w.add(fmt.Sprintf("(%[1]screated_at %[2]s %[3]s OR (%[1]screated_at = %[3]s AND %[1]sid %[2]s %[4]s))", col, cmp, t, id))
	}
	return fmt.Sprintf(" ORDER BY %[1]screated_at %[2]s, %[1]sid %[2]s LIMIT %[3]d", col, dir, managedLimit(p.Limit))
}

// ---------------------------------------------------------------------------
// agents

func (s *Store) scanAgent(row Row) (store.ManagedAgent, error) {
	var (
		a   store.ManagedAgent
		cfg []byte
	)
	err := row.Scan(&a.ID, &a.Tenant, &a.Version, &a.Latest, &cfg, s.d.ScanTime(&a.CreatedAt), s.d.ScanTime(&a.UpdatedAt),
		s.d.ScanTime(&a.ArchivedAt))
	a.Config = fromJSON(cfg)
	return a, err
}

// CreateManagedAgent inserts an agent at version 1 (see store.Managed).
func (s *Store) CreateManagedAgent(ctx context.Context, a store.ManagedAgent) (store.ManagedAgent, error) {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = Now()
	}
	a.CreatedAt = NormTime(a.CreatedAt)
	a.UpdatedAt, a.Version, a.Latest, a.ArchivedAt = a.CreatedAt, 1, 1, time.Time{}
	err := s.inTx(ctx, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO managed_agents (id, tenant, version, created_at) VALUES ($1, $2, 1, $3)`,
			a.ID, a.Tenant, s.d.Time(a.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO managed_agent_versions (agent_id, version, config, created_at) VALUES ($1, 1, $2, $3)`,
			a.ID, JSON(a.Config), s.d.Time(a.CreatedAt))
		return err
	})
	if err != nil {
		return store.ManagedAgent{}, fmt.Errorf("%s: create managed agent %s: %w", s.d.Name, a.ID, s.d.MapErr(err))
	}
	return a, nil
}

// GetManagedAgent returns a version of an agent (see store.Managed).
func (s *Store) GetManagedAgent(ctx context.Context, tenant, id string, version int64) (store.ManagedAgent, error) {
	a, err := s.scanAgent(s.db.Read.QueryRow(ctx, `SELECT `+agentColumns+agentFrom+`
		WHERE a.id = $1 AND a.tenant IN ($2, '') AND v.version = CASE WHEN $3 = 0 THEN a.version ELSE $3 END`,
		id, tenant, version))
	if err != nil {
		return store.ManagedAgent{}, fmt.Errorf("%s: get managed agent %s v%d: %w", s.d.Name, id, version, s.d.MapErr(err))
	}
	return a, nil
}

// UpdateManagedAgent adds a version (see store.Managed).
func (s *Store) UpdateManagedAgent(ctx context.Context, p store.UpdateManagedAgentParams) (store.ManagedAgent, error) {
	at := p.At
	if at.IsZero() {
		at = Now()
	}
	at = NormTime(at)
	var a store.ManagedAgent
	err := s.inTx(ctx, func(tx Tx) error {
		var latest int64
		err := tx.QueryRow(ctx, `SELECT version FROM managed_agents WHERE id = $1 AND tenant = $2`+s.d.ForUpdate,
			p.ID, p.Tenant).Scan(&latest)
		if err != nil {
			return err
		}
		if latest != p.ExpectedVersion {
			return fmt.Errorf("agent is at version %d, not %d: %w", latest, p.ExpectedVersion, store.ErrConflict)
		}
		next := latest + 1
		if _, err := tx.Exec(ctx, `UPDATE managed_agents SET version = $1 WHERE id = $2`, next, p.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO managed_agent_versions (agent_id, version, config, created_at) VALUES ($1, $2, $3, $4)`,
			p.ID, next, JSON(p.Config), s.d.Time(at)); err != nil {
			return err
		}
		a, err = s.scanAgent(tx.QueryRow(ctx, `SELECT `+agentColumns+agentFrom+` WHERE a.id = $1 AND v.version = $2`, p.ID, next))
		return err
	})
	if err != nil {
		return store.ManagedAgent{}, fmt.Errorf("%s: update managed agent %s: %w", s.d.Name, p.ID, s.d.MapErr(err))
	}
	return a, nil
}

// ListManagedAgents returns a page of agents (see store.Managed).
func (s *Store) ListManagedAgents(ctx context.Context, p store.ManagedPage) ([]store.ManagedAgent, error) {
	w := &where{}
	w.add("v.version = a.version")
	w.add("a.tenant IN (" + w.arg(p.Tenant) + ", '')")
	tail := s.page(w, p, "a.")
	out, err := scanAll(ctx, s.db.Read, `SELECT `+agentColumns+agentFrom+w.String()+tail, w.args, s.scanAgent)
	if err != nil {
		return nil, fmt.Errorf("%s: list managed agents: %w", s.d.Name, err)
	}
	return out, nil
}

// ListManagedAgentVersions returns an agent's versions, newest first (see
// store.Managed).
func (s *Store) ListManagedAgentVersions(ctx context.Context, tenant, id string, limit int, beforeVersion int64) ([]store.ManagedAgent, error) {
	var n int
	if err := s.db.Read.QueryRow(ctx, `SELECT count(*) FROM managed_agents WHERE id = $1 AND tenant IN ($2, '')`, id, tenant).Scan(&n); err != nil {
		return nil, fmt.Errorf("%s: list managed agent versions %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: list managed agent versions %s: %w", s.d.Name, id, store.ErrNotFound)
	}
	out, err := scanAll(ctx, s.db.Read, `SELECT `+agentColumns+agentFrom+`
		WHERE a.id = $1 AND a.tenant IN ($2, '') AND ($3 = 0 OR v.version < $3)
		ORDER BY v.version DESC LIMIT `+strconv.Itoa(managedLimit(limit)), []any{id, tenant, beforeVersion}, s.scanAgent)
	if err != nil {
		return nil, fmt.Errorf("%s: list managed agent versions %s: %w", s.d.Name, id, err)
	}
	return out, nil
}

// ArchiveManagedAgent archives an agent (see store.Managed).
func (s *Store) ArchiveManagedAgent(ctx context.Context, tenant, id string, at time.Time) (store.ManagedAgent, error) {
	if at.IsZero() {
		at = Now()
	}
	n, err := s.db.Write.Exec(ctx, `UPDATE managed_agents SET archived_at = COALESCE(archived_at, $1) WHERE id = $2 AND tenant = $3`,
		s.d.Time(at), id, tenant)
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.ManagedAgent{}, fmt.Errorf("%s: archive managed agent %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return s.GetManagedAgent(ctx, tenant, id, 0)
}

// ---------------------------------------------------------------------------
// environments

func (s *Store) scanEnv(row Row) (store.ManagedEnvironment, error) {
	var (
		e    store.ManagedEnvironment
		data []byte
	)
	err := row.Scan(&e.ID, &e.Tenant, &data, s.d.ScanTime(&e.CreatedAt), s.d.ScanTime(&e.UpdatedAt), s.d.ScanTime(&e.ArchivedAt))
	e.Data = fromJSON(data)
	return e, err
}

// CreateManagedEnvironment inserts an environment (see store.Managed).
func (s *Store) CreateManagedEnvironment(ctx context.Context, e store.ManagedEnvironment) (store.ManagedEnvironment, error) {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = Now()
	}
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = e.CreatedAt
	}
	e.CreatedAt, e.UpdatedAt, e.ArchivedAt = NormTime(e.CreatedAt), NormTime(e.UpdatedAt), time.Time{}
	_, err := s.db.Write.Exec(ctx, `INSERT INTO managed_environments (`+envColumns+`) VALUES ($1, $2, $3, $4, $5, NULL)`,
		e.ID, e.Tenant, JSON(e.Data), s.d.Time(e.CreatedAt), s.d.Time(e.UpdatedAt))
	if err != nil {
		return store.ManagedEnvironment{}, fmt.Errorf("%s: create managed environment %s: %w", s.d.Name, e.ID, s.d.MapErr(err))
	}
	return e, nil
}

// GetManagedEnvironment returns an environment (see store.Managed).
func (s *Store) GetManagedEnvironment(ctx context.Context, tenant, id string) (store.ManagedEnvironment, error) {
	e, err := s.scanEnv(s.db.Read.QueryRow(ctx, `SELECT `+envColumns+` FROM managed_environments WHERE id = $1 AND tenant = $2`, id, tenant))
	if err != nil {
		return store.ManagedEnvironment{}, fmt.Errorf("%s: get managed environment %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return e, nil
}

// UpdateManagedEnvironment replaces an environment's data (see
// store.Managed).
func (s *Store) UpdateManagedEnvironment(ctx context.Context, e store.ManagedEnvironment) (store.ManagedEnvironment, error) {
	at := e.UpdatedAt
	if at.IsZero() {
		at = Now()
	}
	out, err := s.scanEnv(s.db.Write.QueryRow(ctx, `UPDATE managed_environments SET data = $1, updated_at = $2
		WHERE id = $3 AND tenant = $4 RETURNING `+envColumns, JSON(e.Data), s.d.Time(at), e.ID, e.Tenant))
	if err != nil {
		return store.ManagedEnvironment{}, fmt.Errorf("%s: update managed environment %s: %w", s.d.Name, e.ID, s.d.MapErr(err))
	}
	return out, nil
}

// ListManagedEnvironments returns a page of environments (see
// store.Managed).
func (s *Store) ListManagedEnvironments(ctx context.Context, p store.ManagedPage) ([]store.ManagedEnvironment, error) {
	w := &where{}
	w.add("tenant = " + w.arg(p.Tenant))
	tail := s.page(w, p, "")
	out, err := scanAll(ctx, s.db.Read, `SELECT `+envColumns+` FROM managed_environments`+w.String()+tail, w.args, s.scanEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: list managed environments: %w", s.d.Name, err)
	}
	return out, nil
}

// ArchiveManagedEnvironment archives an environment (see store.Managed).
func (s *Store) ArchiveManagedEnvironment(ctx context.Context, tenant, id string, at time.Time) (store.ManagedEnvironment, error) {
	if at.IsZero() {
		at = Now()
	}
	e, err := s.scanEnv(s.db.Write.QueryRow(ctx, `UPDATE managed_environments SET archived_at = COALESCE(archived_at, $1)
		WHERE id = $2 AND tenant = $3 RETURNING `+envColumns, s.d.Time(at), id, tenant))
	if err != nil {
		return store.ManagedEnvironment{}, fmt.Errorf("%s: archive managed environment %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return e, nil
}

// DeleteManagedEnvironment deletes an environment (see store.Managed).
func (s *Store) DeleteManagedEnvironment(ctx context.Context, tenant, id string) error {
	n, err := s.db.Write.Exec(ctx, `DELETE FROM managed_environments WHERE id = $1 AND tenant = $2`, id, tenant)
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("%s: delete managed environment %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return nil
}

// ---------------------------------------------------------------------------
// sessions

func (s *Store) scanSession(row Row) (store.ManagedSession, error) {
	var (
		m    store.ManagedSession
		data []byte
	)
	err := row.Scan(&m.ID, &m.Tenant, &m.AgentID, &m.AgentVersion, &m.EnvironmentID, &m.ConversationID, &m.Status, &data,
		s.d.ScanTime(&m.CreatedAt), s.d.ScanTime(&m.UpdatedAt), s.d.ScanTime(&m.ArchivedAt))
	m.Data = fromJSON(data)
	return m, err
}

// CreateManagedSession inserts a session and its conversation (see
// store.Managed).
func (s *Store) CreateManagedSession(ctx context.Context, m store.ManagedSession) (store.ManagedSession, error) {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = Now()
	}
	if m.UpdatedAt.IsZero() {
		m.UpdatedAt = m.CreatedAt
	}
	m.CreatedAt, m.UpdatedAt, m.ArchivedAt = NormTime(m.CreatedAt), NormTime(m.UpdatedAt), time.Time{}
	err := s.inTx(ctx, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO conversations
			(id, tenant, agent, version, next_seq, created_at, updated_at, expires_at)
			VALUES ($1, $2, $3, 0, 1, $4, $4, NULL)`, m.ConversationID, m.Tenant, m.AgentID, s.d.Time(m.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO managed_sessions (`+sessColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)`,
			m.ID, m.Tenant, m.AgentID, m.AgentVersion, m.EnvironmentID, m.ConversationID, m.Status, JSON(m.Data),
			s.d.Time(m.CreatedAt), s.d.Time(m.UpdatedAt))
		return err
	})
	if err != nil {
		return store.ManagedSession{}, fmt.Errorf("%s: create managed session %s: %w", s.d.Name, m.ID, s.d.MapErr(err))
	}
	return m, nil
}

// GetManagedSession returns a session (see store.Managed).
func (s *Store) GetManagedSession(ctx context.Context, tenant, id string) (store.ManagedSession, error) {
	m, err := s.scanSession(s.db.Read.QueryRow(ctx, `SELECT `+sessColumns+` FROM managed_sessions WHERE id = $1 AND tenant = $2`, id, tenant))
	if err != nil {
		return store.ManagedSession{}, fmt.Errorf("%s: get managed session %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return m, nil
}

// GetManagedSessionByConversation returns the session of a conversation
// (see store.Managed).
func (s *Store) GetManagedSessionByConversation(ctx context.Context, tenant, conversationID string) (store.ManagedSession, error) {
	m, err := s.scanSession(s.db.Read.QueryRow(ctx, `SELECT `+sessColumns+` FROM managed_sessions WHERE conversation_id = $1 AND tenant = $2`,
		conversationID, tenant))
	if err != nil {
		return store.ManagedSession{}, fmt.Errorf("%s: get managed session of conversation %s: %w", s.d.Name, conversationID, s.d.MapErr(err))
	}
	return m, nil
}

// UpdateManagedSession replaces a session's status and data (see
// store.Managed).
func (s *Store) UpdateManagedSession(ctx context.Context, m store.ManagedSession) (store.ManagedSession, error) {
	at := m.UpdatedAt
	if at.IsZero() {
		at = Now()
	}
	out, err := s.scanSession(s.db.Write.QueryRow(ctx, `UPDATE managed_sessions SET status = $1, data = $2, updated_at = $3
		WHERE id = $4 AND tenant = $5 RETURNING `+sessColumns, m.Status, JSON(m.Data), s.d.Time(at), m.ID, m.Tenant))
	if err != nil {
		return store.ManagedSession{}, fmt.Errorf("%s: update managed session %s: %w", s.d.Name, m.ID, s.d.MapErr(err))
	}
	return out, nil
}

// UpdateManagedSessionEvent updates a session and appends an event of it
// (see store.Managed).
func (s *Store) UpdateManagedSessionEvent(ctx context.Context, m store.ManagedSession, ev store.ManagedSessionEvent) (store.ManagedSession, store.ManagedSessionEvent, error) {
	at := m.UpdatedAt
	if at.IsZero() {
		at = Now()
	}
	at = NormTime(at)
	var out store.ManagedSession
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		// The session's row lock orders concurrent updates: each one's
		// MAX(seq) sees the one before.
		if out, err = s.scanSession(tx.QueryRow(ctx, `UPDATE managed_sessions SET status = $1, data = $2, updated_at = $3
			WHERE id = $4 AND tenant = $5 RETURNING `+sessColumns, m.Status, JSON(m.Data), s.d.Time(at), m.ID, m.Tenant)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO managed_session_events (session_id, id, seq, type, data, created_at)
			SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5 FROM managed_session_events WHERE session_id = $1
			RETURNING seq`, m.ID, ev.ID, ev.Type, JSON(ev.Data), s.d.Time(at)).Scan(&ev.Seq)
	})
	if err != nil {
		return store.ManagedSession{}, ev, fmt.Errorf("%s: update managed session %s: %w", s.d.Name, m.ID, s.d.MapErr(err))
	}
	ev.SessionID, ev.CreatedAt = m.ID, at
	return out, ev, nil
}

// ListManagedSessionEvents returns a session's events by seq (see
// store.Managed).
func (s *Store) ListManagedSessionEvents(ctx context.Context, tenant, sessionID string) ([]store.ManagedSessionEvent, error) {
	out, err := scanAll(ctx, s.db.Read, `SELECT e.session_id, e.id, e.seq, e.type, e.data, e.created_at
		FROM managed_session_events e JOIN managed_sessions m ON m.id = e.session_id
		WHERE e.session_id = $1 AND m.tenant = $2 ORDER BY e.seq`, []any{sessionID, tenant},
		func(row Row) (store.ManagedSessionEvent, error) {
			var (
				ev   store.ManagedSessionEvent
				data []byte
			)
			err := row.Scan(&ev.SessionID, &ev.ID, &ev.Seq, &ev.Type, &data, s.d.ScanTime(&ev.CreatedAt))
			ev.Data = fromJSON(data)
			return ev, err
		})
	if err != nil {
		return nil, fmt.Errorf("%s: list events of managed session %s: %w", s.d.Name, sessionID, err)
	}
	return out, nil
}

// ListManagedSessions returns a page of sessions (see store.Managed).
func (s *Store) ListManagedSessions(ctx context.Context, p store.ListManagedSessionsParams) ([]store.ManagedSession, error) {
	w := &where{}
	w.add("tenant = " + w.arg(p.Tenant))
	if p.AgentID != "" {
		w.add("agent_id = " + w.arg(p.AgentID))
		if p.AgentVersion > 0 {
			w.add("agent_version = " + w.arg(p.AgentVersion))
		}
	}
	if len(p.Statuses) > 0 {
		ph := make([]string, len(p.Statuses))
		for i, st := range p.Statuses {
			ph[i] = w.arg(st)
		}
		w.add("status IN (" + strings.Join(ph, ", ") + ")")
	}
	bound := func(t time.Time, op string) {
		if !t.IsZero() {
			w.add("created_at " + op + " " + w.arg(s.d.Time(t)))
		}
	}
	after, before := ">", "<"
	if p.CreatedAfterInclusive {
		after = ">="
	}
	if p.CreatedBeforeInclusive {
		before = "<="
	}
	bound(p.CreatedAfter, after)
	bound(p.CreatedBefore, before)
	tail := s.page(w, p.ManagedPage, "")
	out, err := scanAll(ctx, s.db.Read, `SELECT `+sessColumns+` FROM managed_sessions`+w.String()+tail, w.args, s.scanSession)
	if err != nil {
		return nil, fmt.Errorf("%s: list managed sessions: %w", s.d.Name, err)
	}
	return out, nil
}

// ArchiveManagedSession archives a session (see store.Managed).
func (s *Store) ArchiveManagedSession(ctx context.Context, tenant, id, status string, at time.Time) (store.ManagedSession, error) {
	if at.IsZero() {
		at = Now()
	}
	m, err := s.scanSession(s.db.Write.QueryRow(ctx, `UPDATE managed_sessions
		SET archived_at = COALESCE(archived_at, $1), status = $2, updated_at = $1
		WHERE id = $3 AND tenant = $4 RETURNING `+sessColumns, s.d.Time(at), status, id, tenant))
	if err != nil {
		return store.ManagedSession{}, fmt.Errorf("%s: archive managed session %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return m, nil
}

// DeleteManagedSession deletes a session and its conversation (see
// store.Managed).
func (s *Store) DeleteManagedSession(ctx context.Context, tenant, id string) error {
	err := s.inTx(ctx, func(tx Tx) error {
		var conv string
		if err := tx.QueryRow(ctx, `DELETE FROM managed_sessions WHERE id = $1 AND tenant = $2 RETURNING conversation_id`,
			id, tenant).Scan(&conv); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM managed_session_events WHERE session_id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM conversations WHERE id = $1 AND tenant = $2`, conv, tenant)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: delete managed session %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return nil
}

// QConversationRuns lists a conversation's runs, oldest first.
//
// The condition that conversation_id is not empty (here and in
// SumConversationUsage) lets SQLite use the partial index
// runs_conversation_id: without it, a bound parameter does not prove the
// index's condition, and the planner scans every run of the tenant
// (runs_tenant_status_id), a cost that grows with the runs.
const QConversationRuns = `SELECT ` + RunColumns + ` FROM runs WHERE tenant = $1 AND conversation_id = $2
	AND conversation_id <> '' ORDER BY created_at, id`

// ListConversationRuns returns a conversation's runs, oldest first (see
// store.Managed).
func (s *Store) ListConversationRuns(ctx context.Context, tenant, conversationID string) ([]store.Run, error) {
	out, err := scanAll(ctx, s.db.Read, QConversationRuns, []any{tenant, conversationID}, s.scanRun)
	if err != nil {
		return nil, fmt.Errorf("%s: list runs of conversation %s: %w", s.d.Name, conversationID, err)
	}
	return out, nil
}

// SumConversationUsage sums the usage rows of a conversation's runs (see
// store.Managed).
func (s *Store) SumConversationUsage(ctx context.Context, tenant, conversationID string) (store.UsageTotals, error) {
	var t store.UsageTotals
	var cost int64
	err := s.db.Read.QueryRow(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(u.input_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(u.output_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(u.cache_creation_input_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(u.cache_read_input_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(u.cost_nanos), 0) AS bigint)
		FROM runs r JOIN usage u ON u.run_id = r.id AND u.tenant = r.tenant
		WHERE r.tenant = $1 AND r.conversation_id = $2 AND r.conversation_id <> ''`, tenant, conversationID).Scan(
		&t.Requests, &t.InputTokens, &t.OutputTokens, &t.CacheCreationInputTokens, &t.CacheReadInputTokens, &cost)
	if err != nil {
		return t, fmt.Errorf("%s: usage of conversation %s: %w", s.d.Name, conversationID, s.d.MapErr(err))
	}
	t.CostUSD = money.Nanos(cost)
	return t, nil
}

// ---------------------------------------------------------------------------
// helpers

// inTx runs fn in a read-write transaction and commits it.
func (s *Store) inTx(ctx context.Context, fn func(tx Tx) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// scanAll runs a query and scans every row with scan.
func scanAll[T any](ctx context.Context, q Querier, query string, args []any, scan func(Row) (T, error)) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
