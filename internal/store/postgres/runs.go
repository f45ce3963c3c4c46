package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`

// CreateRunTx inserts r like CreateRun and then, when fn is not nil, calls
// fn with the transaction, a pgx.Tx (River's riverpgxv5 driver takes it);
// if fn fails, nothing is written and its error is returned wrapped (as is,
// not mapped to the store's sentinels).
func (s *Store) CreateRunTx(ctx context.Context, r store.Run, fn store.TxFunc) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	}
	args := []any{r.ID, r.Tenant, r.Agent, r.ConversationID, string(r.Status), toJSON(r.Input), toJSON(r.Output),
		r.Error, r.Attempt, r.Steps, r.InputTokens, r.OutputTokens, r.CostUSD, r.IdempotencyKey,
		toTime(r.CreatedAt), toTime(r.StartedAt), toTime(r.FinishedAt)}
	if fn == nil {
		if _, err := s.pool.Exec(ctx, qInsertRun, args...); err != nil {
			return fmt.Errorf("postgres: create run %s: %w", r.ID, mapErr(err))
		}
		return nil
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: create run %s: %w", r.ID, err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, qInsertRun, args...); err != nil {
		return fmt.Errorf("postgres: create run %s: %w", r.ID, mapErr(err))
	}
	if err := fn(ctx, tx); err != nil {
		return fmt.Errorf("postgres: create run %s: in transaction: %w", r.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: create run %s: %w", r.ID, mapErr(err))
	}
	return nil
}

const runColumns = `id, tenant, agent, conversation_id, status, input, output,
	error, attempt, steps, input_tokens, output_tokens, cost_usd, idempotency_key,
	created_at, started_at, finished_at`

// scanRun scans a row of runColumns.
func scanRun(row pgx.Row) (store.Run, error) {
	var (
		r                                store.Run
		status                           string
		input, output                    []byte
		createdAt, startedAt, finishedAt pgtype.Timestamptz
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
	r.CreatedAt, r.StartedAt, r.FinishedAt = fromTime(createdAt), fromTime(startedAt), fromTime(finishedAt)
	return r, nil
}

// GetRun returns a run of the tenant; store.ErrNotFound if it does not exist
// or belongs to another tenant.
func (s *Store) GetRun(ctx context.Context, tenant, id string) (store.Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx,
		`SELECT `+runColumns+` FROM runs WHERE id = $1 AND tenant = $2`, id, tenant))
	if err != nil {
		return store.Run{}, fmt.Errorf("postgres: get run %s: %w", id, mapErr(err))
	}
	return r, nil
}

// GetRunByIdempotencyKey returns the tenant's run created with key;
// store.ErrNotFound if there is none (an empty key never matches, nor does a
// key ExpireIdempotencyKeys cleared).
func (s *Store) GetRunByIdempotencyKey(ctx context.Context, tenant, key string) (store.Run, error) {
	if key == "" {
		return store.Run{}, fmt.Errorf("postgres: get run by idempotency key: empty key: %w", store.ErrNotFound)
	}
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs
		WHERE tenant = $1 AND idempotency_key = $2 AND idempotency_key <> ''`, tenant, key))
	if err != nil {
		return store.Run{}, fmt.Errorf("postgres: get run by idempotency key %q: %w", key, mapErr(err))
	}
	return r, nil
}

// Page sizes of ListRuns.
const (
	DefaultListRuns = 50
	MaxListRuns     = 1000
)

// ListRuns returns a page of the tenant's runs, highest id (newest) first;
// see store.ListRunsParams. Limit <= 0 is DefaultListRuns, more than
// MaxListRuns is MaxListRuns. Ids compare byte-wise (COLLATE "C").
func (s *Store) ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultListRuns
	}
	limit = min(limit, MaxListRuns)

	// One query text per combination of filters (at most 8, each prepared
	// once per connection by pgx), so that each gets a plan on the
	// (tenant, id) index.
	var q strings.Builder
	q.WriteString(`SELECT ` + runColumns + ` FROM runs WHERE tenant = $1`)
	args := []any{p.Tenant}
	arg := func(cond string, v any) {
		args = append(args, v)
		q.WriteString(" AND " + cond + " $" + strconv.Itoa(len(args)))
	}
	if p.Status != "" {
		arg("status =", string(p.Status))
	}
	if p.Agent != "" {
		arg("agent =", p.Agent)
	}
	if p.Cursor != "" {
		arg("id <", p.Cursor)
	}
	args = append(args, limit)
	q.WriteString(` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args)))

	rows, err := s.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", err)
	}
	runs := []store.Run{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: list runs: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", err)
	}
	return runs, nil
}

// ExpireIdempotencyKeys clears the idempotency key of every run created
// before createdBefore that still has one and returns how many it cleared.
func (s *Store) ExpireIdempotencyKeys(ctx context.Context, createdBefore time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE runs SET idempotency_key = ''
		WHERE idempotency_key <> '' AND created_at < $1`, normTime(createdBefore))
	if err != nil {
		return 0, fmt.Errorf("postgres: expire idempotency keys: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// UpdateRun overwrites every mutable field of the run; store.ErrNotFound if
// it does not exist.
func (s *Store) UpdateRun(ctx context.Context, p store.UpdateRunParams) error {
	tag, err := s.pool.Exec(ctx, qUpdateRun, updateRunArgs(p)...)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return fmt.Errorf("postgres: update run %s: %w", p.ID, mapErr(err))
	}
	return nil
}

const qUpdateRun = `UPDATE runs SET
		status = $1, output = $2, error = $3, attempt = $4, steps = $5, input_tokens = $6,
		output_tokens = $7, cost_usd = $8, started_at = $9, finished_at = $10
		WHERE id = $11`

func updateRunArgs(p store.UpdateRunParams) []any {
	return []any{string(p.Status), toJSON(p.Output), p.Error, p.Attempt, p.Steps, p.InputTokens,
		p.OutputTokens, p.CostUSD, toTime(p.StartedAt), toTime(p.FinishedAt), p.ID}
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
		if isCode(err, codeForeignKeyViolation) {
			err = fmt.Errorf("%w: no such run: %w", store.ErrNotFound, err)
		}
		return fmt.Errorf("postgres: save step of run %s: %w", runID, mapErr(err))
	}
	return nil
}

