package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// The retention deletes (see store.Retention). Each deletes at most $2 rows
// chosen by a subquery, in one statement, so a batch holds its locks (on
// SQLite: the single writer) only briefly. Only terminal runs are in the
// partial index runs_finished_at the subqueries read; their status list
// must match the index's.
const (
	finishedRuns = `r.status IN ('succeeded', 'failed', 'canceled', 'interrupted') AND r.finished_at < $1`

	qDeleteRunEvents = `DELETE FROM run_events WHERE (run_id, seq) IN (
		SELECT e.run_id, e.seq FROM runs r JOIN run_events e ON e.run_id = r.id
		WHERE ` + finishedRuns + ` LIMIT $2)`
	qDeleteCheckpoints = `DELETE FROM checkpoints WHERE (run_id, step) IN (
		SELECT c.run_id, c.step FROM runs r JOIN checkpoints c ON c.run_id = r.id
		WHERE ` + finishedRuns + ` LIMIT $2)`
	qDeleteRuns = `DELETE FROM runs WHERE id IN (
		SELECT r.id FROM runs r
		WHERE ` + finishedRuns + `
			AND NOT EXISTS (SELECT 1 FROM run_events e WHERE e.run_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.run_id = r.id)
		LIMIT $2)`
	qDeleteAudit = `DELETE FROM audit WHERE id IN (
		SELECT id FROM audit WHERE created_at < $1 ORDER BY created_at LIMIT $2)`

	// qDeleteUsage returns the rows it deleted, so that exactly those
	// are rolled up even when two instances sweep at once.
	qDeleteUsage = `DELETE FROM usage WHERE id IN (
		SELECT id FROM usage WHERE created_at < $1 ORDER BY created_at LIMIT $2)
		RETURNING created_at, tenant, key, agent, model, input_tokens, output_tokens,
			cache_creation_input_tokens, cache_read_input_tokens, cost_nanos`
	qUpsertUsageDaily = `INSERT INTO usage_daily (day, tenant, key, agent, model, calls, input_tokens,
		output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_nanos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (tenant, day, key, agent, model) DO UPDATE SET
			calls = usage_daily.calls + excluded.calls,
			input_tokens = usage_daily.input_tokens + excluded.input_tokens,
			output_tokens = usage_daily.output_tokens + excluded.output_tokens,
			cache_creation_input_tokens = usage_daily.cache_creation_input_tokens + excluded.cache_creation_input_tokens,
			cache_read_input_tokens = usage_daily.cache_read_input_tokens + excluded.cache_read_input_tokens,
			cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos`
)

// DayLayout is the format of a usage day: the UTC date.
const DayLayout = "2006-01-02"

func (s *Store) deleteBatch(ctx context.Context, what, query string, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%s: delete %s: limit %d must be > 0", s.d.Name, what, limit)
	}
	n, err := s.db.Write.Exec(ctx, query, s.d.Time(before), limit)
	if err != nil {
		return 0, fmt.Errorf("%s: delete %s: %w", s.d.Name, what, s.d.MapErr(err))
	}
	return int(n), nil
}

// DeleteRunEvents deletes up to limit events of runs finished before
// finishedBefore (see store.Retention).
func (s *Store) DeleteRunEvents(ctx context.Context, finishedBefore time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "run events", qDeleteRunEvents, finishedBefore, limit)
}

// DeleteCheckpoints deletes up to limit checkpoints of runs finished before
// finishedBefore (see store.Retention).
func (s *Store) DeleteCheckpoints(ctx context.Context, finishedBefore time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "checkpoints", qDeleteCheckpoints, finishedBefore, limit)
}

// DeleteRuns deletes up to limit runs finished before finishedBefore that
// have no events and checkpoints left (see store.Retention).
func (s *Store) DeleteRuns(ctx context.Context, finishedBefore time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "runs", qDeleteRuns, finishedBefore, limit)
}

// DeleteAudit deletes up to limit audit rows created before createdBefore,
// which must be at least store.MinAuditRetention ago (see store.Retention).
func (s *Store) DeleteAudit(ctx context.Context, createdBefore time.Time, limit int) (int, error) {
	if createdBefore.After(time.Now().Add(-store.MinAuditRetention)) {
		return 0, fmt.Errorf("%s: delete audit: rows younger than %s are never deleted", s.d.Name, store.MinAuditRetention)
	}
	return s.deleteBatch(ctx, "audit", qDeleteAudit, createdBefore, limit)
}

// usageDayKey is a row of usage_daily.
type usageDayKey struct{ day, tenant, key, agent, model string }

// RollUpUsage deletes up to limit usage rows created before createdBefore
// and adds them to usage_daily, in one transaction (see store.Retention).
func (s *Store) RollUpUsage(ctx context.Context, createdBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%s: roll up usage: limit %d must be > 0", s.d.Name, limit)
	}
	n, err := s.rollUpUsage(ctx, createdBefore, limit)
	if err != nil {
		return 0, fmt.Errorf("%s: roll up usage: %w", s.d.Name, s.d.MapErr(err))
	}
	return n, nil
}

func (s *Store) rollUpUsage(ctx context.Context, createdBefore time.Time, limit int) (int, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	rows, err := tx.Query(ctx, qDeleteUsage, s.d.Time(createdBefore), limit)
	if err != nil {
		return 0, err
	}
	sums := map[usageDayKey]store.UsageTotals{}
	n := 0
	for rows.Next() {
		var (
			at time.Time
			k  usageDayKey
			u  store.UsageTotals
		)
		if err := rows.Scan(s.d.ScanTime(&at), &k.tenant, &k.key, &k.agent, &k.model, &u.InputTokens, &u.OutputTokens,
			&u.CacheCreationInputTokens, &u.CacheReadInputTokens, (*int64)(&u.CostUSD)); err != nil {
			rows.Close()
			return 0, err
		}
		u.Requests = 1
		k.day = at.UTC().Format(DayLayout)
		sums[k] = sums[k].Add(u)
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	keys := make([]usageDayKey, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	// A fixed order, so that concurrent roll-ups lock usage_daily rows in
	// the same order (no deadlock on PostgreSQL).
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.tenant != b.tenant {
			return a.tenant < b.tenant
		}
		if a.day != b.day {
			return a.day < b.day
		}
		if a.key != b.key {
			return a.key < b.key
		}
		if a.agent != b.agent {
			return a.agent < b.agent
		}
		return a.model < b.model
	})
	b := &Batch{Queries: make([]Queued, 0, len(keys))}
	for _, k := range keys {
		u := sums[k]
		b.Queue(qUpsertUsageDaily, k.day, k.tenant, k.key, k.agent, k.model, u.Requests, u.InputTokens,
			u.OutputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens, int64(u.CostUSD))
	}
	br := tx.SendBatch(ctx, b)
	for range keys {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return 0, err
		}
	}
	if err := br.Close(); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return n, nil
}
