package sqlite

import (
	"context"
	"fmt"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Usage = (*Store)(nil)

// qAppendUsage inserts one row; a row whose uid is stored already is
// skipped (an empty uid is stored as NULL, which never conflicts), so a
// batch written again stores none of its rows twice.
const qAppendUsage = `INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cached, uid)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''))
	ON CONFLICT (uid) DO NOTHING`

// usageGroupExpr maps a grouping to its SQL expression (never user text).
var usageGroupExpr = map[string]string{
	store.UsageByAgent: "agent",
	store.UsageByModel: "model",
	store.UsageByKey:   "key",
	store.UsageByDay:   "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
}

// usageSumQuery is the SumUsage query for one grouping.
func usageSumQuery(expr string) string {
	return `SELECT ` + expr + ` AS grp, COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
		COALESCE(SUM(cache_creation_input_tokens), 0), COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(cost_usd), 0)
		FROM usage
		WHERE tenant = ? AND (? IS NULL OR created_at >= ?) AND (? IS NULL OR created_at < ?)
		GROUP BY grp ORDER BY grp`
}

// AppendUsage writes one usage row (see store.Usage).
func (s *Store) AppendUsage(ctx context.Context, r store.UsageRecord) error {
	if r.Time.IsZero() {
		r.Time = now()
	}
	cached := 0
	if r.Cached {
		cached = 1
	}
	_, err := pool{s.wstmt}.Exec(ctx, qAppendUsage, toMicros(r.Time), r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.Step,
		r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, r.CostUSD, cached, r.UID)
	if err != nil {
		return fmt.Errorf("sqlite: append usage of run %s: %w", r.RunID, mapErr(err))
	}
	return nil
}

// AppendUsageBatch writes usage rows in one transaction (see store.Usage):
// one BEGIN IMMEDIATE and one commit (one WAL sync) for the batch, the
// cached single-row INSERT executed once per row inside it (rows whose uid
// is stored already skipped).
func (s *Store) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	if err := s.appendUsageBatch(ctx, rs); err != nil {
		return fmt.Errorf("sqlite: append %d usage rows: %w", len(rs), mapErr(err))
	}
	return nil
}

func (s *Store) appendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	st, err := s.wstmt.get(ctx, qAppendUsage) // before BeginTx, see stmtCache.getAll
	if err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return err
	}
	defer rollback(tx)
	ins := tx.StmtContext(ctx, st)
	t := now()
	for _, r := range rs {
		if r.Time.IsZero() {
			r.Time = t
		}
		cached := 0
		if r.Cached {
			cached = 1
		}
		if _, err := ins.ExecContext(ctx, toMicros(r.Time), r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.Step,
			r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, r.CostUSD, cached, r.UID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// SumUsage sums the tenant's usage rows by a grouping (see store.Usage).
func (s *Store) SumUsage(ctx context.Context, q store.UsageQuery) ([]store.UsageGroup, error) {
	expr, ok := usageGroupExpr[q.GroupBy]
	if !ok {
		return nil, fmt.Errorf("sqlite: sum usage: unknown grouping %q", q.GroupBy)
	}
	out, err := s.sumUsage(ctx, expr, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: sum usage by %s: %w", q.GroupBy, err)
	}
	return out, nil
}

func (s *Store) sumUsage(ctx context.Context, expr string, q store.UsageQuery) ([]store.UsageGroup, error) {
	st, err := s.rstmt.get(ctx, usageSumQuery(expr))
	if err != nil {
		return nil, err
	}
	from, to := toMicros(q.From), toMicros(q.To)
	rows, err := st.QueryContext(ctx, q.Tenant, from, from, to, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.UsageGroup{}
	for rows.Next() {
		var g store.UsageGroup
		if err := rows.Scan(&g.Group, &g.Requests, &g.InputTokens, &g.OutputTokens,
			&g.CacheCreationInputTokens, &g.CacheReadInputTokens, &g.CostUSD); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}