func (s *Store) saveStep(ctx context.Context, cp *store.Checkpoint, events []store.Event) error {
	if cp == nil && len(events) == 0 {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)

	// One round trip. Each event is inserted only if it is its run's next
	// (the statements of the batch see each other's rows); one that is not
	// inserts nothing and the whole transaction is rolled back. Two callers
	// racing for the same seq both pass the check, and the second one's
	// insert fails on the primary key once the first commits.
	b := &pgx.Batch{}
	queueStep(b, cp, events, now())
	br := tx.SendBatch(ctx, b)
	if err := readStep(br, cp, events); err != nil {
		_ = br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// queueStep queues the statements of a step (see saveStep) on b.
func queueStep(b *pgx.Batch, cp *store.Checkpoint, events []store.Event, t time.Time) {
	if cp != nil {
		at := cp.CreatedAt
		if at.IsZero() {
			at = t
		}
		b.Queue(`INSERT INTO checkpoints (run_id, step, state, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, created_at = excluded.created_at`,
			cp.RunID, cp.Step, toJSON(cp.State), toTime(at))
	}
	for _, e := range events {
		at := e.CreatedAt
		if at.IsZero() {
			at = t
		}
		b.Queue(`INSERT INTO run_events (run_id, seq, type, data, created_at)
			SELECT $1, $2, $3, $4, $5
			WHERE (SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = $1) = $2::bigint - 1`,
			e.RunID, e.Seq, e.Type, toJSON(e.Data), toTime(at))
	}
}

// readStep reads the results of the statements queueStep queued.
func readStep(br pgx.BatchResults, cp *store.Checkpoint, events []store.Event) error {
	if cp != nil {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	for _, e := range events {
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: event seq %d is not the next of run %s", store.ErrConflict, e.Seq, e.RunID)
		}
	}
	return nil
}

// ListEvents returns up to limit events of the run with Seq > afterSeq, in
// seq order; limit <= 0 means no limit. An unknown run has no events.
func (s *Store) ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error) {
	var lim any // NULL: LIMIT ALL
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT run_id, seq, type, data, created_at FROM run_events
		WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, runID, afterSeq, lim)
	if err != nil {
		return nil, fmt.Errorf("postgres: list events of run %s: %w", runID, err)
	}
	defer rows.Close()
	var evs []store.Event
	for rows.Next() {
		var (
			e    store.Event
			data []byte
			at   pgtype.Timestamptz
		)
		if err := rows.Scan(&e.RunID, &e.Seq, &e.Type, &data, &at); err != nil {
			return nil, fmt.Errorf("postgres: list events of run %s: %w", runID, err)
		}
		e.Data, e.CreatedAt = fromJSON(data), fromTime(at)
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list events of run %s: %w", runID, err)
	}
	return evs, nil
}

// LatestCheckpoint returns the run's checkpoint with the highest step;
// store.ErrNotFound if it has none.
func (s *Store) LatestCheckpoint(ctx context.Context, runID string) (store.Checkpoint, error) {
	var (
		cp    store.Checkpoint
		state []byte
		at    pgtype.Timestamptz
	)
	err := s.pool.QueryRow(ctx, `SELECT run_id, step, state, created_at FROM checkpoints
		WHERE run_id = $1 ORDER BY step DESC LIMIT 1`, runID).Scan(&cp.RunID, &cp.Step, &state, &at)
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("postgres: latest checkpoint of run %s: %w", runID, mapErr(err))
	}
	cp.State, cp.CreatedAt = fromJSON(state), fromTime(at)
	return cp, nil
}
