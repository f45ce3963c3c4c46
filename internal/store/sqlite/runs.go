package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentd/agentd/internal/store"
)

// CreateRun inserts r; a zero CreatedAt becomes now. store.ErrConflict if
// the id exists or the tenant already has a run with r.IdempotencyKey.
func (s *Store) CreateRun(ctx context.Context, r store.Run) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO runs
		(id, tenant, agent, conversation_id, status, input, output, error, attempt, steps,
		 input_tokens, output_tokens, cost_usd, idempotency_key, created_at, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Tenant, r.Agent, r.ConversationID, string(r.Status), toJSON(r.Input), toJSON(r.Output),
		r.Error, r.Attempt, r.Steps, r.InputTokens, r.OutputTokens, r.CostUSD, r.IdempotencyKey,
		toMicros(r.CreatedAt), toMicros(r.StartedAt), toMicros(r.FinishedAt))
	if err != nil {
		return fmt.Errorf("sqlite: create run %s: %w", r.ID, mapErr(err))
	}
	return nil
}

// GetRun returns a run of the tenant; store.ErrNotFound if it does not exist
// or belongs to another tenant.
func (s *Store) GetRun(ctx context.Context, tenant, id string) (store.Run, error) {
	var (
		r                                store.Run
		status                           string
		input, output                    []byte
		createdAt, startedAt, finishedAt sql.NullInt64
	)
	err := s.read.QueryRowContext(ctx, `SELECT id, tenant, agent, conversation_id, status, input, output,
		error, attempt, steps, input_tokens, output_tokens, cost_usd, idempotency_key,
		created_at, started_at, finished_at
		FROM runs WHERE id = ? AND tenant = ?`, id, tenant).Scan(
		&r.ID, &r.Tenant, &r.Agent, &r.ConversationID, &status, &input, &output,
		&r.Error, &r.Attempt, &r.Steps, &r.InputTokens, &r.OutputTokens, &r.CostUSD, &r.IdempotencyKey,
		&createdAt, &startedAt, &finishedAt)
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: get run %s: %w", id, mapErr(err))
	}
	r.Status = store.RunStatus(status)
	r.Input, r.Output = fromJSON(input), fromJSON(output)
	r.CreatedAt, r.StartedAt, r.FinishedAt = fromMicros(createdAt), fromMicros(startedAt), fromMicros(finishedAt)
	return r, nil
}

// UpdateRun overwrites every mutable field of the run; store.ErrNotFound if
// it does not exist.
func (s *Store) UpdateRun(ctx context.Context, p store.UpdateRunParams) error {
	res, err := s.write.ExecContext(ctx, `UPDATE runs SET
		status = ?, output = ?, error = ?, attempt = ?, steps = ?, input_tokens = ?,
		output_tokens = ?, cost_usd = ?, started_at = ?, finished_at = ?
		WHERE id = ?`,
		string(p.Status), toJSON(p.Output), p.Error, p.Attempt, p.Steps, p.InputTokens,
		p.OutputTokens, p.CostUSD, toMicros(p.StartedAt), toMicros(p.FinishedAt), p.ID)
	if err == nil {
		err = affectedOne(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update run %s: %w", p.ID, mapErr(err))
	}
	return nil
}

// SaveStep upserts cp (a checkpoint replaces one of the same step) and
// appends events, in one transaction. Each event's Seq must be the next of
// its run (1 for the first; events of one call in order): a seq that exists
// already, or one that leaves a gap, gives store.ErrConflict and nothing is
// written. A zero CreatedAt becomes now. store.ErrNotFound if a run does not
// exist.
func (s *Store) SaveStep(ctx context.Context, cp *store.Checkpoint, events []store.Event) error {
	if err := s.saveStep(ctx, cp, events); err != nil {
		runID := ""
		if cp != nil {
			runID = cp.RunID
		} else if len(events) > 0 {
			runID = events[0].RunID
		}
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
			err = fmt.Errorf("%w: no such run: %w", store.ErrNotFound, err)
		}
		return fmt.Errorf("sqlite: save step of run %s: %w", runID, mapErr(err))
	}
	return nil
}

const (
	qUpsertCheckpoint = `INSERT INTO checkpoints (run_id, step, state, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, created_at = excluded.created_at`
	qLastEventSeq = `SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = ?`
	qInsertEvent  = `INSERT INTO run_events (run_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)`
)

func (s *Store) saveStep(ctx context.Context, cp *store.Checkpoint, events []store.Event) error {
	if cp == nil && len(events) == 0 {
		return nil
	}
	sts, err := s.wstmt.getAll(ctx, qUpsertCheckpoint, qLastEventSeq, qInsertEvent)
	if err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return err
	}
	defer rollback(tx)

	t := now()
	if cp != nil {
		at := cp.CreatedAt
		if at.IsZero() {
			at = t
		}
		if _, err := tx.StmtContext(ctx, sts[0]).ExecContext(ctx,
			cp.RunID, cp.Step, toJSON(cp.State), toMicros(at)); err != nil {
			return err
		}
	}

	if len(events) > 0 {
		lastSeq, insert := tx.StmtContext(ctx, sts[1]), tx.StmtContext(ctx, sts[2])
		next := map[string]int64{} // next seq per run, read once per run
		for _, e := range events {
			want, ok := next[e.RunID]
			if !ok {
				var last int64
				if err := lastSeq.QueryRowContext(ctx, e.RunID).Scan(&last); err != nil {
					return err
				}
				want = last + 1
			}
			if e.Seq != want {
				return fmt.Errorf("%w: event seq %d, want %d", store.ErrConflict, e.Seq, want)
			}
			at := e.CreatedAt
			if at.IsZero() {
				at = t
			}
			if _, err := insert.ExecContext(ctx, e.RunID, e.Seq, e.Type, toJSON(e.Data), toMicros(at)); err != nil {
				return err
			}
			next[e.RunID] = want + 1
		}
	}
	return tx.Commit()
}

// ListEvents returns up to limit events of the run with Seq > afterSeq, in
// seq order; limit <= 0 means no limit. An unknown run has no events.
func (s *Store) ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	st, err := s.rstmt.get(ctx, `SELECT run_id, seq, type, data, created_at FROM run_events
		WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events of run %s: %w", runID, err)
	}
	rows, err := st.QueryContext(ctx, runID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events of run %s: %w", runID, err)
	}
	defer rows.Close()
	var evs []store.Event
	for rows.Next() {
		var (
			e    store.Event
			data []byte
			at   sql.NullInt64
		)
		if err := rows.Scan(&e.RunID, &e.Seq, &e.Type, &data, &at); err != nil {
			return nil, fmt.Errorf("sqlite: list events of run %s: %w", runID, err)
		}
		e.Data, e.CreatedAt = fromJSON(data), fromMicros(at)
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list events of run %s: %w", runID, err)
	}
	return evs, nil
}

// LatestCheckpoint returns the run's checkpoint with the highest step;
// store.ErrNotFound if it has none.
func (s *Store) LatestCheckpoint(ctx context.Context, runID string) (store.Checkpoint, error) {
	var (
		cp    store.Checkpoint
		state []byte
		at    sql.NullInt64
	)
	err := s.read.QueryRowContext(ctx, `SELECT run_id, step, state, created_at FROM checkpoints
		WHERE run_id = ? ORDER BY step DESC LIMIT 1`, runID).Scan(&cp.RunID, &cp.Step, &state, &at)
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("sqlite: latest checkpoint of run %s: %w", runID, mapErr(err))
	}
	cp.State, cp.CreatedAt = fromJSON(state), fromMicros(at)
	return cp, nil
}
