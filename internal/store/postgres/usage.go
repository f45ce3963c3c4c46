package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Usage = (*Store)(nil)

// qAppendUsage inserts one row; a row whose uid is stored already is
// skipped (an empty uid is stored as NULL, which never conflicts).
const qAppendUsage = `INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cached, uid)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULLIF($14, ''))
	ON CONFLICT (uid) DO NOTHING`

// qAppendUsageBatch inserts a batch given as one array per column: a
// single statement (all or nothing) of any size, the rows inserted in
// array order (ORDER BY ord) so that the identity column numbers them in
// batch order. COPY cannot skip conflicts; ON CONFLICT does, so a batch
// written again (a retry after an error although it committed) stores
// none of its rows twice.
const qAppendUsageBatch = `INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cached, uid)
	SELECT created_at, tenant, key, agent, model, run_id, step,
		input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cached, NULLIF(uid, '')
	FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[],
		$8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::double precision[], $13::boolean[], $14::text[])
		WITH ORDINALITY AS b(created_at, tenant, key, agent, model, run_id, step,
			input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd, cached, uid, ord)
	ORDER BY ord
	ON CONFLICT (uid) DO NOTHING`

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
		r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, r.CostUSD, r.Cached, r.UID)
	if err != nil {
		return fmt.Errorf("postgres: append usage of run %s: %w", r.RunID, mapErr(err))
	}
	return nil
}

// AppendUsageBatch writes usage rows with one INSERT (see store.Usage and
// qAppendUsageBatch).
func (s *Store) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	t := now()
	n := len(rs)
	var (
		times                                   = make([]time.Time, n)
		tenants, keys, agents, models, runs     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		steps                                   = make([]int, n)
		inputs, outputs, cacheWrites, cacheRead = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		costs                                   = make([]float64, n)
		cached                                  = make([]bool, n)
		uids                                    = make([]string, n)
	)
	for i, r := range rs {
		if r.Time.IsZero() {
			r.Time = t
		}
		times[i] = normTime(r.Time)
		tenants[i], keys[i], agents[i], models[i], runs[i] = r.Tenant, r.Key, r.Agent, r.Model, r.RunID
		steps[i] = r.Step
		inputs[i], outputs[i], cacheWrites[i], cacheRead[i] = r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens
		costs[i], cached[i], uids[i] = r.CostUSD, r.Cached, r.UID
	}
	_, err := s.pool.Exec(ctx, qAppendUsageBatch, times, tenants, keys, agents, models, runs, steps,
		inputs, outputs, cacheWrites, cacheRead, costs, cached, uids)
	if err != nil {
		return fmt.Errorf("postgres: append %d usage rows: %w", len(rs), mapErr(err))
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
