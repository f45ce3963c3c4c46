package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

var _ store.RunLeases = (*Store)(nil)

// ReclaimBatch is the most runs one ReclaimExpiredRuns call reclaims.
const ReclaimBatch = 100

// canceledError is the error of a run canceled while it was queued.
const canceledError = "canceled: the run was canceled"

const (
	qClaimRun = `UPDATE runs SET status = 'running', lease_owner = ?, lease_expires_at = ?,
		attempt = attempt + 1, started_at = coalesce(started_at, ?)
		WHERE id = ? AND (status = 'queued' OR (status = 'running' AND
			(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ? OR lease_owner = ?)))
		RETURNING ` + runColumns
	qRunByID     = `SELECT ` + runColumns + ` FROM runs WHERE id = ?`
	qExtendLease = `UPDATE runs SET lease_expires_at = ?
		WHERE id = ? AND lease_owner = ? AND status = 'running'
		RETURNING cancel_requested`
	qReleaseLease = `UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id = ? AND lease_owner = ?`
	qRequestCancel = `UPDATE runs SET cancel_requested = 1,
		status = CASE status WHEN 'queued' THEN 'canceled' ELSE status END,
		finished_at = CASE status WHEN 'queued' THEN ? ELSE finished_at END,
		error = CASE status WHEN 'queued' THEN ? ELSE error END
		WHERE id = ? AND tenant = ? AND status IN ('queued', 'running')
		RETURNING ` + runColumns
	qReclaim = `UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id IN (SELECT id FROM runs WHERE status = 'running' AND lease_expires_at < ?
			ORDER BY lease_expires_at LIMIT ?)
		RETURNING ` + runColumns
	// Queued runs whose River job a worker fetched long ago without
	// claiming the run (it died in between). River's job table shares the
	// database; lease_expires_at of a queued run marks when it may be
	// re-enqueued again.
	qReclaimOrphans = `UPDATE runs SET lease_expires_at = ?
		WHERE id IN (SELECT r.id FROM runs r
			JOIN river_job j ON j.kind = 'agentd_run' AND j.state = 'running'
				AND json_extract(j.args, '$.run_id') = r.id AND j.attempted_at < ?
			WHERE r.status = 'queued' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < ?)
			LIMIT ?)
		RETURNING ` + runColumns
	qHasRiver   = `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'river_job'`
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
// store.ErrConflict, or store.ErrNotFound if there is no such run. ClaimRun
// is not tenant-scoped: workers get run ids from the queue. A zero p.Now is
// now.
func (s *Store) ClaimRun(ctx context.Context, p store.ClaimRunParams) (store.Run, error) {
	r, err := s.claimRun(ctx, p)
	if err != nil {
		return r, fmt.Errorf("sqlite: claim run %s: %w", p.ID, err)
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
	st, err := s.wstmt.get(ctx, qClaimRun)
	if err != nil {
		return store.Run{}, err
	}
	nowArg := toMicros(p.Now)
	r, err := scanRun(st.QueryRowContext(ctx, p.Owner, toMicros(p.LeaseUntil), nowArg, p.ID, nowArg, p.Owner))
	if err == nil {
		return r, nil
	}
	if err = mapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, err
	}
	// Not claimable, or not there: tell which, with the run as it is now.
	cur, err := s.runByID(ctx, p.ID)
	if err != nil {
		return store.Run{}, err
	}
	return cur, fmt.Errorf("%w: run is %s", store.ErrConflict, cur.Status)
}

// runByID reads a run of any tenant; store.ErrNotFound if there is none.
func (s *Store) runByID(ctx context.Context, id string) (store.Run, error) {
	st, err := s.rstmt.get(ctx, qRunByID)
	if err != nil {
		return store.Run{}, err
	}
	r, err := scanRun(st.QueryRowContext(ctx, id))
	if err != nil {
		return store.Run{}, mapErr(err)
	}
	return r, nil
}

// ExtendLease moves the lease owner holds on the running run to until and
// reports whether cancellation was requested; store.ErrConflict if owner
// does not hold it (any more), or there is no such run.
func (s *Store) ExtendLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	st, err := s.wstmt.get(ctx, qExtendLease)
	if err != nil {
		return false, fmt.Errorf("sqlite: extend lease of run %s: %w", id, err)
	}
	var cancel bool
	err = st.QueryRowContext(ctx, toMicros(until), id, owner).Scan(&cancel)
	if err != nil {
		if err = mapErr(err); errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: %s does not hold the lease", store.ErrConflict, owner)
		}
		return false, fmt.Errorf("sqlite: extend lease of run %s: %w", id, err)
	}
	return cancel, nil
}

