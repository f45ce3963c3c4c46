package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Usage = (*Store)(nil)

const qAppendUsage = `INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cached)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`

// usageGroupExpr maps a grouping to its SQL expression (never user text).
var usageGroupExpr = map[string]string{
	store.UsageByAgent: "agent",
	store.UsageByModel: "model",
	store.UsageByKey:   "key",
	store.UsageByDay:   "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}

// usageSumQuery is the SumUsage query for one grouping.
func usageSumQuery(expr string) string {
	return `SELECT ` + expr + ` AS grp, COUNT(*), COALESCE(SUM(input_tokens), 0)::bigint, COALESCE(SUM(output_tokens), 0)::bigint,
		COALESCE(SUM(cache_creation_input_tokens), 0)::bigint, COALESCE(SUM(cache_read_input_tokens), 0)::bigint,
		COALESCE(SUM(cost_usd), 0)::double precision
		FROM usage
		WHERE tenant = $1 AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3)
		GROUP BY grp ORDER BY grp`
}

// AppendUsage writes one usage row (see store.Usage).
func (s *Store) AppendUsage(ctx context.Context, r store.UsageRecord) error {
	if r.Time.IsZero() {
		r.Time = now()
	}
	_, err := s.pool.Exec(ctx, qAppendUsage, normTime(r.Time), r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.Step,
		r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, r.CostUSD, r.Cached)
	if err != nil {
		return fmt.Errorf("postgres: append usage of run %s: %w", r.RunID, mapErr(err))
	}
	return nil
}

// usageColumns are the columns AppendUsageBatch copies, in order.
var usageColumns = []string{"created_at", "tenant", "key", "agent", "model", "run_id", "step",
	"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd", "cached"}

// AppendUsageBatch writes usage rows with one COPY (see store.Usage): a
// single statement, so all or nothing, and the identity column numbers
// the rows in the order they are sent.
func (s *Store) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	t := now()
	rows := make([][]any, len(rs))
	for i, r := range rs {
		if r.Time.IsZero() {
			r.Time = t
		}
		rows[i] = []any{normTime(r.Time), r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.Step,
			r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, r.CostUSD, r.Cached}
	}
	n, err := s.pool.CopyFrom(ctx, pgx.Identifier{"usage"}, usageColumns, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("postgres: append %d usage rows: %w", len(rs), mapErr(err))
	}
	if n != int64(len(rs)) {
		return fmt.Errorf("postgres: append %d usage rows: copied %d", len(rs), n)
	}
	return nil
}

// SumUsage sums the tenant's usage rows by a grouping (see store.Usage).
func (s *Store) SumUsage(ctx context.Context, q store.UsageQuery) ([]store.UsageGroup, error) {
	expr, ok := usageGroupExpr[q.GroupBy]
	if !ok {
		return nil, fmt.Errorf("postgres: sum usage: unknown grouping %q", q.GroupBy)
	}
	rows, err := s.pool.Query(ctx, usageSumQuery(expr), q.Tenant, toTime(q.From), toTime(q.To))
	if err != nil {
		return nil, fmt.Errorf("postgres: sum usage by %s: %w", q.GroupBy, err)
	}
	defer rows.Close()
	out := []store.UsageGroup{}
	for rows.Next() {
		var g store.UsageGroup
		if err := rows.Scan(&g.Group, &g.Requests, &g.InputTokens, &g.OutputTokens,
			&g.CacheCreationInputTokens, &g.CacheReadInputTokens, &g.CostUSD); err != nil {
			return nil, fmt.Errorf("postgres: sum usage by %s: %w", q.GroupBy, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: sum usage by %s: %w", q.GroupBy, err)
	}
	return out, nil
}
