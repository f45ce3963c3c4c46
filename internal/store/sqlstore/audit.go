package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

const (
	qAppendAudit = `INSERT INTO audit (created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us, actor)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`
	qListAudit = `SELECT id, created_at, tenant, agent, run_id, step, tool_use_id, tool,
		phase, idempotency_key, input, outcome, error, duration_us, actor
		FROM audit WHERE tenant = $1 AND run_id = $2 ORDER BY id LIMIT $3`
)

// AppendAudit writes one audit row (see store.Audit).
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = Now()
	}
	_, err := s.db.Write.Exec(ctx, qAppendAudit, s.d.Time(e.Time), e.Tenant, e.Agent, e.RunID, e.Step, e.ToolUseID, e.Tool,
		e.Phase, e.IdempotencyKey, JSON(e.Input), e.Outcome, e.Error, e.Duration.Microseconds(), e.Actor)
	if err != nil {
		return fmt.Errorf("%s: append audit of run %s: %w", s.d.Name, e.RunID, s.d.MapErr(err))
	}
	return nil
}

// ListAudit returns the tenant's audit rows of a run in ID order (see
// store.Audit).
func (s *Store) ListAudit(ctx context.Context, tenant, runID string) ([]store.AuditEntry, error) {
	rows, err := s.db.Read.Query(ctx, qListAudit, tenant, runID, store.MaxListAudit)
	if err != nil {
		return nil, fmt.Errorf("%s: list audit of run %s: %w", s.d.Name, runID, err)
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
			&e.Phase, &e.IdempotencyKey, &input, &e.Outcome, &e.Error, &durUS, &e.Actor); err != nil {
			return nil, fmt.Errorf("%s: list audit of run %s: %w", s.d.Name, runID, err)
		}
		e.Input = fromJSON(input)
		e.Duration = time.Duration(durUS) * time.Microsecond
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list audit of run %s: %w", s.d.Name, runID, err)
	}
	return out, nil
}
