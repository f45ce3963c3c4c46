package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentd/agentd/internal/store"
)

// CreateRun inserts r; a zero CreatedAt becomes now. store.ErrConflict if
// the id exists or the tenant already has a run with r.IdempotencyKey.
func (s *Store) CreateRun(ctx context.Context, r store.Run) error {
	return s.CreateRunTx(ctx, r, nil)
}

const qInsertRun = `INSERT INTO runs
	(id, tenant, agent, conversation_id, status, input, output, error, attempt, steps,
	 input_tokens, output_tokens, cost_usd, idempotency_key, created_at, started_at, finished_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// CreateRunTx inserts r like CreateRun and then, when fn is not nil, calls
// fn with the transaction, a *sql.Tx on the write connection; if fn fails,
// nothing is written and its error is returned wrapped (as is, not mapped
// to the store's sentinels). fn must do all its work on that *sql.Tx: the
// Store's write pool has one connection, which the transaction holds, so
// calling the Store from fn deadlocks.
func (s *Store) CreateRunTx(ctx context.Context, r store.Run, fn store.TxFunc) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	}
	args := []any{r.ID, r.Tenant, r.Agent, r.ConversationID, string(r.Status), toJSON(r.Input), toJSON(r.Output),
		r.Error, r.Attempt, r.Steps, r.InputTokens, r.OutputTokens, r.CostUSD, r.IdempotencyKey,
		toMicros(r.CreatedAt), toMicros(r.StartedAt), toMicros(r.FinishedAt)}
	if fn == nil {
		if _, err := s.exec(ctx, qInsertRun, args...); err != nil {
			return fmt.Errorf("sqlite: create run %s: %w", r.ID, mapErr(err))
		}
		return nil
	}

	st, err := s.wstmt.get(ctx, qInsertRun)
	if err != nil {
		return fmt.Errorf("sqlite: create run %s: %w", r.ID, err)
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return fmt.Errorf("sqlite: create run %s: %w", r.ID, err)
	}
	defer rollback(tx)
	if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("sqlite: create run %s: %w", r.ID, mapErr(err))
	}
	if err := fn(ctx, tx); err != nil {
		return fmt.Errorf("sqlite: create run %s: in transaction: %w", r.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: create run %s: %w", r.ID, mapErr(err))
	}
	return nil
}

const runColumns = `id, tenant, agent, conversation_id, status, input, output,
	error, attempt, steps, input_tokens, output_tokens, cost_usd, idempotency_key,
	created_at, started_at, finished_at`

// scanRun scans a row of runColumns.
func scanRun(row interface{ Scan(...any) error }) (store.Run, error) {
	var (
		r                                store.Run
		status                           string
		input, output                    []byte
		createdAt, startedAt, finishedAt sql.NullInt64
	)
	err := row.Scan(
		&r.ID, &r.Tenant, &r.Agent, &r.ConversationID, &status, &input, &output,
		&r.Error, &r.Attempt, &r.Steps, &r.InputTokens, &r.OutputTokens, &r.CostUSD, &r.IdempotencyKey,
		&createdAt, &startedAt, &finishedAt)
	if err != nil {
		return store.Run{}, err
	}
	r.Status = store.RunStatus(status)
	r.Input, r.Output = fromJSON(input), fromJSON(output)
	r.CreatedAt, r.StartedAt, r.FinishedAt = fromMicros(createdAt), fromMicros(startedAt), fromMicros(finishedAt)
	return r, nil
}

// GetRun returns a run of the tenant; store.ErrNotFound if it does not exist
// or belongs to another tenant.
func (s *Store) GetRun(ctx context.Context, tenant, id string) (store.Run, error) {
	r, err := scanRun(s.queryRow(ctx,
		`SELECT `+runColumns+` FROM runs WHERE id = ? AND tenant = ?`, id, tenant))
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: get run %s: %w", id, mapErr(err))
	}
	return r, nil
}

// GetRunByIdempotencyKey returns the tenant's run created with key;
// store.ErrNotFound if there is none (an empty key never matches, nor does a
// key ExpireIdempotencyKeys cleared).
func (s *Store) GetRunByIdempotencyKey(ctx context.Context, tenant, key string) (store.Run, error) {
	if key == "" {
		return store.Run{}, fmt.Errorf("sqlite: get run by idempotency key: empty key: %w", store.ErrNotFound)
	}
	r, err := scanRun(s.queryRow(ctx, `SELECT `+runColumns+` FROM runs
		WHERE tenant = ? AND idempotency_key = ? AND idempotency_key <> ''`, tenant, key))
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: get run by idempotency key %q: %w", key, mapErr(err))
	}
	return r, nil
}

// ListRuns returns a page of the tenant's runs, highest id (newest) first;
// see store.ListRunsParams. Limit <= 0 is 50, more than MaxListRuns is
// MaxListRuns.
func (s *Store) ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error) {
	runs, err := s.listRuns(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	return runs, nil
}

// Page sizes of ListRuns.
const (
	DefaultListRuns = 50
	MaxListRuns     = 1000
)

func (s *Store) listRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultListRuns
	}
	limit = min(limit, MaxListRuns)

	// One query text per combination of filters (at most 8, prepared once
	// each), so that SQLite plans each with the (tenant, id) index.
	var q strings.Builder
	q.WriteString(`SELECT ` + runColumns + ` FROM runs WHERE tenant = ?`)
	args := []any{p.Tenant}
	if p.Status != "" {
		q.WriteString(` AND status = ?`)
		args = append(args, string(p.Status))
	}
	if p.Agent != "" {
		q.WriteString(` AND agent = ?`)
		args = append(args, p.Agent)
	}
	if p.Cursor != "" {
		q.WriteString(` AND id < ?`)
		args = append(args, p.Cursor)
	}
	q.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, limit)

	st, err := s.rstmt.get(ctx, q.String())
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	runs := []store.Run{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return runs, nil
}

// ExpireIdempotencyKeys clears the idempotency key of every run created
// before createdBefore that still has one and returns how many it cleared.
func (s *Store) ExpireIdempotencyKeys(ctx context.Context, createdBefore time.Time) (int, error) {
	res, err := s.write.ExecContext(ctx, `UPDATE runs SET idempotency_key = ''
		WHERE idempotency_key <> '' AND created_at < ?`, createdBefore.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire idempotency keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire idempotency keys: %w", err)
	}
	return int(n), nil
}

// UpdateRun overwrites every mutable field of the run; store.ErrNotFound if
// it does not exist.
func (s *Store) UpdateRun(ctx context.Context, p store.UpdateRunParams) error {
	res, err := s.exec(ctx, qUpdateRun, updateRunArgs(p)...)
	if err == nil {
		err = affectedOne(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update run %s: %w", p.ID, mapErr(err))
	}
	return nil
}

const qUpdateRun = `UPDATE runs SET
		status = ?, output = ?, error = ?, attempt = ?, steps = ?, input_tokens = ?,
		output_tokens = ?, cost_usd = ?, started_at = ?, finished_at = ?
		WHERE id = ?`

func updateRunArgs(p store.UpdateRunParams) []any {
	return []any{string(p.Status), toJSON(p.Output), p.Error, p.Attempt, p.Steps, p.InputTokens,
		p.OutputTokens, p.CostUSD, toMicros(p.StartedAt), toMicros(p.FinishedAt), p.ID}
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
	sts, err := s.wstmt.getAll(ctx, stepQueries...)
	if err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return err
	}
	defer rollback(tx)
	if err := saveStepTx(ctx, tx, sts, cp, events); err != nil {
		return err
	}
	return tx.Commit()
}

// stepQueries are the statements saveStepTx needs, in its order.
var stepQueries = []string{qUpsertCheckpoint, qLastEventSeq, qInsertEvent}

// saveStepTx writes a step (see SaveStep) inside tx; sts are the prepared
// stepQueries.
func saveStepTx(ctx context.Context, tx *sql.Tx, sts []*sql.Stmt, cp *store.Checkpoint, events []store.Event) error {
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
	if len(events) == 0 {
		return nil
	}
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
	return nil
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
	err := s.queryRow(ctx, `SELECT run_id, step, state, created_at FROM checkpoints
		WHERE run_id = ? ORDER BY step DESC LIMIT 1`, runID).Scan(&cp.RunID, &cp.Step, &state, &at)
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("sqlite: latest checkpoint of run %s: %w", runID, mapErr(err))
	}
	cp.State, cp.CreatedAt = fromJSON(state), fromMicros(at)
	return cp, nil
}
