package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// budgetQueries are the statements of the budget methods in a dialect.
type budgetQueries struct {
	upsertLimit, upsertSpend, selectAlerted string
}

func newBudgetQueries(d Dialect) budgetQueries {
	return budgetQueries{
		upsertLimit: `INSERT INTO budget_counters (scope, subject, period, limit_nanos, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (scope, subject, period) DO UPDATE
		SET limit_nanos = EXCLUDED.limit_nanos, expires_at = ` + d.Greatest + `(budget_counters.expires_at, EXCLUDED.expires_at)
		RETURNING limit_nanos, spent_nanos, alerted_fraction`,
		upsertSpend: `INSERT INTO budget_counters (scope, subject, period, limit_nanos, spent_nanos, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (scope, subject, period) DO UPDATE
		SET spent_nanos = budget_counters.spent_nanos + EXCLUDED.spent_nanos,
		    expires_at = ` + d.Greatest + `(budget_counters.expires_at, EXCLUDED.expires_at)
		RETURNING limit_nanos, spent_nanos, alerted_fraction`,
		selectAlerted: `SELECT alerted_fraction FROM budget_counters
		WHERE scope = $1 AND subject = $2 AND period = $3` + d.ForUpdate,
	}
}

const (
	// The upserts lock the counter's row until the transaction ends: every
	// reservation of a counter waits for the one before it, and then sees
	// its reservation rows (READ COMMITTED reads what committed before
	// each statement). SQLite has one writer: the transaction (BEGIN
	// IMMEDIATE) serializes it with every other, other processes included.
	qBudgetReserved = `SELECT CAST(COALESCE(SUM(amount_nanos), 0) AS bigint) FROM budget_reservations
		WHERE scope = $1 AND subject = $2 AND period = $3 AND expires_at > $4`
	qInsertBudgetReservation = `INSERT INTO budget_reservations (reservation_id, scope, subject, period, amount_nanos, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`
)

// ReserveBudget reserves p.AmountUSD against every counter of p.Limits if
// all have room (see store.Budgets). Counter rows are locked in key order
// (store.SortBudgetLimits), so overlapping reservations do not deadlock.
func (s *Store) ReserveBudget(ctx context.Context, p store.ReserveBudgetParams) ([]store.BudgetCounter, bool, error) {
	cs, ok, err := s.reserveBudget(ctx, p)
	if err != nil {
		return nil, false, fmt.Errorf("%s: reserve budget %s: %w", s.d.Name, p.ReservationID, s.d.MapErr(err))
	}
	return cs, ok, nil
}

