package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// ReclaimBatch is the most runs one ReclaimExpiredRuns call reclaims.
const ReclaimBatch = 100

// canceledError is the error of a run canceled while it was queued.
const canceledError = "canceled: the run was canceled"

const (
	// $4 is both compared with lease_expires_at and a started_at value:
	// one type.
	qClaimRun = `UPDATE runs SET status = 'running', lease_owner = $2, lease_expires_at = $3,
		attempt = attempt + 1, started_at = coalesce(started_at, $4)
		WHERE id = $1 AND ((status = 'queued'
				-- not held by the live client that submitted it (store.Run.HeldBy)
				AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < $4 OR lease_owner = $2)
				-- its turn: no earlier turn of its conversation unfinished
				AND (turn = 0 OR NOT EXISTS (SELECT 1 FROM runs b
					WHERE b.conversation_id = runs.conversation_id AND b.id <> runs.id
						AND b.status IN ('queued', 'running', 'requires_action')
						AND (b.turn = 0 OR b.turn < runs.turn))))
			OR (status = 'running' AND
			(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < $4 OR lease_owner = $2)))
		RETURNING ` + RunColumns
	qUnfinishedRuns = `SELECT ` + RunColumns + ` FROM runs
		WHERE tenant = $1 AND conversation_id = $2 AND status IN ('queued', 'running', 'requires_action')
		ORDER BY turn, id`
	qRunByID     = `SELECT ` + RunColumns + ` FROM runs WHERE id = $1`
	qExtendLease = `UPDATE runs SET lease_expires_at = $3
		WHERE id = $1 AND lease_owner = $2 AND status IN ('queued', 'running')
		RETURNING cancel_requested`
	qReleaseLease = `UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2`
	qRequestCancel = `UPDATE runs SET cancel_requested = true,
		status = CASE WHEN status IN ('queued', 'requires_action') THEN 'canceled' ELSE status END,
		finished_at = CASE WHEN status IN ('queued', 'requires_action') THEN $3 ELSE finished_at END,
		error = CASE WHEN status IN ('queued', 'requires_action') THEN $4 ELSE error END
		WHERE id = $1 AND tenant = $2 AND status IN ('queued', 'running', 'requires_action')
		RETURNING ` + RunColumns
	qRequestInterrupt = `UPDATE runs SET cancel_requested = true, interrupt_requested = true,
		status = CASE WHEN status = 'queued' THEN 'interrupted' ELSE status END,
		finished_at = CASE WHEN status = 'queued' THEN $3 ELSE finished_at END,
		error = CASE WHEN status = 'queued' THEN $4 ELSE error END
		WHERE id = $1 AND tenant = $2 AND status IN ('queued', 'running', 'requires_action')
		RETURNING ` + RunColumns
	qQueueStats = `SELECT 'queued', agent, count(*), min(created_at) FROM runs
			WHERE status = 'queued' GROUP BY agent
		UNION ALL
		SELECT 'running', '', count(*), NULL FROM runs WHERE status = 'running'
		UNION ALL
		SELECT 'approvals', '', count(*), NULL FROM run_approvals a JOIN runs r ON r.id = a.run_id
			WHERE a.decision = '' AND a.kind = 'approval' AND r.status = 'requires_action'`
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
		return r, fmt.Errorf("%s: claim run %s: %w", s.d.Name, p.ID, err)
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
		p.Now = Now()
	}
	r, err := s.scanRun(s.db.Write.QueryRow(ctx, qClaimRun, p.ID, p.Owner, s.d.Time(p.LeaseUntil), s.d.Time(p.Now)))
	if err == nil {
		return r, nil
	}
	if err = s.d.MapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, err
	}
	// Not claimable, or not there: tell which, with the run as it is now.
	cur, err := s.scanRun(s.db.Read.QueryRow(ctx, qRunByID, p.ID))
	if err != nil {
		return store.Run{}, s.d.MapErr(err)
	}
	if cur.Status == store.RunQueued {
		return cur, fmt.Errorf("%w: an earlier turn of conversation %s is unfinished, or its submitter holds it",
			store.ErrRunWaiting, cur.ConversationID)
	}
	return cur, fmt.Errorf("%w: run is %s", store.ErrConflict, cur.Status)
}

// UnfinishedRuns returns the tenant's runs of a conversation that are
// queued, running or requires_action, by turn (runs without one first).
func (s *Store) UnfinishedRuns(ctx context.Context, tenant, conversationID string) ([]store.Run, error) {
	runs, err := s.scanRuns(s.db.Read.Query(ctx, qUnfinishedRuns, tenant, conversationID))
	if err != nil {
		return nil, fmt.Errorf("%s: unfinished runs of conversation %s: %w", s.d.Name, conversationID, err)
	}
	return runs, nil
}

// ExtendLease moves the lease owner holds on the running run to until and
// reports whether cancellation was requested; store.ErrConflict if owner
// does not hold it (any more), or there is no such run.
func (s *Store) ExtendLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	var cancel bool
	err := s.db.Write.QueryRow(ctx, qExtendLease, id, owner, s.d.Time(until)).Scan(&cancel)
	if err != nil {
		if err = s.d.MapErr(err); errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: %s does not hold the lease", store.ErrConflict, owner)
		}
		return false, fmt.Errorf("%s: extend lease of run %s: %w", s.d.Name, id, err)
	}
	return cancel, nil
}

