package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Budgets = (*Store)(nil)

// budgetEpsilon absorbs float rounding when a reservation exactly fills a
// limit.
const budgetEpsilon = 1e-9

const (
	// The upserts lock the counter's row until the transaction ends: every
	// reservation of a counter waits for the one before it, and then sees
	// its reservation rows (READ COMMITTED reads what committed before
	// each statement).
	qUpsertBudgetLimit = `INSERT INTO budget_counters (scope, subject, period, limit_usd, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (scope, subject, period) DO UPDATE
		SET limit_usd = EXCLUDED.limit_usd, expires_at = GREATEST(budget_counters.expires_at, EXCLUDED.expires_at)
		RETURNING limit_usd, spent_usd, alerted_fraction`
	qUpsertBudgetSpend = `INSERT INTO budget_counters (scope, subject, period, limit_usd, spent_usd, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (scope, subject, period) DO UPDATE
		SET spent_usd = budget_counters.spent_usd + EXCLUDED.spent_usd,
		    expires_at = GREATEST(budget_counters.expires_at, EXCLUDED.expires_at)
		RETURNING limit_usd, spent_usd, alerted_fraction`
	qBudgetReserved = `SELECT COALESCE(SUM(amount_usd), 0)::double precision FROM budget_reservations
		WHERE scope = $1 AND subject = $2 AND period = $3 AND expires_at > $4`
	qInsertBudgetReservation = `INSERT INTO budget_reservations (reservation_id, scope, subject, period, amount_usd, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`
)

// ReserveBudget reserves p.AmountUSD against every counter of p.Limits if
// all have room (see store.Budgets). Counter rows are locked in key order
// (store.SortBudgetLimits), so overlapping reservations do not deadlock.
func (s *Store) ReserveBudget(ctx context.Context, p store.ReserveBudgetParams) ([]store.BudgetCounter, bool, error) {
	cs, ok, err := s.reserveBudget(ctx, p)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: reserve budget %s: %w", p.ReservationID, mapErr(err))
	}
	return cs, ok, nil
}

func (s *Store) reserveBudget(ctx context.Context, p store.ReserveBudgetParams) ([]store.BudgetCounter, bool, error) {
	limits := store.SortBudgetLimits(p.Limits)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer rollback(tx)
	now := normTime(p.Now)
	counters := make([]store.BudgetCounter, 0, len(limits))
	ok := true
	for _, l := range limits {
		c := store.BudgetCounter{BudgetCounterKey: l.BudgetCounterKey}
		if err := tx.QueryRow(ctx, qUpsertBudgetLimit, l.Scope, l.Subject, l.Period, l.LimitUSD, normTime(l.ExpiresAt)).
			Scan(&c.LimitUSD, &c.SpentUSD, &c.AlertedFraction); err != nil {
			return nil, false, err
		}
		if err := tx.QueryRow(ctx, qBudgetReserved, l.Scope, l.Subject, l.Period, now).Scan(&c.ReservedUSD); err != nil {
			return nil, false, err
		}
		counters = append(counters, c)
		if c.SpentUSD+c.ReservedUSD+p.AmountUSD > c.LimitUSD+budgetEpsilon {
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
			p.AmountUSD, normTime(p.ExpiresAt)); err != nil {
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
		return nil, fmt.Errorf("postgres: settle budget %s: %w", p.ReservationID, mapErr(err))
	}
	return cs, nil
}

func (s *Store) settleBudget(ctx context.Context, p store.SettleBudgetParams) ([]store.BudgetCounter, error) {
	limits := store.SortBudgetLimits(p.Limits)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer rollback(tx)
	now := normTime(p.Now)
	counters := make([]store.BudgetCounter, 0, len(limits))
	// Counters first (in key order, like ReserveBudget), then the
	// reservation rows.
	for _, l := range limits {
		c := store.BudgetCounter{BudgetCounterKey: l.BudgetCounterKey}
		if err := tx.QueryRow(ctx, qUpsertBudgetSpend, l.Scope, l.Subject, l.Period, l.LimitUSD, p.ActualUSD, normTime(l.ExpiresAt)).
			Scan(&c.LimitUSD, &c.SpentUSD, &c.AlertedFraction); err != nil {
			return nil, err
		}
		counters = append(counters, c)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM budget_reservations WHERE reservation_id = $1`, p.ReservationID); err != nil {
		return nil, err
	}
	for i := range counters {
		c := &counters[i]
		if err := tx.QueryRow(ctx, qBudgetReserved, c.Scope, c.Subject, c.Period, now).Scan(&c.ReservedUSD); err != nil {
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
		return 0, fmt.Errorf("postgres: mark budget alert %s/%s/%s: %w", k.Scope, k.Subject, k.Period, err)
	}
	return prev, nil
}

func (s *Store) markBudgetAlert(ctx context.Context, k store.BudgetCounterKey, fraction float64) (float64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	var prev float64
	err = tx.QueryRow(ctx, `SELECT alerted_fraction FROM budget_counters
		WHERE scope = $1 AND subject = $2 AND period = $3 FOR UPDATE`, k.Scope, k.Subject, k.Period).Scan(&prev)
	if errors.Is(err, pgx.ErrNoRows) {
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
		`DELETE FROM budget_reservations WHERE expires_at < $1`,
		`DELETE FROM budget_counters WHERE expires_at < $1`,
	} {
		tag, err := s.pool.Exec(ctx, q, normTime(now))
		if err != nil {
			return n, fmt.Errorf("postgres: delete expired budgets: %w", err)
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}
