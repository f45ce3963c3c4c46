package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// QAppendUsage inserts one row; a row whose uid is stored already is
// skipped (an empty uid is stored as NULL, which never conflicts), so a
// batch written again stores none of its rows twice.
var QAppendUsage = usageInsert(dollarParam, 1)

// usageColumns is the number of parameters of one row of usageInsert.
const usageColumns = 14

// usageInsert is QAppendUsage for n rows, inserted in order (their ids
// increase in that order), each with the parameters of appendUsageArgs.
func usageInsert(param func(int) string, n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_nanos, cached, uid)
	VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := 1; c < usageColumns; c++ {
			b.WriteString(param(i*usageColumns + c))
			b.WriteString(", ")
		}
		b.WriteString("NULLIF(" + param((i+1)*usageColumns) + ", ''))")
	}
	b.WriteString("\n\tON CONFLICT (uid) DO NOTHING")
	return b.String()
}

// maxUsageRows bounds the rows of one usage insert of a batch.
const maxUsageRows = 64

// usageInserts returns usageInsert(param, n) for n a power of two up to
// maxUsageRows: a batch is written in inserts of those sizes
// (usageChunk), so a connection prepares at most seven statement texts.
func usageInserts(param func(int) string) map[int]string {
	q := map[int]string{}
	for n := 1; n <= maxUsageRows; n *= 2 {
		q[n] = usageInsert(param, n)
	}
	return q
}

// usageChunk is the rows of the next insert of a batch of n rows: the
// largest power of two not above n, at most maxUsageRows.
func usageChunk(n int) int {
	c := maxUsageRows
	for c > n {
		c /= 2
	}
	return c
}

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
	_, err := q.Exec(ctx, QAppendUsage, s.appendUsageArgs(nil, r)...)
	return err
}

// appendUsageArgs appends the usageColumns parameters of r's row to args.
func (s *Store) appendUsageArgs(args []any, r store.UsageRecord) []any {
	return append(args, s.d.Time(r.Time), r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.Step,
		r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens, int64(r.CostUSD), r.Cached, r.UID)
}

// AppendUsageBatch writes usage rows in one transaction (see store.Usage):
// one commit for the batch (SQLite: one BEGIN IMMEDIATE and one WAL sync),
// the rows in inserts of up to 64 rows (usageChunk), rows whose uid is stored
// already (or earlier in the batch) skipped. A backend with a bulk insert
// of its own overrides it (PostgreSQL's takes arrays).
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
	args := make([]any, 0, usageColumns*min(len(rs), maxUsageRows))
	for rest := rs; len(rest) > 0; {
		n := usageChunk(len(rest))
		args = args[:0]
		for _, r := range rest[:n] {
			if r.Time.IsZero() {
				r.Time = t
			}
			args = s.appendUsageArgs(args, r)
		}
		if _, err := tx.Exec(ctx, s.qUsageRows[n], args...); err != nil {
			return err
		}
		rest = rest[n:]
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
