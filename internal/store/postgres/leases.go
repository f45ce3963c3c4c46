package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentd/agentd/internal/store"
)

var _ store.RunLeases = (*Store)(nil)

// ReclaimBatch is the most runs one ReclaimExpiredRuns call reclaims.
const ReclaimBatch = 100

// canceledError is the error of a run canceled while it was queued.
const canceledError = "canceled: the run was canceled"

const (
	// $4 is both compared with lease_expires_at and a started_at value:
	// one type, timestamptz.
	qClaimRun = `UPDATE runs SET status = 'running', lease_owner = $2, lease_expires_at = $3,
		attempt = attempt + 1, started_at = coalesce(started_at, $4)
		WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND
			(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < $4 OR lease_owner = $2)))
		RETURNING ` + runColumns
	qRunByID     = `SELECT ` + runColumns + ` FROM runs WHERE id = $1`
	qExtendLease = `UPDATE runs SET lease_expires_at = $3
		WHERE id = $1 AND lease_owner = $2 AND status = 'running'
		RETURNING cancel_requested`
	qReleaseLease = `UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2`
	qRequestCancel = `UPDATE runs SET cancel_requested = true,
		status = CASE status WHEN 'queued' THEN 'canceled' ELSE status END,
		finished_at = CASE status WHEN 'queued' THEN $3 ELSE finished_at END,
		error = CASE status WHEN 'queued' THEN $4 ELSE error END
		WHERE id = $1 AND tenant = $2 AND status IN ('queued', 'running')
		RETURNING ` + runColumns
	// SKIP LOCKED: concurrent reclaimers split the expired runs instead of
	// queueing on each other's rows. A run another transaction reclaimed
	// (or claimed) and committed meanwhile fails the re-check of the WHERE
	// clause that READ COMMITTED does on a changed row, so each expired run
	// is reclaimed once.
	qReclaim = `WITH expired AS (
			SELECT id AS expired_id FROM runs
			WHERE status = 'running' AND lease_expires_at < $1
			ORDER BY lease_expires_at LIMIT $2
			FOR UPDATE SKIP LOCKED)
		UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		FROM expired WHERE id = expired_id
		RETURNING ` + runColumns
	// Queued runs whose River job a worker fetched long ago without
	// claiming the run (it died in between). River's job table shares the
	// database; lease_expires_at of a queued run marks when it may be
	// re-enqueued again.
	qReclaimOrphans = `WITH orphans AS (
			SELECT r.id AS orphan_id FROM runs r
			JOIN river_job j ON j.kind = 'agentd_run' AND j.state = 'running'
				AND j.args->>'run_id' = r.id AND j.attempted_at < $2
			WHERE r.status = 'queued' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < $3)
			LIMIT $4
			FOR UPDATE OF r SKIP LOCKED)
		UPDATE runs SET lease_expires_at = $1
		FROM orphans WHERE id = orphan_id
		RETURNING ` + runColumns
	qHasRiver   = `SELECT to_regclass('river_job') IS NOT NULL`
	qQueueStats = `SELECT 'queued', agent, count(*), min(created_at) FROM runs
			WHERE status = 'queued' GROUP BY agent
		UNION ALL
		SELECT 'running', '', count(*), NULL FROM runs WHERE status = 'running'`
)

// ClaimRun makes p.Owner the run's executor with a lease until
// p.LeaseUntil, in one conditional UPDATE (see store.RunLeases): status
// becomes running, attempt increases by one and started_at is set if it
// was not. The run must be queued, or running with no lease, a lease that
// expired before p.Now, or a lease p.Owner holds; and no cancellation may
// have been requested. Otherwise it returns the run as it is with
// store.ErrConflict, or store.ErrNotFound if there is no such run. Two
// workers claiming one run serialize on its row lock; the second sees the
// first's lease. ClaimRun is not tenant-scoped: workers get run ids from
// the queue. A zero p.Now is now.
func (s *Store) ClaimRun(ctx context.Context, p store.ClaimRunParams) (store.Run, error) {
	r, err := s.claimRun(ctx, p)
	if err != nil {
		return r, fmt.Errorf("postgres: claim run %s: %w", p.ID, err)
	}
	return r, nil
}

func (s *Store) claimRun(ctx context.Context, p store.ClaimRunParams) (store.Run, error) {
	if p.Owner == "" {
		return store.Run{}, errors.New("empty owner")
	}
	if p.LeaseUntil.IsZero() {
		return store.Run{}, errors.New("zero LeaseUntil")
	}
	if p.Now.IsZero() {
		p.Now = now()
	}
	r, err := scanRun(s.pool.QueryRow(ctx, qClaimRun, p.ID, p.Owner, toTime(p.LeaseUntil), toTime(p.Now)))
	if err == nil {
		return r, nil
	}
	if err = mapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, err
	}
	// Not claimable, or not there: tell which, with the run as it is now.
	cur, err := scanRun(s.pool.QueryRow(ctx, qRunByID, p.ID))
	if err != nil {
		return store.Run{}, mapErr(err)
	}
	return cur, fmt.Errorf("%w: run is %s", store.ErrConflict, cur.Status)
}

