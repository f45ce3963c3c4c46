package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Budgets the suite pins down beyond its doc comments:
//   - every backend implements store.Budgets;
//   - a reservation that does not fit one counter reserves on none;
//   - a reservation that exactly fills a limit fits (within 1e-9);
//   - ReserveBudget returns the counters in key order (SortBudgetLimits);
//   - expired reservations stop counting at once, before any sweep;
//   - concurrent reservations never together overrun a limit.

func exerciseBudgets[TTx any](t *testing.T, setup setupFunc[TTx]) {
	budgets := func(t *testing.T, s Store[TTx]) store.Budgets {
		t.Helper()
		b, ok := s.(store.Budgets)
		require.True(t, ok, "%T does not implement store.Budgets", s)
		return b
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	later := now.Add(48 * time.Hour)
	limit := func(scope, subject string, usd float64) store.BudgetLimit {
		return store.BudgetLimit{BudgetCounterKey: store.BudgetCounterKey{Scope: scope, Subject: subject, Period: "d:2026-12-01"},
			LimitUSD: money.FromUSD(usd), ExpiresAt: later}
	}
	reserve := func(id string, amount float64, ls ...store.BudgetLimit) store.ReserveBudgetParams {
		return store.ReserveBudgetParams{ReservationID: id, Limits: ls, AmountUSD: money.FromUSD(amount), Now: now, ExpiresAt: now.Add(time.Minute)}
	}

	t.Run("ExactAmounts", func(t *testing.T) {
		// Amounts are integer nano-dollars: 200 reservations of $0.000303
		// fill a limit of exactly 200 × 0.000303 = $0.0606, one more does
		// not fit, and the settled spend is that sum exactly.
		s, ctx := setup(t)
		b := budgets(t, s)
		const n, each = 200, money.Nanos(303_000)
		l := store.BudgetLimit{BudgetCounterKey: store.BudgetCounterKey{Scope: "tenant", Subject: "exact", Period: "d:2026-12-01"},
			LimitUSD: n * each, ExpiresAt: later}
		for i := range n {
			p := store.ReserveBudgetParams{ReservationID: fmt.Sprintf("x%d", i), Limits: []store.BudgetLimit{l}, AmountUSD: each, Now: now, ExpiresAt: now.Add(time.Hour)}
			_, ok, err := b.ReserveBudget(ctx, p)
			require.NoError(t, err)
			require.True(t, ok, "reservation %d", i)
		}
		cs, ok, err := b.ReserveBudget(ctx, store.ReserveBudgetParams{ReservationID: "over", Limits: []store.BudgetLimit{l}, AmountUSD: 1, Now: now, ExpiresAt: now.Add(time.Hour)})
		require.NoError(t, err)
		require.False(t, ok, "one nano-dollar more does not fit")
		require.Equal(t, n*each, cs[0].ReservedUSD)
		for i := range n {
			cs, err = b.SettleBudget(ctx, store.SettleBudgetParams{ReservationID: fmt.Sprintf("x%d", i), Limits: []store.BudgetLimit{l}, ActualUSD: each, Now: now})
			require.NoError(t, err)
		}
		require.Equal(t, n*each, cs[0].SpentUSD)
		require.Zero(t, cs[0].ReservedUSD)
		require.Equal(t, "0.0606", cs[0].SpentUSD.String())
	})

	t.Run("ReserveSettle", func(t *testing.T) {
		s, ctx := setup(t)
		b := budgets(t, s)
		tenant, agent := limit("tenant", newID("t"), 1), limit("agent", newID("a"), 10)

		cs, ok, err := b.ReserveBudget(ctx, reserve("r1", 0.75, tenant, agent))
		require.NoError(t, err)
		require.True(t, ok)
		require.Len(t, cs, 2)
		require.Equal(t, "agent", cs[0].Scope, "counters in key order")
		require.Zero(t, cs[1].SpentUSD)
		require.Zero(t, cs[1].ReservedUSD, "state before the reservation")
		require.Equal(t, money.FromUSD(1), cs[1].LimitUSD)

		// 0.75 reserved: 0.5 more does not fit the tenant, and nothing is
		// reserved on the agent either.
		cs, ok, err = b.ReserveBudget(ctx, reserve("r2", 0.5, tenant, agent))
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, money.FromUSD(0.75), cs[1].ReservedUSD)
		// Exactly filling the limit fits.
		_, ok, err = b.ReserveBudget(ctx, reserve("r3", 0.25, tenant))
		require.NoError(t, err)
		require.True(t, ok)
		cs, ok, err = b.ReserveBudget(ctx, reserve("r4", 0, agent))
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, money.FromUSD(0.75), cs[0].ReservedUSD, "the refused r2 left nothing on the agent")

		// Settling r1 at 0.1 releases 0.65 and spends 0.1.
		cs, err = b.SettleBudget(ctx, store.SettleBudgetParams{ReservationID: "r1", Limits: []store.BudgetLimit{tenant, agent}, ActualUSD: money.FromUSD(0.1), Now: now})
		require.NoError(t, err)
		require.Len(t, cs, 2)
		require.Equal(t, money.FromUSD(0.1), cs[1].SpentUSD)
		require.Equal(t, money.FromUSD(0.25), cs[1].ReservedUSD, "r3 still held")
		require.Equal(t, money.FromUSD(0.1), cs[0].SpentUSD)
		require.Equal(t, money.FromUSD(0), cs[0].ReservedUSD)
		_, ok, err = b.ReserveBudget(ctx, reserve("r5", 0.65, tenant))
		require.NoError(t, err)
		require.True(t, ok, "what settle released is available again")
		_, ok, err = b.ReserveBudget(ctx, reserve("r6", 0.01, tenant))
		require.NoError(t, err)
		require.False(t, ok)

		// A limit raised in the config applies to the next reservation.
		tenant.LimitUSD = 2 * money.PerUSD
		cs, ok, err = b.ReserveBudget(ctx, reserve("r7", 0.5, tenant))
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, money.FromUSD(2), cs[0].LimitUSD)
	})

	t.Run("ExpiredReservationsStopCounting", func(t *testing.T) {
		s, ctx := setup(t)
		b := budgets(t, s)
		l := limit("key", newID("key"), 1)
		_, ok, err := b.ReserveBudget(ctx, reserve("dead", 1, l)) // its process dies
		require.NoError(t, err)
		require.True(t, ok)
		_, ok, err = b.ReserveBudget(ctx, reserve("blocked", 0.5, l))
		require.NoError(t, err)
		require.False(t, ok)

		p := reserve("after", 0.5, l)
		p.Now = now.Add(time.Minute + time.Second) // "dead" expired
		p.ExpiresAt = p.Now.Add(time.Minute)
		cs, ok, err := b.ReserveBudget(ctx, p)
		require.NoError(t, err)
		require.True(t, ok, "an expired reservation must not hold the budget")
		require.Zero(t, cs[0].ReservedUSD)

		// The sweep deletes the expired reservation row, not the live one
		// nor the counter.
		n, err := b.DeleteExpiredBudgets(ctx, now.Add(time.Minute+time.Second))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		// A settle of a swept reservation still records the spend.
		cs, err = b.SettleBudget(ctx, store.SettleBudgetParams{ReservationID: "dead", Limits: []store.BudgetLimit{l}, ActualUSD: money.FromUSD(0.2), Now: p.Now})
		require.NoError(t, err)
		require.Equal(t, money.FromUSD(0.2), cs[0].SpentUSD)
		require.Equal(t, money.FromUSD(0.5), cs[0].ReservedUSD)

		// After its period, the counter goes too.
		n, err = b.DeleteExpiredBudgets(ctx, later.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, 2, n, "the reservation 'after' and the counter")
	})

	t.Run("MarkAlert", func(t *testing.T) {
		s, ctx := setup(t)
		b := budgets(t, s)
		l := limit("tenant", newID("t"), 1)
		prev, err := b.MarkBudgetAlert(ctx, l.BudgetCounterKey, 0.5)
		require.NoError(t, err)
		require.InDelta(t, 0.5, prev, 1e-9, "no counter: nothing to raise")
		// A refused reservation creates the counter too (its alert can be
		// marked).
		_, ok, err := b.ReserveBudget(ctx, reserve("too-big", 2, l))
		require.NoError(t, err)
		require.False(t, ok)
		prev, err = b.MarkBudgetAlert(ctx, l.BudgetCounterKey, 0.3)
		require.NoError(t, err)
		require.Zero(t, prev)
		_, _, err = b.ReserveBudget(ctx, reserve("r", 0.1, l))
		require.NoError(t, err)

		prev, err = b.MarkBudgetAlert(ctx, l.BudgetCounterKey, 0.5)
		require.NoError(t, err)
		require.InDelta(t, 0.3, prev, 1e-9)
		prev, err = b.MarkBudgetAlert(ctx, l.BudgetCounterKey, 0.5)
		require.NoError(t, err)
		require.InDelta(t, 0.5, prev, 1e-9, "raised already")
		prev, err = b.MarkBudgetAlert(ctx, l.BudgetCounterKey, 0.8)
		require.NoError(t, err)
		require.InDelta(t, 0.5, prev, 1e-9)
		cs, err := b.SettleBudget(ctx, store.SettleBudgetParams{ReservationID: "r", Limits: []store.BudgetLimit{l}, ActualUSD: money.FromUSD(0.1), Now: now})
		require.NoError(t, err)
		require.InDelta(t, 0.8, cs[0].AlertedFraction, 1e-9)

		// Concurrent marks of one fraction: exactly one sees it unraised.
		var first atomic.Int32
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				prev, err := b.MarkBudgetAlert(ctx, l.BudgetCounterKey, 1)
				if err == nil && prev < 1 {
					first.Add(1)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, int32(1), first.Load())
	})

	t.Run("ConcurrentReservations", func(t *testing.T) {
		s, ctx := setup(t)
		b := budgets(t, s)
		// Two overlapping counter sets, taken in opposite orders by the
		// callers: locks in key order must not deadlock.
		tenant, agent := limit("tenant", newID("t"), 1), limit("agent", newID("a"), 1)
		var granted atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 30)
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ls := []store.BudgetLimit{tenant, agent}
				if i%2 == 1 {
					ls = []store.BudgetLimit{agent, tenant}
				}
				_, ok, err := b.ReserveBudget(ctx, reserve(newID("r"), 0.1, ls...))
				if err != nil {
					errs <- err
					return
				}
				if ok {
					granted.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, int32(10), granted.Load(), "exactly 10 × 0.1 fit a limit of 1")
	})
}
