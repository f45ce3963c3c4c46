package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlstore"
)

// qAppendUsageBatch inserts a batch given as one array per column: a
// single statement (all or nothing) of any size, the rows inserted in
// array order (ORDER BY ord) so that the identity column numbers them in
// batch order. COPY cannot skip conflicts; ON CONFLICT does, so a batch
// written again (a retry after an error although it committed) stores
// none of its rows twice.
const qAppendUsageBatch = `INSERT INTO usage (created_at, tenant, key, agent, model, run_id, step,
	input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_nanos, cached, uid)
	SELECT created_at, tenant, key, agent, model, run_id, step,
		input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_nanos, cached, NULLIF(uid, '')
	FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[],
		$8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::boolean[], $14::text[])
		WITH ORDINALITY AS b(created_at, tenant, key, agent, model, run_id, step,
			input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_nanos, cached, uid, ord)
	ORDER BY ord
	ON CONFLICT (uid) DO NOTHING`

// AppendUsageBatch writes usage rows with one INSERT (see store.Usage and
// qAppendUsageBatch), instead of sqlstore's one INSERT per row.
func (s *Store) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	t := sqlstore.Now()
	n := len(rs)
	var (
		times                                   = make([]time.Time, n)
		tenants, keys, agents, models, runs     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		steps                                   = make([]int, n)
		inputs, outputs, cacheWrites, cacheRead = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		costs                                   = make([]int64, n)
		cached                                  = make([]bool, n)
		uids                                    = make([]string, n)
	)
	for i, r := range rs {
		if r.Time.IsZero() {
			r.Time = t
		}
		times[i] = sqlstore.NormTime(r.Time)
		tenants[i], keys[i], agents[i], models[i], runs[i] = r.Tenant, r.Key, r.Agent, r.Model, r.RunID
		steps[i] = r.Step
		inputs[i], outputs[i], cacheWrites[i], cacheRead[i] = r.InputTokens, r.OutputTokens, r.CacheCreationInputTokens, r.CacheReadInputTokens
		costs[i], cached[i], uids[i] = int64(r.CostUSD), r.Cached, r.UID
	}
	err := s.guard.Do(ctx, func() error {
		_, err := s.pool.Exec(ctx, qAppendUsageBatch, times, tenants, keys, agents, models, runs, steps,
			inputs, outputs, cacheWrites, cacheRead, costs, cached, uids)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: append %d usage rows: %w", len(rs), mapErr(err))
	}
	return nil
}