// ExtendLease moves the lease owner holds on the running run to until and
// reports whether cancellation was requested; store.ErrConflict if owner
// does not hold it (any more), or there is no such run.
func (s *Store) ExtendLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	var cancel bool
	err := s.pool.QueryRow(ctx, qExtendLease, id, owner, toTime(until)).Scan(&cancel)
	if err != nil {
		if err = mapErr(err); errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: %s does not hold the lease", store.ErrConflict, owner)
		}
		return false, fmt.Errorf("postgres: extend lease of run %s: %w", id, err)
	}
	return cancel, nil
}

// ReleaseLease drops the lease owner holds on the run, so that any worker
// may claim it at once; it does nothing (and returns nil) if owner does not
// hold it.
func (s *Store) ReleaseLease(ctx context.Context, id, owner string) error {
	if _, err := s.pool.Exec(ctx, qReleaseLease, id, owner); err != nil {
		return fmt.Errorf("postgres: release lease of run %s: %w", id, err)
	}
	return nil
}

// RequestCancel marks the tenant's run for cancellation: a queued run
// becomes canceled at once (finished_at now, error "canceled: the run was
// canceled"), a running one keeps running until its worker sees the request
// at its next ExtendLease. A terminal run is returned unchanged.
// store.ErrNotFound if the tenant has no such run. A zero now is now.
func (s *Store) RequestCancel(ctx context.Context, tenant, id string, t time.Time) (store.Run, error) {
	if t.IsZero() {
		t = now()
	}
	r, err := scanRun(s.pool.QueryRow(ctx, qRequestCancel, id, tenant, toTime(t), canceledError))
	if err == nil {
		return r, nil
	}
	if err = mapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, fmt.Errorf("postgres: request cancel of run %s: %w", id, err)
	}
	// Terminal (statuses only move forward, so it still is), or not the
	// tenant's.
	return s.GetRun(ctx, tenant, id)
}

// ReclaimExpiredRuns clears the lease of up to ReclaimBatch running runs
// whose lease expired before now and calls fn for each, in one
// transaction: fn gets its pgx.Tx (to enqueue the run again). If fn fails,
// nothing is written and its error is returned wrapped. Concurrent
// reclaimers (also in other processes) skip the runs another one has
// locked, so each expired run is reclaimed by exactly one of them.
func (s *Store) ReclaimExpiredRuns(ctx context.Context, t time.Time, fn func(ctx context.Context, tx any, r store.Run) error) (int, error) {
	n, err := s.reclaim(ctx, t, fn)
	if err != nil {
		return 0, fmt.Errorf("postgres: reclaim expired runs: %w", err)
	}
	return n, nil
}

func (s *Store) reclaim(ctx context.Context, t time.Time, fn func(ctx context.Context, tx any, r store.Run) error) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	rows, err := tx.Query(ctx, qReclaim, normTime(t), ReclaimBatch)
	if err != nil {
		return 0, err
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Run, error) { return scanRun(row) })
	if err != nil {
		return 0, err
	}
	var hasRiver bool
	if err := tx.QueryRow(ctx, qHasRiver).Scan(&hasRiver); err != nil {
		return 0, err
	}
	if hasRiver && len(runs) < ReclaimBatch {
		rows, err := tx.Query(ctx, qReclaimOrphans, normTime(t.Add(store.OrphanedJobAfter)),
			normTime(t.Add(-store.OrphanedJobAfter)), normTime(t), ReclaimBatch-len(runs))
		if err != nil {
			return 0, err
		}
		orphans, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Run, error) { return scanRun(row) })
		if err != nil {
			return 0, err
		}
		runs = append(runs, orphans...)
	}
	if len(runs) == 0 {
		return 0, nil
	}
	if fn != nil {
		for _, r := range runs {
			if err := fn(ctx, tx, r); err != nil {
				return 0, fmt.Errorf("run %s: in transaction: %w", r.ID, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return len(runs), nil
}

// QueueStats reports the queued runs per agent, the creation time of the
// oldest one and how many runs are running, from one snapshot.
func (s *Store) QueueStats(ctx context.Context) (store.QueueStats, error) {
	qs := store.QueueStats{Depth: map[string]int{}}
	rows, err := s.pool.Query(ctx, qQueueStats)
	if err != nil {
		return store.QueueStats{}, fmt.Errorf("postgres: queue stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, agent string
			n           int
			oldest      pgtype.Timestamptz
		)
		if err := rows.Scan(&kind, &agent, &n, &oldest); err != nil {
			return store.QueueStats{}, fmt.Errorf("postgres: queue stats: %w", err)
		}
		if kind == "running" {
			qs.Running = n
			continue
		}
		qs.Depth[agent] = n
		if at := fromTime(oldest); !at.IsZero() && (qs.OldestQueuedAt.IsZero() || at.Before(qs.OldestQueuedAt)) {
			qs.OldestQueuedAt = at
		}
	}
	if err := rows.Err(); err != nil {
		return store.QueueStats{}, fmt.Errorf("postgres: queue stats: %w", err)
	}
	return qs, nil
}