// ReleaseLease drops the lease owner holds on the run, so that any worker
// may claim it at once; it does nothing (and returns nil) if owner does not
// hold it.
func (s *Store) ReleaseLease(ctx context.Context, id, owner string) error {
	if _, err := s.db.Write.Exec(ctx, qReleaseLease, id, owner); err != nil {
		return fmt.Errorf("%s: release lease of run %s: %w", s.d.Name, id, err)
	}
	return nil
}

// RequestCancel marks the tenant's run for cancellation: a queued run, or
// one paused for approval, becomes canceled at once (finished_at now, error "canceled: the run was
// canceled"), a running one keeps running until its worker sees the request
// at its next ExtendLease. A terminal run is returned unchanged.
// store.ErrNotFound if the tenant has no such run. A zero now is now.
func (s *Store) RequestCancel(ctx context.Context, tenant, id string, t time.Time) (store.Run, error) {
	if t.IsZero() {
		t = Now()
	}
	r, err := s.scanRun(s.db.Write.QueryRow(ctx, qRequestCancel, id, tenant, s.d.Time(t), canceledError))
	if err == nil {
		return r, nil
	}
	if err = s.d.MapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, fmt.Errorf("%s: request cancel of run %s: %w", s.d.Name, id, err)
	}
	// Terminal (statuses only move forward, so it still is), or not the
	// tenant's.
	return s.GetRun(ctx, tenant, id)
}

// interruptedError is the error of a run interrupted while it was queued.
const interruptedError = "interrupted: the run was interrupted before it started"

// RequestInterrupt asks the tenant's run to stop keeping what it
// checkpointed (see store.RunLeases). A zero now is now.
func (s *Store) RequestInterrupt(ctx context.Context, tenant, id string, t time.Time) (store.Run, error) {
	if t.IsZero() {
		t = Now()
	}
	r, err := s.scanRun(s.db.Write.QueryRow(ctx, qRequestInterrupt, id, tenant, s.d.Time(t), interruptedError))
	if err == nil {
		return r, nil
	}
	if err = s.d.MapErr(err); !errors.Is(err, store.ErrNotFound) {
		return store.Run{}, fmt.Errorf("%s: request interrupt of run %s: %w", s.d.Name, id, err)
	}
	return s.GetRun(ctx, tenant, id)
}

// ReclaimExpiredRuns clears the lease of up to ReclaimBatch running runs
// whose lease expired before now and calls fn for each, in one
// transaction: fn gets the native transaction (to enqueue the run again).
// If fn fails, nothing is written and its error is returned wrapped. Each
// expired run is reclaimed by exactly one of concurrent reclaimers (also in
// other processes): see Dialect.Reclaim.
func ReclaimExpiredRuns[TTx any](ctx context.Context, s *Store, begin BeginFunc[TTx], t time.Time, fn store.ReclaimFunc[TTx]) (int, error) {
	n, err := reclaim(ctx, s, begin, t, fn)
	if err != nil {
		return 0, fmt.Errorf("%s: reclaim expired runs: %w", s.d.Name, err)
	}
	return n, nil
}

func reclaim[TTx any](ctx context.Context, s *Store, begin BeginFunc[TTx], t time.Time, fn store.ReclaimFunc[TTx]) (int, error) {
	tx, native, err := begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	// Orphans first: a run Reclaim is about to clear (its lease expired)
	// still has its owner here, so it is not also taken for an orphan
	// (a running run whose lease was cleared by an earlier reclaim, whose
	// new job a worker fetched and died before claiming it: found by
	// agentd chaos r1, such runs waited for River's one-hour rescuer).
	var runs []store.Run
	var hasRiver bool
	if err := tx.QueryRow(ctx, s.d.HasRiver).Scan(&hasRiver); err != nil {
		return 0, err
	}
	if hasRiver {
		orphans, err := s.scanRuns(tx.Query(ctx, s.d.ReclaimOrphans, s.d.Time(t.Add(store.OrphanedJobAfter)),
			s.d.RiverTime(t.Add(-store.OrphanedJobAfter)), s.d.Time(t), ReclaimBatch))
		if err != nil {
			return 0, err
		}
		runs = orphans
	}
	if len(runs) < ReclaimBatch {
		expired, err := s.scanRuns(tx.Query(ctx, s.d.Reclaim, s.d.Time(t), ReclaimBatch-len(runs)))
		if err != nil {
			return 0, err
		}
		runs = append(runs, expired...)
	}
	if len(runs) == 0 {
		return 0, nil // the deferred rollback ends the empty transaction
	}
	if fn != nil {
		for _, r := range runs {
			if err := fn(ctx, native, r); err != nil {
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
	rows, err := s.db.Read.Query(ctx, qQueueStats)
	if err != nil {
		return store.QueueStats{}, fmt.Errorf("%s: queue stats: %w", s.d.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, agent string
			n           int
			at          time.Time
		)
		if err := rows.Scan(&kind, &agent, &n, s.d.ScanTime(&at)); err != nil {
			return store.QueueStats{}, fmt.Errorf("%s: queue stats: %w", s.d.Name, err)
		}
		switch kind {
		case "running":
			qs.Running = n
			continue
		case "approvals":
			qs.PendingApprovals = n
			continue
		}
		qs.Depth[agent] = n
		if !at.IsZero() && (qs.OldestQueuedAt.IsZero() || at.Before(qs.OldestQueuedAt)) {
			qs.OldestQueuedAt = at
		}
	}
	if err := rows.Err(); err != nil {
		return store.QueueStats{}, fmt.Errorf("%s: queue stats: %w", s.d.Name, err)
	}
	return qs, nil
}
