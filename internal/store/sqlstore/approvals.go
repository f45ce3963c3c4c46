package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

const (
	approvalColumns = `run_id, tenant, tool_use_id, step, name, input, requested_at, expires_at,
		decision, reason, decided_by, decided_at, kind, result, is_error, system_message`
	qInsertApproval = `INSERT INTO run_approvals (run_id, tenant, tool_use_id, step, name, input, requested_at, expires_at, kind)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (run_id, tool_use_id) DO NOTHING`
	qPauseRun = `UPDATE runs SET status = 'requires_action', lease_owner = NULL, lease_expires_at = NULL,
		attempt = $1, steps = $2, input_tokens = $3, output_tokens = $4, cost_nanos = $5
		WHERE id = $6 AND status = 'running' AND NOT cancel_requested`
	qListApprovals = `SELECT ` + approvalColumns + ` FROM run_approvals
		WHERE run_id = $1 ORDER BY requested_at, tool_use_id`
	qExpiredApprovals = `SELECT a.run_id, a.tenant, a.tool_use_id, a.step, a.name, a.input, a.requested_at,
		a.expires_at, a.decision, a.reason, a.decided_by, a.decided_at, a.kind, a.result, a.is_error,
		a.system_message
		FROM run_approvals a JOIN runs r ON r.id = a.run_id
		WHERE a.decision = '' AND a.expires_at < $1 AND r.status = 'requires_action'
		ORDER BY a.expires_at LIMIT $2`
	// Takes the run's row lock (PostgreSQL) so that decisions on the calls
	// of one run serialize: the last one sees every other as decided.
	qLockRun = `UPDATE runs SET status = status WHERE id = $1 AND tenant = $2 RETURNING status`
	// $7 is the kind of call the decision is for ('': any).
	qDecide = `UPDATE run_approvals SET decision = $3, reason = $4, decided_by = $5, decided_at = $6,
			result = $8, is_error = $9, system_message = $10
		WHERE run_id = $1 AND tool_use_id = $2 AND decision = '' AND ($7 = '' OR kind = $7)
		RETURNING ` + approvalColumns
	qApproval    = `SELECT ` + approvalColumns + ` FROM run_approvals WHERE run_id = $1 AND tool_use_id = $2`
	qPendingLeft = `SELECT count(*) FROM run_approvals WHERE run_id = $1 AND decision = ''`
	qRequeue     = `UPDATE runs SET status = 'queued' WHERE id = $1 AND status = 'requires_action'
		RETURNING ` + RunColumns
)

// PauseRun stores a run that waits for decisions (see store.Approvals).
func (s *Store) PauseRun(ctx context.Context, p store.PauseRunParams) error {
	if err := s.pauseRun(ctx, p); err != nil {
		if s.d.IsForeignKey(err) {
			err = fmt.Errorf("%w: no such run: %w", store.ErrNotFound, err)
		}
		return fmt.Errorf("%s: pause run %s: %w", s.d.Name, p.Run.ID, s.d.MapErr(err))
	}
	return nil
}

