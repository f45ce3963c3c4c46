package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Audit = (*Store)(nil)

const (
	qAppendAudit = `INSERT INTO audit (created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qListAudit = `SELECT id, created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us
		FROM audit WHERE tenant = ? AND run_id = ? ORDER BY id LIMIT ?`
)

// AppendAudit writes one audit row (see store.Audit).
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = now()
	}
	st, err := s.wstmt.get(ctx, qAppendAudit)
	if err == nil {
		_, err = st.ExecContext(ctx, toMicros(e.Time), e.Tenant, e.Agent, e.RunID, e.Step, e.ToolUseID, e.Tool,
			e.Phase, e.IdempotencyKey, toJSON(e.Input), e.Outcome, e.Error, e.Duration.Microseconds())
	}
	if err != nil {
		return fmt.Errorf("sqlite: append audit of run %s: %w", e.RunID, mapErr(err))
	}
	return nil
}

// ListAudit returns the tenant's audit rows of a run in ID order (see
// store.Audit).
func (s *Store) ListAudit(ctx context.Context, tenant, runID string) ([]store.AuditEntry, error) {
	out, err := s.listAudit(ctx, tenant, runID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit of run %s: %w", runID, err)
	}
	return out, nil
}

func (s *Store) listAudit(ctx context.Context, tenant, runID string) ([]store.AuditEntry, error) {
	st, err := s.rstmt.get(ctx, qListAudit)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, tenant, runID, store.MaxListAudit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.AuditEntry{}
	for rows.Next() {
		var (
			e     store.AuditEntry
			at    sql.NullInt64
			input []byte
			durUS int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Tenant, &e.Agent, &e.RunID, &e.Step, &e.ToolUseID, &e.Tool,
			&e.Phase, &e.IdempotencyKey, &input, &e.Outcome, &e.Error, &durUS); err != nil {
			return nil, err
		}
		e.Time = fromMicros(at)
		e.Input = fromJSON(input)
		e.Duration = time.Duration(durUS) * time.Microsecond
		out = append(out, e)
	}
	return out, rows.Err()
}
