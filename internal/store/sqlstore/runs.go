package sqlstore

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// CreateRun inserts r; a zero CreatedAt becomes now. store.ErrConflict if
// the id exists or the tenant already has a run with r.IdempotencyKey.
func (s *Store) CreateRun(ctx context.Context, r store.Run) error {
	if r.Turn == store.NextTurn {
		return fmt.Errorf("%s: create run %s: a run that takes a turn is created with CreateRunTx", s.d.Name, r.ID)
	}
	if err := s.insertRun(ctx, s.db.Write, r); err != nil {
		return fmt.Errorf("%s: create run %s: %w", s.d.Name, r.ID, s.d.MapErr(err))
	}
	return nil
}

const qInsertRun = `INSERT INTO runs
	(id, tenant, agent, conversation_id, status, input, output, error, attempt, steps,
	 input_tokens, output_tokens, cost_nanos, idempotency_key, created_at, started_at, finished_at,
	 turn, lease_owner, lease_expires_at, agent_digest)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`

// qNextTurn hands out a conversation's next turn. On PostgreSQL the
// upsert locks the conversation's row until the transaction ends, so
// concurrent submitters take turns in the order they commit; SQLite has
// one writer.
const qNextTurn = `INSERT INTO conversation_turns (conversation_id, last_turn) VALUES ($1, 1)
	ON CONFLICT (conversation_id) DO UPDATE SET last_turn = conversation_turns.last_turn + 1
	RETURNING last_turn`

func (s *Store) insertRun(ctx context.Context, q Querier, r store.Run) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = Now()
	}
	if r.Turn == store.NextTurn {
		if r.ConversationID == "" {
			return fmt.Errorf("a run without a conversation takes no turn")
		}
		if err := q.QueryRow(ctx, qNextTurn, r.ConversationID).Scan(&r.Turn); err != nil {
			return fmt.Errorf("take a turn of conversation %s: %w", r.ConversationID, err)
		}
	}
	var holder any
	var heldUntil time.Time
	if r.HeldBy != "" && (r.Status == store.RunQueued || r.Status == store.RunRunning) {
		holder, heldUntil = r.HeldBy, r.HeldUntil
	}
	_, err := q.Exec(ctx, qInsertRun, r.ID, r.Tenant, r.Agent, r.ConversationID, string(r.Status), JSON(r.Input), JSON(r.Output),
		r.Error, r.Attempt, r.Steps, r.InputTokens, r.OutputTokens, int64(r.CostUSD), r.IdempotencyKey,
		s.d.Time(r.CreatedAt), s.d.Time(r.StartedAt), s.d.Time(r.FinishedAt), r.Turn, holder, s.d.Time(heldUntil), r.AgentDigest)
	return err
}

// BeginFunc starts a read-write transaction and returns it both as a Tx
// and as the backend's native transaction TTx (*sql.Tx, pgx.Tx), which a
// job queue sharing the database takes.
type BeginFunc[TTx any] func(ctx context.Context) (Tx, TTx, error)

// CreateRunTx inserts r like CreateRun and then, when fn is not nil, calls
// fn with the native transaction; if fn fails, nothing is written and its
// error is returned wrapped (as is, not mapped to the store's sentinels).
func CreateRunTx[TTx any](ctx context.Context, s *Store, begin BeginFunc[TTx], r store.Run, fn store.TxFunc[TTx]) error {
	if fn == nil && r.Turn != store.NextTurn {
		return s.CreateRun(ctx, r)
	}
	tx, native, err := begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: create run %s: %w", s.d.Name, r.ID, err)
	}
	defer rollback(tx)
	if err := s.insertRun(ctx, tx, r); err != nil {
		return fmt.Errorf("%s: create run %s: %w", s.d.Name, r.ID, s.d.MapErr(err))
	}
	if fn == nil {
		fn = func(context.Context, TTx) error { return nil }
	}
	if err := fn(ctx, native); err != nil {
		return fmt.Errorf("%s: create run %s: in transaction: %w", s.d.Name, r.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: create run %s: %w", s.d.Name, r.ID, s.d.MapErr(err))
	}
	return nil
}