func (s *Store) reserveBudget(ctx context.Context, p store.ReserveBudgetParams) ([]store.BudgetCounter, bool, error) {
	limits := store.SortBudgetLimits(p.Limits)
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer rollback(tx)
	now := s.d.Time(p.Now)
	counters := make([]store.BudgetCounter, 0, len(limits))
	ok := true
	for _, l := range limits {
		c := store.BudgetCounter{BudgetCounterKey: l.BudgetCounterKey}
		if err := tx.QueryRow(ctx, s.qb.upsertLimit, l.Scope, l.Subject, l.Period, int64(l.LimitUSD), s.d.Time(l.ExpiresAt)).
			Scan((*int64)(&c.LimitUSD), (*int64)(&c.SpentUSD), &c.AlertedFraction); err != nil {
			return nil, false, err
		}
		if err := tx.QueryRow(ctx, qBudgetReserved, l.Scope, l.Subject, l.Period, now).Scan((*int64)(&c.ReservedUSD)); err != nil {
			return nil, false, err
		}
		counters = append(counters, c)
		if c.SpentUSD+c.ReservedUSD+p.AmountUSD > c.LimitUSD {
			ok = false
			break
		}
	}
	if !ok {
		// Nothing reserved; the counters stay (an alert may mark them).
		if err := tx.Commit(ctx); err != nil {
			return nil, false, err
		}
		return counters, false, nil
	}
	for _, l := range limits {
		if _, err := tx.Exec(ctx, qInsertBudgetReservation, p.ReservationID, l.Scope, l.Subject, l.Period,
			int64(p.AmountUSD), s.d.Time(p.ExpiresAt)); err != nil {
			return nil, false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, err
	}
	return counters, true, nil
}

// SettleBudget drops a reservation and adds the actual spend (see
// store.Budgets).
func (s *Store) SettleBudget(ctx context.Context, p store.SettleBudgetParams) ([]store.BudgetCounter, error) {
	cs, err := s.settleBudget(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%s: settle budget %s: %w", s.d.Name, p.ReservationID, s.d.MapErr(err))
	}
	return cs, nil
}

func (s *Store) settleBudget(ctx context.Context, p store.SettleBudgetParams) ([]store.BudgetCounter, error) {
	limits := store.SortBudgetLimits(p.Limits)
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer rollback(tx)
	now := s.d.Time(p.Now)
	counters := make([]store.BudgetCounter, 0, len(limits))
	// Counters first (in key order, like ReserveBudget), then the
	// reservation rows.
	for _, l := range limits {
		c := store.BudgetCounter{BudgetCounterKey: l.BudgetCounterKey}
		if err := tx.QueryRow(ctx, s.qb.upsertSpend, l.Scope, l.Subject, l.Period, int64(l.LimitUSD), int64(p.ActualUSD), s.d.Time(l.ExpiresAt)).
			Scan((*int64)(&c.LimitUSD), (*int64)(&c.SpentUSD), &c.AlertedFraction); err != nil {
			return nil, err
		}
		counters = append(counters, c)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM budget_reservations WHERE reservation_id = $1`, p.ReservationID); err != nil {
		return nil, err
	}
	for i := range counters {
		c := &counters[i]
		if err := tx.QueryRow(ctx, qBudgetReserved, c.Scope, c.Subject, c.Period, now).Scan((*int64)(&c.ReservedUSD)); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return counters, nil
}

// MarkBudgetAlert raises a counter's alerted fraction (see store.Budgets).
func (s *Store) MarkBudgetAlert(ctx context.Context, k store.BudgetCounterKey, fraction float64) (float64, error) {
	prev, err := s.markBudgetAlert(ctx, k, fraction)
	if err != nil {
		return 0, fmt.Errorf("%s: mark budget alert %s/%s/%s: %w", s.d.Name, k.Scope, k.Subject, k.Period, err)
	}
	return prev, nil
}

func (s *Store) markBudgetAlert(ctx context.Context, k store.BudgetCounterKey, fraction float64) (float64, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	var prev float64
	err = tx.QueryRow(ctx, s.qb.selectAlerted, k.Scope, k.Subject, k.Period).Scan(&prev)
	if errors.Is(s.d.MapErr(err), store.ErrNotFound) {
		return fraction, nil
	}
	if err != nil {
		return 0, err
	}
	if prev >= fraction {
		return prev, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE budget_counters SET alerted_fraction = $1
		WHERE scope = $2 AND subject = $3 AND period = $4`, fraction, k.Scope, k.Subject, k.Period); err != nil {
		return 0, err
	}
	return prev, tx.Commit(ctx)
}

// DeleteExpiredBudgets deletes expired reservations and counters (see
// store.Budgets).
func (s *Store) DeleteExpiredBudgets(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for _, q := range []string{
		`DELETE FROM budget_reservations WHERE (reservation_id, scope, subject, period) IN (
			SELECT reservation_id, scope, subject, period FROM budget_reservations
			WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)`,
		`DELETE FROM budget_counters WHERE (scope, subject, period) IN (
			SELECT scope, subject, period FROM budget_counters
			WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)`,
	} {
		k, err := s.deleteInBatches(ctx, q, s.d.Time(now))
		n += k
		if err != nil {
			return n, fmt.Errorf("%s: delete expired budgets: %w", s.d.Name, err)
		}
	}
	return n, nil
}