// ReleaseLease drops the lease owner holds on the run, so that any worker
// may claim it at once; it does nothing (and returns nil) if owner does not
// hold it.
func (s *Store) ReleaseLease(ctx context.Context, id, owner string) error {
	st, err := s.wstmt.get(ctx, qReleaseLease)
	if err == nil {
		_, err = st.ExecContext(ctx, id, owner)
	}
	if err != nil {
		return fmt.Errorf("sqlite: release lease of run %s: %w", id, err)
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
	st, err := s.wstmt.get(ctx, qRequestCancel)
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: request cancel of run %s: %w", id, err)
	}
	r, err := scanRun(st.QueryRowContext(ctx, toMicros(t), canceledError, id, tenant))
	if err == nil {
		return r, nil
	}
	if err = mapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, fmt.Errorf("sqlite: request cancel of run %s: %w", id, err)
	}
	// Terminal (statuses only move forward, so it still is), or not the
	// tenant's.
	r, err = s.GetRun(ctx, tenant, id)
	if err != nil {
		return store.Run{}, err
	}
	return r, nil
}

// ReclaimExpiredRuns clears the lease of up to ReclaimBatch running runs
// whose lease expired before now and calls fn for each, in one write
// transaction: fn gets its *sql.Tx (to enqueue the run again). If fn fails,
// nothing is written and its error is returned wrapped. fn must do all its
// work on that *sql.Tx and never call the Store (the write pool's only
// connection is the transaction's: that would deadlock). Reclaimers in
// several Stores or processes serialize on SQLite's write lock, so each
// expired run is reclaimed once.
func (s *Store) ReclaimExpiredRuns(ctx context.Context, t time.Time, fn func(ctx context.Context, tx any, r store.Run) error) (int, error) {
	n, err := s.reclaim(ctx, t, fn)
	if err != nil {
		return 0, fmt.Errorf("sqlite: reclaim expired runs: %w", err)
	}
	return n, nil
}

func (s *Store) reclaim(ctx context.Context, t time.Time, fn func(ctx context.Context, tx any, r store.Run) error) (int, error) {
	st, err := s.wstmt.get(ctx, qReclaim) // before BeginTx, see stmtCache.getAll
	if err != nil {
		return 0, err
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, t.UnixMicro(), ReclaimBatch)
	if err != nil {
		return 0, err
	}
	runs, err := collectRuns(rows)
	if err != nil {
		return 0, err
	}
	var hasRiver int
	if err := tx.QueryRowContext(ctx, qHasRiver).Scan(&hasRiver); err != nil {
		return 0, err
	}
	if hasRiver > 0 && len(runs) < ReclaimBatch {
		// River writes attempted_at as UTC text, 'YYYY-MM-DD HH:MM:SS.SSS'.
		cutoff := t.Add(-store.OrphanedJobAfter).UTC().Format("2006-01-02 15:04:05.000")
		rows, err := tx.QueryContext(ctx, qReclaimOrphans, t.Add(store.OrphanedJobAfter).UnixMicro(),
			cutoff, t.UnixMicro(), ReclaimBatch-len(runs))
		if err != nil {
			return 0, err
		}
		orphans, err := collectRuns(rows)
		if err != nil {
			return 0, err
		}
		runs = append(runs, orphans...)
	}
	if len(runs) == 0 {
		return 0, nil // the deferred rollback ends the empty transaction
	}
	if fn != nil {
		for _, r := range runs {
			if err := fn(ctx, tx, r); err != nil {
				return 0, fmt.Errorf("run %s: in transaction: %w", r.ID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return len(runs), nil
}

// QueueStats reports the queued runs per agent, the creation time of the
// oldest one and how many runs are running, from one consistent snapshot.
func (s *Store) QueueStats(ctx context.Context) (store.QueueStats, error) {
	qs := store.QueueStats{Depth: map[string]int{}}
	st, err := s.rstmt.get(ctx, qQueueStats)
	if err != nil {
		return store.QueueStats{}, fmt.Errorf("sqlite: queue stats: %w", err)
	}
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return store.QueueStats{}, fmt.Errorf("sqlite: queue stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, agent string
			n           int
			oldest      sql.NullInt64
		)
		if err := rows.Scan(&kind, &agent, &n, &oldest); err != nil {
			return store.QueueStats{}, fmt.Errorf("sqlite: queue stats: %w", err)
		}
		if kind == "running" {
			qs.Running = n
			continue
		}
		qs.Depth[agent] = n
		if at := fromMicros(oldest); !at.IsZero() && (qs.OldestQueuedAt.IsZero() || at.Before(qs.OldestQueuedAt)) {
			qs.OldestQueuedAt = at
		}
	}
	if err := rows.Err(); err != nil {
		return store.QueueStats{}, fmt.Errorf("sqlite: queue stats: %w", err)
	}
	return qs, nil
}

// collectRuns reads all rows, so that the statement is done before the
// transaction's connection is used again.
func collectRuns(rows *sql.Rows) ([]store.Run, error) {
	var runs []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			_ = rows.Close()
			return nil, err
		}
		runs = append(runs, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	return runs, nil
}