// RunColumns are the columns scanRun reads, in its order.
const RunColumns = `id, tenant, agent, conversation_id, status, input, output,
	error, attempt, steps, input_tokens, output_tokens, cost_nanos, idempotency_key,
	created_at, started_at, finished_at, interrupt_requested, turn, agent_digest`

// scanRun scans a row of RunColumns.
func (s *Store) scanRun(row Row) (store.Run, error) {
	var (
		r             store.Run
		status        string
		input, output []byte
	)
	err := row.Scan(
		&r.ID, &r.Tenant, &r.Agent, &r.ConversationID, &status, &input, &output,
		&r.Error, &r.Attempt, &r.Steps, &r.InputTokens, &r.OutputTokens, (*int64)(&r.CostUSD), &r.IdempotencyKey,
		s.d.ScanTime(&r.CreatedAt), s.d.ScanTime(&r.StartedAt), s.d.ScanTime(&r.FinishedAt), &r.InterruptRequested, &r.Turn, &r.AgentDigest)
	if err != nil {
		return store.Run{}, err
	}
	r.Status = store.RunStatus(status)
	r.Input, r.Output = fromJSON(input), fromJSON(output)
	return r, nil
}

// scanRuns scans every row of RunColumns and closes rows.
func (s *Store) scanRuns(rows Rows, err error) ([]store.Run, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	runs := []store.Run{}
	for rows.Next() {
		r, err := s.scanRun(rows)
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

// GetRun returns a run of the tenant; store.ErrNotFound if it does not exist
// or belongs to another tenant.
func (s *Store) GetRun(ctx context.Context, tenant, id string) (store.Run, error) {
	r, err := s.scanRun(s.db.Read.QueryRow(ctx,
		`SELECT `+RunColumns+` FROM runs WHERE id = $1 AND tenant = $2`, id, tenant))
	if err != nil {
		return store.Run{}, fmt.Errorf("%s: get run %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return r, nil
}

// GetRunByIdempotencyKey returns the tenant's run created with key;
// store.ErrNotFound if there is none (an empty key never matches, nor does a
// key ExpireIdempotencyKeys cleared).
func (s *Store) GetRunByIdempotencyKey(ctx context.Context, tenant, key string) (store.Run, error) {
	if key == "" {
		return store.Run{}, fmt.Errorf("%s: get run by idempotency key: empty key: %w", s.d.Name, store.ErrNotFound)
	}
	r, err := s.scanRun(s.db.Read.QueryRow(ctx, `SELECT `+RunColumns+` FROM runs
		WHERE tenant = $1 AND idempotency_key = $2 AND idempotency_key <> ''`, tenant, key))
	if err != nil {
		return store.Run{}, fmt.Errorf("%s: get run by idempotency key %q: %w", s.d.Name, key, s.d.MapErr(err))
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
// MaxListRuns is MaxListRuns. Ids compare byte-wise.
func (s *Store) ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultListRuns
	}
	limit = min(limit, MaxListRuns)

	// One query text per combination of filters (at most 8, each prepared
	// once per connection). Every one reads an index in id order and stops
	// after limit matches: the id primary key, (tenant, id), and with a
	// status (status, id) or (tenant, status, id) (migration 0015), so a
	// rare status reads its own runs only.
	var q strings.Builder
	q.WriteString(`SELECT ` + RunColumns + ` FROM runs`)
	var args []any
	sep := " WHERE "
	arg := func(cond string, v any) {
		args = append(args, v)
		q.WriteString(sep + cond + " $" + strconv.Itoa(len(args)))
		sep = " AND "
	}
	if !p.AllTenants {
		arg("tenant =", p.Tenant)
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

	runs, err := s.scanRuns(s.db.Read.Query(ctx, q.String(), args...))
	if err != nil {
		return nil, fmt.Errorf("%s: list runs: %w", s.d.Name, err)
	}
	return runs, nil
}

// ExpireIdempotencyKeys clears the idempotency key of every run created
// before createdBefore that still has one and returns how many it cleared.
func (s *Store) ExpireIdempotencyKeys(ctx context.Context, createdBefore time.Time) (int, error) {
	n, err := s.db.Write.Exec(ctx, `UPDATE runs SET idempotency_key = ''
		WHERE idempotency_key <> '' AND created_at < $1`, s.d.Time(createdBefore))
	if err != nil {
		return 0, fmt.Errorf("%s: expire idempotency keys: %w", s.d.Name, err)
	}
	return int(n), nil
}

// UpdateRun overwrites every mutable field of the run; store.ErrNotFound if
// it does not exist.
func (s *Store) UpdateRun(ctx context.Context, p store.UpdateRunParams) error {
	n, err := s.db.Write.Exec(ctx, qUpdateRun, s.updateRunArgs(p)...)
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("%s: update run %s: %w", s.d.Name, p.ID, s.d.MapErr(err))
	}
	return nil
}

const qUpdateRun = `UPDATE runs SET
		status = $1, output = $2, error = $3, attempt = $4, steps = $5, input_tokens = $6,
		output_tokens = $7, cost_nanos = $8, started_at = $9, finished_at = $10
		WHERE id = $11`

func (s *Store) updateRunArgs(p store.UpdateRunParams) []any {
	return []any{string(p.Status), JSON(p.Output), p.Error, p.Attempt, p.Steps, p.InputTokens,
		p.OutputTokens, int64(p.CostUSD), s.d.Time(p.StartedAt), s.d.Time(p.FinishedAt), p.ID}
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
		if s.d.IsForeignKey(err) {
			err = fmt.Errorf("%w: no such run: %w", store.ErrNotFound, err)
		}
		return fmt.Errorf("%s: save step of run %s: %w", s.d.Name, runID, s.d.MapErr(err))
	}
	return nil
}

func (s *Store) saveStep(ctx context.Context, cp *store.Checkpoint, events []store.Event) error {
	if cp == nil && len(events) == 0 {
		return nil
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)

	// One batch (one round trip on PostgreSQL). Each event must be its
	// run's next (the statements of the batch see each other's rows; see
	// eventStmts: the first is checked, those in order after it follow in
	// multi-row inserts); one that is not inserts nothing and the whole
	// transaction is rolled back. Two PostgreSQL callers racing for the
	// same seq both pass the check, and the second one's insert fails on
	// the primary key once the first commits (SQLite has one writer).
	b := &Batch{Queries: make([]Queued, 0, len(events)+1)}
	q := s.queueStep(b, cp, events, Now())
	br := tx.SendBatch(ctx, b)
	if err := readStep(br, q); err != nil {
		_ = br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

const (
	qUpsertCheckpoint = `INSERT INTO checkpoints (run_id, step, state, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, created_at = excluded.created_at`
	qInsertEvent = `INSERT INTO run_events (run_id, seq, type, data, created_at)
		SELECT $1, $2, $3, $4, $5
		WHERE (SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = $1) = CAST($2 AS bigint) - 1`
)

// maxEventRows bounds the rows of one multi-row event insert: a step's
// events take one statement per maxEventRows, and at most maxEventRows
// statement texts exist (each prepared once per connection).
const maxEventRows = 32

// eventInserts returns the inserts of n = 1..maxEventRows events without a
// check, q[n]: each row's parameters are its run_id, seq, type, data and
// created_at, in that order (param numbers them, Dialect.Param).
func eventInserts(param func(int) string) (q [maxEventRows + 1]string) {
	for n := 1; n <= maxEventRows; n++ {
		var b strings.Builder
		b.WriteString("INSERT INTO run_events (run_id, seq, type, data, created_at) VALUES ")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for c := 1; c <= 5; c++ {
				if c > 1 {
					b.WriteString(", ")
				}
				b.WriteString(param(5*i + c))
			}
			b.WriteByte(')')
		}
		q[n] = b.String()
	}
	return q
}

// eventStmt is one statement of a step's events: a checked insert of one
// event (inserted only if it is its run's next) or an insert of several.
type eventStmt struct {
	events  []store.Event
	checked bool
}

// eventStmts splits a step's events into statements. The first event is
// inserted with the check (qInsertEvent); when the others are its run's
// next ones in order, which is how a run appends them, they follow it in
// multi-row inserts: each is then its run's next as well, and the primary
// key refuses a racing writer's. Otherwise every event is checked on its
// own, as it always was.
func eventStmts(events []store.Event) []eventStmt {
	if len(events) == 0 {
		return nil
	}
	for i, e := range events {
		if e.RunID != events[0].RunID || e.Seq != events[0].Seq+int64(i) {
			stmts := make([]eventStmt, len(events))
			for i := range events {
				stmts[i] = eventStmt{events: events[i : i+1], checked: true}
			}
			return stmts
		}
	}
	stmts := []eventStmt{{events: events[:1], checked: true}}
	for rest := events[1:]; len(rest) > 0; {
		n := min(len(rest), maxEventRows)
		stmts = append(stmts, eventStmt{events: rest[:n]})
		rest = rest[n:]
	}
	return stmts
}

// queuedStep is what queueStep queued, for readStep.
type queuedStep struct {
	checkpoint bool
	events     []eventStmt
}

// queueStep queues the statements of a step (see saveStep) on b.
func (s *Store) queueStep(b *Batch, cp *store.Checkpoint, events []store.Event, t time.Time) queuedStep {
	if cp != nil {
		at := cp.CreatedAt
		if at.IsZero() {
			at = t
		}
		b.Queue(qUpsertCheckpoint, cp.RunID, cp.Step, JSON(cp.State), s.d.Time(at))
	}
	timeOf := func(e store.Event) any {
		if e.CreatedAt.IsZero() {
			return s.d.Time(t)
		}
		return s.d.Time(e.CreatedAt)
	}
	q := queuedStep{checkpoint: cp != nil, events: eventStmts(events)}
	for _, st := range q.events {
		if st.checked {
			e := st.events[0]
			b.Queue(qInsertEvent, e.RunID, e.Seq, e.Type, JSON(e.Data), timeOf(e))
			continue
		}
		args := make([]any, 0, 5*len(st.events))
		for _, e := range st.events {
			args = append(args, e.RunID, e.Seq, e.Type, JSON(e.Data), timeOf(e))
		}
		b.Queue(s.qEventRows[len(st.events)], args...)
	}
	return q
}

// readStep reads the results of the statements queueStep queued.
func readStep(br BatchResults, q queuedStep) error {
	if q.checkpoint {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	for _, st := range q.events {
		n, err := br.Exec()
		if err != nil {
			return err
		}
		if n != int64(len(st.events)) {
			e := st.events[0]
			return fmt.Errorf("%w: event seq %d is not the next of run %s", store.ErrConflict, e.Seq, e.RunID)
		}
	}
	return nil
}

// ListEvents returns up to limit events of the run with Seq > afterSeq, in
// seq order; limit <= 0 means no limit. An unknown run has no events.
func (s *Store) ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error) {
	lim := int64(limit)
	if limit <= 0 {
		lim = math.MaxInt64
	}
	rows, err := s.db.Read.Query(ctx, `SELECT run_id, seq, type, data, created_at FROM run_events
		WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, runID, afterSeq, lim)
	if err != nil {
		return nil, fmt.Errorf("%s: list events of run %s: %w", s.d.Name, runID, err)
	}
	defer rows.Close()
	var evs []store.Event
	for rows.Next() {
		var (
			e    store.Event
			data []byte
		)
		if err := rows.Scan(&e.RunID, &e.Seq, &e.Type, &data, s.d.ScanTime(&e.CreatedAt)); err != nil {
			return nil, fmt.Errorf("%s: list events of run %s: %w", s.d.Name, runID, err)
		}
		e.Data = fromJSON(data)
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list events of run %s: %w", s.d.Name, runID, err)
	}
	return evs, nil
}

// LatestCheckpoint returns the run's checkpoint with the highest step;
// store.ErrNotFound if it has none.
func (s *Store) LatestCheckpoint(ctx context.Context, runID string) (store.Checkpoint, error) {
	var (
		cp    store.Checkpoint
		state []byte
	)
	err := s.db.Read.QueryRow(ctx, `SELECT run_id, step, state, created_at FROM checkpoints
		WHERE run_id = $1 ORDER BY step DESC LIMIT 1`, runID).Scan(&cp.RunID, &cp.Step, &state, s.d.ScanTime(&cp.CreatedAt))
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("%s: latest checkpoint of run %s: %w", s.d.Name, runID, s.d.MapErr(err))
	}
	cp.State = fromJSON(state)
	return cp, nil
}
