package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

var _ store.Budgets = (*Store)(nil)

// budgetEpsilon absorbs float rounding when a reservation exactly fills a
// limit.
const budgetEpsilon = 1e-9

const (
	qUpsertBudgetLimit = `INSERT INTO budget_counters (scope, subject, period, limit_usd, expires_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (scope, subject, period) DO UPDATE
		SET limit_usd = excluded.limit_usd, expires_at = max(expires_at, excluded.expires_at)`
	qUpsertBudgetSpend = `INSERT INTO budget_counters (scope, subject, period, limit_usd, spent_usd, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (scope, subject, period) DO UPDATE
		SET spent_usd = spent_usd + excluded.spent_usd, expires_at = max(expires_at, excluded.expires_at)`
	qBudgetCounter = `SELECT limit_usd, spent_usd, alerted_fraction,
		(SELECT COALESCE(SUM(amount_usd), 0) FROM budget_reservations r
		 WHERE r.scope = c.scope AND r.subject = c.subject AND r.period = c.period AND r.expires_at > ?)
		FROM budget_counters c WHERE scope = ? AND subject = ? AND period = ?`
	qInsertBudgetReservation = `INSERT INTO budget_reservations (reservation_id, scope, subject, period, amount_usd, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`
)

// ReserveBudget reserves p.AmountUSD against every counter of p.Limits if
// all have room (see store.Budgets). The write transaction (BEGIN
// IMMEDIATE) serializes it with every other writer on the file, other
// processes included.
func (s *Store) ReserveBudget(ctx context.Context, p store.ReserveBudgetParams) ([]store.BudgetCounter, bool, error) {
	cs, ok, err := s.reserveBudget(ctx, p)
	if err != nil {
		return nil, false, fmt.Errorf("sqlite: reserve budget %s: %w", p.ReservationID, mapErr(err))
	}
	return cs, ok, nil
}

func (s *Store) reserveBudget(ctx context.Context, p store.ReserveBudgetParams) ([]store.BudgetCounter, bool, error) {
	limits := store.SortBudgetLimits(p.Limits)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer rollback(tx)
	now := p.Now.UnixMicro()
	counters := make([]store.BudgetCounter, 0, len(limits))
	ok := true
	for _, l := range limits {
		if _, err := tx.ExecContext(ctx, qUpsertBudgetLimit, l.Scope, l.Subject, l.Period, l.LimitUSD, l.ExpiresAt.UnixMicro()); err != nil {
			return nil, false, err
		}
		c, err := budgetCounter(ctx, tx, l.BudgetCounterKey, now)
		if err != nil {
			return nil, false, err
		}
		counters = append(counters, c)
		if c.SpentUSD+c.ReservedUSD+p.AmountUSD > c.LimitUSD+budgetEpsilon {
			ok = false
		}
	}
	if !ok {
		// Nothing reserved; the counters stay (an alert may mark them).
		if err := tx.Commit(); err != nil {
			return nil, false, err
		}
		return counters, false, nil
	}
	for _, l := range limits {
		if _, err := tx.ExecContext(ctx, qInsertBudgetReservation, p.ReservationID, l.Scope, l.Subject, l.Period,
			p.AmountUSD, p.ExpiresAt.UnixMicro()); err != nil {
			return nil, false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	return counters, true, nil
}

func budgetCounter(ctx context.Context, tx *sql.Tx, k store.BudgetCounterKey, now int64) (store.BudgetCounter, error) {
	c := store.BudgetCounter{BudgetCounterKey: k}
	err := tx.QueryRowContext(ctx, qBudgetCounter, now, k.Scope, k.Subject, k.Period).
		Scan(&c.LimitUSD, &c.SpentUSD, &c.AlertedFraction, &c.ReservedUSD)
	return c, err
}

// SettleBudget drops a reservation and adds the actual spend (see
// store.Budgets).
func (s *Store) SettleBudget(ctx context.Context, p store.SettleBudgetParams) ([]store.BudgetCounter, error) {
	cs, err := s.settleBudget(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("sqlite: settle budget %s: %w", p.ReservationID, mapErr(err))
	}
	return cs, nil
}

func (s *Store) settleBudget(ctx context.Context, p store.SettleBudgetParams) ([]store.BudgetCounter, error) {
	limits := store.SortBudgetLimits(p.Limits)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer rollback(tx)
	if _, err := tx.ExecContext(ctx, `DELETE FROM budget_reservations WHERE reservation_id = ?`, p.ReservationID); err != nil {
		return nil, err
	}
	now := p.Now.UnixMicro()
	counters := make([]store.BudgetCounter, 0, len(limits))
	for _, l := range limits {
		if _, err := tx.ExecContext(ctx, qUpsertBudgetSpend, l.Scope, l.Subject, l.Period, l.LimitUSD, p.ActualUSD,
			l.ExpiresAt.UnixMicro()); err != nil {
			return nil, err
		}
		c, err := budgetCounter(ctx, tx, l.BudgetCounterKey, now)
		if err != nil {
			return nil, err
		}
		counters = append(counters, c)
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return counters, nil
}

// MarkBudgetAlert raises a counter's alerted fraction (see store.Budgets).
func (s *Store) MarkBudgetAlert(ctx context.Context, k store.BudgetCounterKey, fraction float64) (float64, error) {
	prev, err := s.markBudgetAlert(ctx, k, fraction)
	if err != nil {
		return 0, fmt.Errorf("sqlite: mark budget alert %s/%s/%s: %w", k.Scope, k.Subject, k.Period, err)
	}
	return prev, nil
}

func (s *Store) markBudgetAlert(ctx context.Context, k store.BudgetCounterKey, fraction float64) (float64, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	var prev float64
	err = tx.QueryRowContext(ctx, `SELECT alerted_fraction FROM budget_counters WHERE scope = ? AND subject = ? AND period = ?`,
		k.Scope, k.Subject, k.Period).Scan(&prev)
	if errors.Is(err, sql.ErrNoRows) {
		return fraction, nil
	}
	if err != nil {
		return 0, err
	}
	if prev >= fraction {
		return prev, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE budget_counters SET alerted_fraction = ? WHERE scope = ? AND subject = ? AND period = ?`,
		fraction, k.Scope, k.Subject, k.Period); err != nil {
		return 0, err
	}
	return prev, tx.Commit()
}

// DeleteExpiredBudgets deletes expired reservations and counters (see
// store.Budgets).
func (s *Store) DeleteExpiredBudgets(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for _, q := range []string{
		`DELETE FROM budget_reservations WHERE expires_at < ?`,
		`DELETE FROM budget_counters WHERE expires_at < ?`,
	} {
		res, err := s.write.ExecContext(ctx, q, now.UnixMicro())
		if err != nil {
			return n, fmt.Errorf("sqlite: delete expired budgets: %w", err)
		}
		k, _ := res.RowsAffected()
		n += int(k)
	}
	return n, nil
}