func (s *Store) pauseRun(ctx context.Context, p store.PauseRunParams) error {
	if p.Run.Status != store.RunRequiresAction {
		return fmt.Errorf("status %q, want %q", p.Run.Status, store.RunRequiresAction)
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	now := Now()
	b := &Batch{Queries: make([]Queued, 0, len(p.Events)+len(p.Approvals)+2)}
	q := s.queueStep(b, p.Checkpoint, p.Events, now)
	for _, a := range p.Approvals {
		at := a.RequestedAt
		if at.IsZero() {
			at = now
		}
		kind := a.Kind
		if kind == "" {
			kind = store.ApprovalKindApproval
		}
		b.Queue(qInsertApproval, p.Run.ID, a.Tenant, a.ToolUseID, a.Step, a.Name, JSON(a.Input), s.d.Time(at), s.d.Time(a.ExpiresAt), string(kind))
	}
	r := p.Run
	b.Queue(qPauseRun, r.Attempt, r.Steps, r.InputTokens, r.OutputTokens, int64(r.CostUSD), r.ID)
	br := tx.SendBatch(ctx, b)
	err = func() error {
		if err := readStep(br, q); err != nil {
			return err
		}
		for range p.Approvals {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		n, err := br.Exec()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: the run is not running, or its cancellation was requested", store.ErrConflict)
		}
		return nil
	}()
	if err != nil {
		_ = br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (s *Store) scanApproval(row Row) (store.Approval, error) {
	var (
		a              store.Approval
		decision, kind string
		input, result  []byte
	)
	err := row.Scan(&a.RunID, &a.Tenant, &a.ToolUseID, &a.Step, &a.Name, &input, s.d.ScanTime(&a.RequestedAt),
		s.d.ScanTime(&a.ExpiresAt), &decision, &a.Reason, &a.DecidedBy, s.d.ScanTime(&a.DecidedAt), &kind, &result, &a.IsError, &a.SystemMessage)
	if err != nil {
		return store.Approval{}, err
	}
	a.Decision, a.Kind, a.Input, a.Result = store.Decision(decision), store.ApprovalKind(kind), fromJSON(input), fromJSON(result)
	return a, nil
}

func (s *Store) scanApprovals(rows Rows, err error) ([]store.Approval, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.Approval{}
	for rows.Next() {
		a, err := s.scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ListApprovals returns the approvals of a run (see store.Approvals).
func (s *Store) ListApprovals(ctx context.Context, runID string) ([]store.Approval, error) {
	out, err := s.scanApprovals(s.db.Read.Query(ctx, qListApprovals, runID))
	if err != nil {
		return nil, fmt.Errorf("%s: list approvals of run %s: %w", s.d.Name, runID, err)
	}
	return out, nil
}

// ListExpiredApprovals returns undecided approvals of paused runs that
// expired before now (see store.Approvals).
func (s *Store) ListExpiredApprovals(ctx context.Context, now time.Time, limit int) ([]store.Approval, error) {
	if limit <= 0 {
		limit = 100
	}
	out, err := s.scanApprovals(s.db.Read.Query(ctx, qExpiredApprovals, s.d.Time(now), limit))
	if err != nil {
		return nil, fmt.Errorf("%s: list expired approvals: %w", s.d.Name, err)
	}
	return out, nil
}

// DecideApprovalTx records a decision and, when it was the run's last
// pending call, queues the run and calls fn in the same transaction (see
// store.ApprovalsTx).
func DecideApprovalTx[TTx any](ctx context.Context, s *Store, begin BeginFunc[TTx], p store.DecideApprovalParams, fn store.ReclaimFunc[TTx]) (store.Approval, store.Run, error) {
	a, r, err := decide(ctx, s, begin, p, fn)
	if err != nil {
		return a, r, fmt.Errorf("%s: decide approval %s of run %s: %w", s.d.Name, p.ToolUseID, p.RunID, err)
	}
	return a, r, nil
}

func decide[TTx any](ctx context.Context, s *Store, begin BeginFunc[TTx], p store.DecideApprovalParams, fn store.ReclaimFunc[TTx]) (store.Approval, store.Run, error) {
	var kind store.ApprovalKind // the kind of call the decision is for; "": any
	switch p.Decision {
	case store.DecisionApprove, store.DecisionDeny:
		kind = store.ApprovalKindApproval
	case store.DecisionResult:
		kind = store.ApprovalKindCustomTool
	case store.DecisionTimeout:
	default:
		return store.Approval{}, store.Run{}, fmt.Errorf("invalid decision %q", p.Decision)
	}
	if p.DecidedAt.IsZero() {
		p.DecidedAt = Now()
	}
	tx, native, err := begin(ctx)
	if err != nil {
		return store.Approval{}, store.Run{}, err
	}
	defer rollback(tx)
	var status string
	if err := tx.QueryRow(ctx, qLockRun, p.RunID, p.Tenant).Scan(&status); err != nil {
		return store.Approval{}, store.Run{}, fmt.Errorf("run: %w", s.d.MapErr(err))
	}
	a, err := s.scanApproval(tx.QueryRow(ctx, qDecide, p.RunID, p.ToolUseID, string(p.Decision), p.Reason, p.DecidedBy,
		s.d.Time(p.DecidedAt), string(kind), JSON(p.Result), p.IsError, p.SystemMessage))
	if err = s.d.MapErr(err); errors.Is(err, store.ErrNotFound) {
		// Decided already, no such call, or a call of another kind.
		cur, cerr := s.scanApproval(tx.QueryRow(ctx, qApproval, p.RunID, p.ToolUseID))
		if cerr != nil {
			return store.Approval{}, store.Run{}, fmt.Errorf("tool call: %w", s.d.MapErr(cerr))
		}
		if kind != "" && cur.Kind != kind {
			return store.Approval{}, store.Run{}, fmt.Errorf("tool call: %w: it waits for a decision of kind %s, not %s", store.ErrNotFound, cur.Kind, kind)
		}
		return cur, store.Run{}, fmt.Errorf("%w: decided already (%s)", store.ErrConflict, cur.Decision)
	}
	if err != nil {
		return store.Approval{}, store.Run{}, err
	}
	if store.RunStatus(status) != store.RunRequiresAction {
		return a, store.Run{}, fmt.Errorf("%w: the run is %s", store.ErrConflict, status)
	}
	var left int
	if err := tx.QueryRow(ctx, qPendingLeft, p.RunID).Scan(&left); err != nil {
		return store.Approval{}, store.Run{}, err
	}
	if left == 0 {
		r, err := s.scanRun(tx.QueryRow(ctx, qRequeue, p.RunID))
		if err != nil {
			return store.Approval{}, store.Run{}, s.d.MapErr(err)
		}
		if fn != nil {
			if err := fn(ctx, native, r); err != nil {
				return store.Approval{}, store.Run{}, fmt.Errorf("in transaction: %w", err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return store.Approval{}, store.Run{}, s.d.MapErr(err)
		}
		return a, r, nil
	}
	r, err := s.scanRun(tx.QueryRow(ctx, qRunByID, p.RunID))
	if err != nil {
		return store.Approval{}, store.Run{}, s.d.MapErr(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return store.Approval{}, store.Run{}, s.d.MapErr(err)
	}
	return a, r, nil
}
