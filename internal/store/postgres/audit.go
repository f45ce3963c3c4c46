package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Audit = (*Store)(nil)

const (
	qAppendAudit = `INSERT INTO audit (created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	qListAudit = `SELECT id, created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us
		FROM audit WHERE tenant = $1 AND run_id = $2 ORDER BY id LIMIT $3`
)

// AppendAudit writes one audit row (see store.Audit).
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = now()
	}
	_, err := s.pool.Exec(ctx, qAppendAudit, normTime(e.Time), e.Tenant, e.Agent, e.RunID, e.Step, e.ToolUseID, e.Tool,
		e.Phase, e.IdempotencyKey, toJSON(e.Input), e.Outcome, e.Error, e.Duration.Microseconds())
	if err != nil {
		return fmt.Errorf("postgres: append audit of run %s: %w", e.RunID, mapErr(err))
	}
	return nil
}

// ListAudit returns the tenant's audit rows of a run in ID order (see
// store.Audit).
func (s *Store) ListAudit(ctx context.Context, tenant, runID string) ([]store.AuditEntry, error) {
	rows, err := s.pool.Query(ctx, qListAudit, tenant, runID, store.MaxListAudit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit of run %s: %w", runID, err)
	}
	defer rows.Close()
	out := []store.AuditEntry{}
	for rows.Next() {
		var (
			e     store.AuditEntry
			at    pgtype.Timestamptz
			input []byte
			durUS int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Tenant, &e.Agent, &e.RunID, &e.Step, &e.ToolUseID, &e.Tool,
			&e.Phase, &e.IdempotencyKey, &input, &e.Outcome, &e.Error, &durUS); err != nil {
			return nil, fmt.Errorf("postgres: list audit of run %s: %w", runID, err)
		}
		e.Time = fromTime(at)
		e.Input = fromJSON(input)
		e.Duration = time.Duration(durUS) * time.Microsecond
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list audit of run %s: %w", runID, err)
	}
	return out, nil
}
