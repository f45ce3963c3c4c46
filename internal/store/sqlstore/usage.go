package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"time"

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
	rows.Close()
	daily, err := s.sumUsageDaily(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: sum usage by %s: %w", s.d.Name, q.GroupBy, err)
	}
	return mergeGroups(out, daily), nil
}

// qSumUsageDaily sums usage_daily like usageSumQuery sums usage; grp is a
// column of the table (day, agent, model, key).
func qSumUsageDaily(grp string) string {
	return `SELECT ` + grp + ` AS grp, CAST(SUM(calls) AS bigint), CAST(SUM(input_tokens) AS bigint),
		CAST(SUM(output_tokens) AS bigint), CAST(SUM(cache_creation_input_tokens) AS bigint),
		CAST(SUM(cache_read_input_tokens) AS bigint), CAST(SUM(cost_nanos) AS bigint)
		FROM usage_daily WHERE tenant = $1 AND day >= $2 AND day < $3
		GROUP BY grp ORDER BY grp`
}

// sumUsageDaily sums the rolled-up usage (RollUpUsage) of the tenant by
// q.GroupBy. A day's totals count at the start of the UTC day: they are in
// [From, To) when that instant is.
func (s *Store) sumUsageDaily(ctx context.Context, q store.UsageQuery) ([]store.UsageGroup, error) {
	grp := q.GroupBy
	if grp == store.UsageByDay {
		grp = "day"
	}
	from, to := "", "~" // every day, "YYYY-MM-DD", is in ["", "~")
	if !q.From.IsZero() {
		from = ceilDay(q.From)
	}
	if !q.To.IsZero() {
		to = ceilDay(q.To)
	}
	rows, err := s.db.Read.Query(ctx, qSumUsageDaily(grp), q.Tenant, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.UsageGroup
	for rows.Next() {
		var g store.UsageGroup
		if err := rows.Scan(&g.Group, &g.Requests, &g.InputTokens, &g.OutputTokens,
			&g.CacheCreationInputTokens, &g.CacheReadInputTokens, (*int64)(&g.CostUSD)); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// ceilDay is the first UTC day that starts at or after t.
func ceilDay(t time.Time) string {
	t = t.UTC()
	d := t.Truncate(24 * time.Hour)
	if d.Before(t) {
		d = d.Add(24 * time.Hour)
	}
	return d.Format(DayLayout)
}

// mergeGroups adds the groups of b to those of a (the totals of a group in
// both are added), ordered by Group. Without b, a is returned as it is.
func mergeGroups(a, b []store.UsageGroup) []store.UsageGroup {
	if len(b) == 0 {
		return a
	}
	at := make(map[string]int, len(a))
	for i, g := range a {
		at[g.Group] = i
	}
	for _, g := range b {
		if i, ok := at[g.Group]; ok {
			a[i].UsageTotals = a[i].UsageTotals.Add(g.UsageTotals)
			continue
		}
		at[g.Group] = len(a)
		a = append(a, g)
	}
	sort.SliceStable(a, func(i, j int) bool { return a[i].Group < a[j].Group })
	return a
}
