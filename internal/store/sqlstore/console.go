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
