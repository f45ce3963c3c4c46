package sqlstore

import (
	"context"
	"fmt"

	"github.com/agentd/agentd/internal/store"
)

// QAppendUsage inserts one row; a row whose uid is stored already is
// skipped (an empty uid is stored as NULL, which never conflicts), so a
// batch written again stores none of its rows twice.
const QAppendUsage = `INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_nanos, cached, uid)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULLIF($14, ''))
	ON CONFLICT (uid) DO NOTHING`

// AppendUsage writes one usage row (see store.Usage).
func (s *Store) AppendUsage(ctx context.Context, r store.UsageRecord) error {
	if r.Time.IsZero() {
		r.Time = Now()
	}
	if err := s.appendUsage(ctx, s.db.Write, r); err != nil {
		return fmt.Errorf("%s: append usage of run %s: %w", s.d.Name, r.RunID, s.d.MapErr(err))
	}
	return nil
}

func (s *Store) appendUsage(ctx context.Context, q Querier, r store.UsageRecord) error {
	_, err := q.Exec(ctx, QAppendUsage, s.d.Time(r.Time), r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.Step,
		r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, int64(r.CostUSD), r.Cached, r.UID)
	return err
}

// AppendUsageBatch writes usage rows in one transaction (see store.Usage):
// one commit for the batch (SQLite: one BEGIN IMMEDIATE and one WAL sync),
// the single-row INSERT executed once per row inside it (rows whose uid is
// stored already skipped). A backend with a bulk insert overrides it.
func (s *Store) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	if err := s.appendUsageBatch(ctx, rs); err != nil {
		return fmt.Errorf("%s: append %d usage rows: %w", s.d.Name, len(rs), s.d.MapErr(err))
	}
	return nil
}

func (s *Store) appendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	t := Now()
	for _, r := range rs {
		if r.Time.IsZero() {
			r.Time = t
		}
		if err := s.appendUsage(ctx, tx, r); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// usageSumQuery is the SumUsage query for one grouping expression.
func usageSumQuery(expr, timeType string) string {
	return `SELECT ` + expr + ` AS grp, COUNT(*), CAST(COALESCE(SUM(input_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(output_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(cache_creation_input_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(cache_read_input_tokens), 0) AS bigint),
		CAST(COALESCE(SUM(cost_nanos), 0) AS bigint)
		FROM usage
		WHERE tenant = $1 AND (CAST($2 AS ` + timeType + `) IS NULL OR created_at >= $2)
			AND (CAST($3 AS ` + timeType + `) IS NULL OR created_at < $3)
		GROUP BY grp ORDER BY grp`
}

// SumUsage sums the tenant's usage rows by a grouping (see store.Usage).
func (s *Store) SumUsage(ctx context.Context, q store.UsageQuery) ([]store.UsageGroup, error) {
	var expr string
	switch q.GroupBy {
	case store.UsageByAgent, store.UsageByModel, store.UsageByKey:
		expr = q.GroupBy // the column of the same name (never user text)
	case store.UsageByDay:
		expr = s.d.UsageDay
	default:
		return nil, fmt.Errorf("%s: sum usage: unknown grouping %q", s.d.Name, q.GroupBy)
	}
	rows, err := s.db.Read.Query(ctx, usageSumQuery(expr, s.d.TimeType), q.Tenant, s.d.Time(q.From), s.d.Time(q.To))
	if err != nil {
		return nil, fmt.Errorf("%s: sum usage by %s: %w", s.d.Name, q.GroupBy, err)
	}
	defer rows.Close()
	out := []store.UsageGroup{}
	for rows.Next() {
		var g store.UsageGroup
		if err := rows.Scan(&g.Group, &g.Requests, &g.InputTokens, &g.OutputTokens,
			&g.CacheCreationInputTokens, &g.CacheReadInputTokens, (*int64)(&g.CostUSD)); err != nil {
			return nil, fmt.Errorf("%s: sum usage by %s: %w", s.d.Name, q.GroupBy, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: sum usage by %s: %w", s.d.Name, q.GroupBy, err)
	}
	return out, nil
}
