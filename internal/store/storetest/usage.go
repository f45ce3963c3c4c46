package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Usage the suite pins down beyond its doc comments:
//   - every backend implements store.Usage;
//   - SumUsage is tenant-scoped, From inclusive and To exclusive (a zero
//     bound is open), one group per distinct value ordered by Group;
//   - day groups are UTC days formatted "2006-01-02", whatever the zone of
//     the times written;
//   - an empty Key groups as "";
//   - costs are integer nano-dollars and sum exactly;
//   - AppendUsageBatch writes what the same AppendUsage calls would, sets
//     a zero Time to now, accepts an empty or nil batch (writing nothing)
//     and writes nothing when its context is already done;
//   - a row whose UID is stored already (or earlier in its batch) is
//     skipped by AppendUsage and AppendUsageBatch: the same batch written
//     twice stores each row once; rows without a UID are never skipped.

func exerciseUsage[TTx any](t *testing.T, setup setupFunc[TTx]) {
	usage := func(t *testing.T, s Store[TTx]) store.Usage {
		t.Helper()
		u, ok := s.(store.Usage)
		require.True(t, ok, "%T does not implement store.Usage", s)
		return u
	}
	// 23:30 CEST on June 1st is 21:30 UTC: still June 1st in UTC.
	d1 := at("2025-06-01T21:30:00.000001Z")
	d2 := at("2025-06-02T23:59:59.999999Z")
	d3 := at("2025-06-03T00:00:00Z")

	seedRows := func() []store.UsageRecord {
		return []store.UsageRecord{
			{Time: d1, Tenant: "t1", Agent: "a1", Model: "m1", RunID: "r1", Step: 1, InputTokens: 100, OutputTokens: 10, CacheCreationInputTokens: 5, CacheReadInputTokens: 1, CostUSD: money.FromUSD(0.25)},
			{Time: d1, Tenant: "t1", Agent: "a1", Model: "m2", RunID: "r1", Step: 2, InputTokens: 200, OutputTokens: 20, CostUSD: money.FromUSD(0.5)},
			{Time: d2, Tenant: "t1", Key: "key_1", Agent: "a2", Model: "m1", RunID: "r2", Step: 1, InputTokens: 300, OutputTokens: 30, CacheReadInputTokens: 7, CostUSD: money.FromUSD(1.125)},
			{Time: d3, Tenant: "t1", Key: "key_1", Agent: "a2", Model: "m1", RunID: "r3", Step: 1, Cached: true},
			// Another tenant's row stays invisible.
			{Time: d1, Tenant: "t2", Agent: "a1", Model: "m1", RunID: "r9", Step: 1, InputTokens: 999, CostUSD: money.FromUSD(9)},
		}
	}
	seed := func(t *testing.T, u store.Usage) {
		t.Helper()
		ctx := t.Context()
		for _, r := range seedRows() {
			require.NoError(t, u.AppendUsage(ctx, r))
		}
	}
	requireGroups := func(t *testing.T, want, got []store.UsageGroup) {
		t.Helper()
		require.Len(t, got, len(want), "%+v", got)
		for i := range want {
			require.Equal(t, want[i], got[i])
		}
	}
	tot := func(req, in, out, cw, cr int64, usd float64) store.UsageTotals {
		return store.UsageTotals{Requests: req, InputTokens: in, OutputTokens: out, CacheCreationInputTokens: cw, CacheReadInputTokens: cr, CostUSD: money.FromUSD(usd)}
	}
	all := func(by string) store.UsageQuery {
		return store.UsageQuery{Tenant: "t1", GroupBy: by, From: d1.Add(-time.Hour), To: d3.Add(time.Hour)}
	}

	t.Run("GroupBy", func(t *testing.T) {
		s, ctx := setup(t)
		u := usage(t, s)
		seed(t, u)
		for _, tc := range []struct {
			by   string
			want []store.UsageGroup
		}{
			{store.UsageByAgent, []store.UsageGroup{
				{Group: "a1", UsageTotals: tot(2, 300, 30, 5, 1, 0.75)},
				{Group: "a2", UsageTotals: tot(2, 300, 30, 0, 7, 1.125)},
			}},
			{store.UsageByModel, []store.UsageGroup{
				{Group: "m1", UsageTotals: tot(3, 400, 40, 5, 8, 1.375)},
				{Group: "m2", UsageTotals: tot(1, 200, 20, 0, 0, 0.5)},
			}},
			{store.UsageByKey, []store.UsageGroup{
				{Group: "", UsageTotals: tot(2, 300, 30, 5, 1, 0.75)},
				{Group: "key_1", UsageTotals: tot(2, 300, 30, 0, 7, 1.125)},
			}},
			{store.UsageByDay, []store.UsageGroup{
				{Group: "2025-06-01", UsageTotals: tot(2, 300, 30, 5, 1, 0.75)},
				{Group: "2025-06-02", UsageTotals: tot(1, 300, 30, 0, 7, 1.125)},
				{Group: "2025-06-03", UsageTotals: tot(1, 0, 0, 0, 0, 0)},
			}},
		} {
			got, err := u.SumUsage(ctx, all(tc.by))
			require.NoError(t, err, tc.by)
			requireGroups(t, tc.want, got)
		}
	})

	t.Run("TimeBounds", func(t *testing.T) {
		s, ctx := setup(t)
		u := usage(t, s)
		seed(t, u)
		// From is inclusive, To exclusive: [d1, d3) holds d1's and d2's rows.
		got, err := u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByDay, From: d1, To: d3})
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{
			{Group: "2025-06-01", UsageTotals: tot(2, 300, 30, 5, 1, 0.75)},
			{Group: "2025-06-02", UsageTotals: tot(1, 300, 30, 0, 7, 1.125)},
		}, got)
		// A microsecond after d1 excludes it.
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent, From: d1.Add(time.Microsecond), To: d3})
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{{Group: "a2", UsageTotals: tot(1, 300, 30, 0, 7, 1.125)}}, got)
		// Open bounds.
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByModel})
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, int64(4), got[0].Requests+got[1].Requests)
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByModel, To: d2})
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, int64(2), got[0].Requests+got[1].Requests)
		// Nothing in range: empty, not nil.
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent, From: d3.Add(time.Hour), To: d3.Add(2 * time.Hour)})
		require.NoError(t, err)
		require.NotNil(t, got)
		require.Empty(t, got)
		// Another tenant sees its own rows only.
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t2", GroupBy: store.UsageByAgent})
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{{Group: "a1", UsageTotals: tot(1, 999, 0, 0, 0, 9)}}, got)
	})

	t.Run("ExactSums", func(t *testing.T) {
		// Costs are integer nano-dollars: sums are exact, never float
		// artifacts such as 0.0018180000000000002 (issue 16).
		s, ctx := setup(t)
		u := usage(t, s)
		d := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
		rs := []store.UsageRecord{
			{Time: d, Tenant: "t1", Agent: "a", Model: "m", RunID: "r", Step: 1, CostUSD: 303_000},
			{Time: d, Tenant: "t1", Agent: "a", Model: "m", RunID: "r", Step: 2, CostUSD: 1_515_000},
		}
		for i := range 1000 {
			rs = append(rs, store.UsageRecord{Time: d, Tenant: "t1", Agent: "b", Model: "m", RunID: "r2", Step: i + 1, CostUSD: 100})
		}
		require.NoError(t, u.AppendUsageBatch(ctx, rs))
		got, err := u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent})
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, money.Nanos(1_818_000), got[0].CostUSD)
		require.Equal(t, "0.001818", got[0].CostUSD.String())
		require.Equal(t, money.Nanos(100_000), got[1].CostUSD, "1000 × 0.0000001 USD")
	})

	t.Run("ZeroTimeIsNowAndBadGrouping", func(t *testing.T) {
		s, ctx := setup(t)
		u := usage(t, s)
		before := time.Now().Add(-time.Second)
		require.NoError(t, u.AppendUsage(ctx, store.UsageRecord{Tenant: "t1", Agent: "a", Model: "m", RunID: "r", CostUSD: money.FromUSD(0.001)}))
		got, err := u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByDay, From: before, To: time.Now().Add(time.Second)})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, time.Now().UTC().Format(time.DateOnly), got[0].Group)

		_, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: "run_id; DROP TABLE usage"})
		require.Error(t, err)
	})

	t.Run("Batch", func(t *testing.T) {
		s, ctx := setup(t)
		u := usage(t, s)
		require.NoError(t, u.AppendUsageBatch(ctx, nil))
		require.NoError(t, u.AppendUsageBatch(ctx, []store.UsageRecord{}))
		// A batch whose context is done writes nothing.
		done, cancel := context.WithCancel(ctx)
		cancel()
		require.Error(t, u.AppendUsageBatch(done, seedRows()))
		got, err := u.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent})
		require.NoError(t, err)
		require.Empty(t, got)

		// One batch sums as the same rows appended one by one (GroupBy).
		require.NoError(t, u.AppendUsageBatch(ctx, seedRows()))
		got, err = u.SumUsage(ctx, all(store.UsageByDay))
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{
			{Group: "2025-06-01", UsageTotals: tot(2, 300, 30, 5, 1, 0.75)},
			{Group: "2025-06-02", UsageTotals: tot(1, 300, 30, 0, 7, 1.125)},
			{Group: "2025-06-03", UsageTotals: tot(1, 0, 0, 0, 0, 0)},
		}, got)
		got, err = u.SumUsage(ctx, all(store.UsageByKey))
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{
			{Group: "", UsageTotals: tot(2, 300, 30, 5, 1, 0.75)},
			{Group: "key_1", UsageTotals: tot(2, 300, 30, 0, 7, 1.125)},
		}, got)
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t2", GroupBy: store.UsageByModel})
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{{Group: "m1", UsageTotals: tot(1, 999, 0, 0, 0, 9)}}, got)

		// A large batch, zero times set to now.
		before := time.Now().Add(-time.Second)
		big := make([]store.UsageRecord, 1200)
		for i := range big {
			big[i] = store.UsageRecord{Tenant: "t3", Agent: "a", Model: "m", RunID: "r", Step: i + 1,
				InputTokens: 1, OutputTokens: 2, CacheCreationInputTokens: 3, CacheReadInputTokens: 4, CostUSD: money.FromUSD(0.001), Cached: i%2 == 0}
		}
		require.NoError(t, u.AppendUsageBatch(ctx, big))
		got, err = u.SumUsage(ctx, store.UsageQuery{Tenant: "t3", GroupBy: store.UsageByDay, From: before, To: time.Now().Add(time.Second)})
		require.NoError(t, err)
		requireGroups(t, []store.UsageGroup{
			{Group: time.Now().UTC().Format(time.DateOnly), UsageTotals: tot(1200, 1200, 2400, 3600, 4800, 1.2)},
		}, got)
	})

	t.Run("BatchIdempotent", func(t *testing.T) {
		s, ctx := setup(t)
		u := usage(t, s)
		d := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
		batch := make([]store.UsageRecord, 300)
		for i := range batch {
			batch[i] = store.UsageRecord{Time: d, Tenant: "t1", Agent: "a", Model: "m", RunID: "r", Step: i + 1,
				InputTokens: 10, OutputTokens: 1, CostUSD: money.FromUSD(0.5), UID: fmt.Sprintf("uid-%04d", i)}
		}
		sum := func(t *testing.T, tenant string) []store.UsageGroup {
			t.Helper()
			got, err := u.SumUsage(ctx, store.UsageQuery{Tenant: tenant, GroupBy: store.UsageByAgent})
			require.NoError(t, err)
			return got
		}
		// The same batch twice (a retry after an error although the first
		// write committed): each row stored once.
		require.NoError(t, u.AppendUsageBatch(ctx, batch))
		require.NoError(t, u.AppendUsageBatch(ctx, batch))
		requireGroups(t, []store.UsageGroup{{Group: "a", UsageTotals: tot(300, 3000, 300, 0, 0, 150)}}, sum(t, "t1"))
		// A batch overlapping stored rows writes only the new ones; a
		// UID repeated within a batch is stored once.
		more := append([]store.UsageRecord{}, batch[250:]...)
		for i := range 60 {
			more = append(more, store.UsageRecord{Time: d, Tenant: "t1", Agent: "a", Model: "m", RunID: "r", Step: 301 + i,
				InputTokens: 10, OutputTokens: 1, CostUSD: money.FromUSD(0.5), UID: fmt.Sprintf("uid-%04d", 300+i)})
		}
		more = append(more, more[len(more)-1])
		require.NoError(t, u.AppendUsageBatch(ctx, more))
		requireGroups(t, []store.UsageGroup{{Group: "a", UsageTotals: tot(360, 3600, 360, 0, 0, 180)}}, sum(t, "t1"))
		// AppendUsage skips a stored UID too.
		require.NoError(t, u.AppendUsage(ctx, batch[0]))
		requireGroups(t, []store.UsageGroup{{Group: "a", UsageTotals: tot(360, 3600, 360, 0, 0, 180)}}, sum(t, "t1"))

		// Rows with distinct UIDs, and rows without one (never skipped),
		// are all stored.
		distinct := []store.UsageRecord{
			{Time: d, Tenant: "t2", Agent: "a", Model: "m", RunID: "r", InputTokens: 1, CostUSD: money.FromUSD(1), UID: "x-1"},
			{Time: d, Tenant: "t2", Agent: "a", Model: "m", RunID: "r", InputTokens: 1, CostUSD: money.FromUSD(1), UID: "x-2"},
			{Time: d, Tenant: "t2", Agent: "a", Model: "m", RunID: "r", InputTokens: 1, CostUSD: money.FromUSD(1)},
			{Time: d, Tenant: "t2", Agent: "a", Model: "m", RunID: "r", InputTokens: 1, CostUSD: money.FromUSD(1)},
		}
		require.NoError(t, u.AppendUsageBatch(ctx, distinct))
		require.NoError(t, u.AppendUsageBatch(ctx, distinct[2:]))
		require.NoError(t, u.AppendUsage(ctx, distinct[3]))
		requireGroups(t, []store.UsageGroup{{Group: "a", UsageTotals: tot(7, 7, 0, 0, 0, 7)}}, sum(t, "t2"))
	})
}
