package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/migrations"
	"github.com/agentd/agentd/internal/store/sqlstore"
	"github.com/agentd/agentd/internal/store/storetest"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s := openTest(t, filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) storetest.Store[*sql.Tx] { return newTestStore(t) })
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "m.db"))

	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Zero(t, v, "fresh database")

	ms, err := migrations.For(migrations.SQLite)
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	require.Equal(t, ms[len(ms)-1].Version, LatestSchemaVersion())

	for range 3 {
		require.NoError(t, s.Migrate(ctx))
		v, err := s.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, LatestSchemaVersion(), v)
		var n int
		require.NoError(t, s.read.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n))
		require.Equal(t, len(ms), n)
	}

	// Pragmas took effect on both pools.
	var mode string
	require.NoError(t, s.read.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
	var fk, syncMode, busy int
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&syncMode))
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy))
	require.Equal(t, 1, fk)
	require.Equal(t, 1, syncMode, "NORMAL")
	require.Equal(t, 5000, busy)
	require.NoError(t, s.read.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy))
	require.Equal(t, 5000, busy)

	// The read pool cannot write.
	_, err = s.read.ExecContext(ctx, `DELETE FROM conversations`)
	require.Error(t, err)
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	const n = 4
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = openTest(t, path)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	for _, s := range stores {
		v, err := s.SchemaVersion(t.Context())
		require.NoError(t, err)
		require.Equal(t, LatestSchemaVersion(), v)
	}
	var rows int
	require.NoError(t, stores[0].read.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&rows))
	require.Equal(t, LatestSchemaVersion(), rows)

	// Two stores on one file also write concurrently without SQLITE_BUSY.
	ctx := t.Context()
	c, err := stores[0].CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(t, err)
	var okCount, conflicts int
	var mu sync.Mutex
	for i := range 40 {
		wg.Go(func() {
			s := stores[i%n]
			for {
				cur, err := s.GetConversation(ctx, "t", c.ID)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
					ConversationID: c.ID, Tenant: "t", ExpectedVersion: cur.Version,
					Messages: []store.Message{{Role: "user", Content: json.RawMessage(`[]`)}},
				})
				mu.Lock()
				if err == nil {
					okCount++
				} else {
					conflicts++
				}
				mu.Unlock()
				if err == nil {
					return
				}
				if !errors.Is(err, store.ErrConflict) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, 40, okCount)
	got, err := stores[1].GetConversation(ctx, "t", c.ID)
	require.NoError(t, err)
	require.Equal(t, int64(40), got.Version)
	require.Len(t, got.Messages, 40)
	require.Equal(t, int64(40), got.Messages[39].Seq)
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "restart.db")

	s, err := Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	exp := time.Date(2031, 1, 2, 3, 4, 5, 678901000, time.UTC)
	c, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: "c1", Tenant: "t", Agent: "a", ExpiresAt: exp})
	require.NoError(t, err)
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 0,
		Messages: []store.Message{
			{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"a"}]`), Tokens: 1},
			{Role: "assistant", Content: json.RawMessage(`[{"type":"text","text":"b"}]`), Tokens: 2},
		},
		TrimBeforeSeq: 2,
	})
	require.NoError(t, err)
	run := store.Run{ID: "r1", Tenant: "t", Agent: "a", Status: store.RunRunning, Input: json.RawMessage(`{}`),
		IdempotencyKey: "k", StartedAt: time.Now()}
	require.NoError(t, s.CreateRun(ctx, run))
	require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: "r1", Step: 1, State: json.RawMessage(`{"s":1}`)},
		[]store.Event{{RunID: "r1", Seq: 1, Type: "x"}}))
	before, err := s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	beforeRun, err := s.GetRun(ctx, "t", "r1")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice")
	require.Error(t, s.Ping(ctx), "closed")

	s = openTest(t, path)
	require.NoError(t, s.Migrate(ctx))
	after, err := s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, exp, after.ExpiresAt)
	require.Equal(t, c.CreatedAt, after.CreatedAt)
	require.Equal(t, []int64{2}, []int64{after.Messages[0].Seq})

	// next_seq survived too: seqs continue, not restart.
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 1,
		Messages: []store.Message{{Role: "user", Content: json.RawMessage(`[]`)}}, TrimBeforeSeq: 100,
	})
	require.NoError(t, err)
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 2,
		Messages: []store.Message{{Role: "user", Content: json.RawMessage(`[]`)}},
	})
	require.NoError(t, err)
	after, err = s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	require.Equal(t, int64(4), after.Messages[0].Seq)

	gotRun, err := s.GetRun(ctx, "t", "r1")
	require.NoError(t, err)
	require.Equal(t, beforeRun, gotRun)
	require.ErrorIs(t, s.CreateRun(ctx, store.Run{ID: "r2", Tenant: "t", IdempotencyKey: "k"}), store.ErrConflict)
	cp, err := s.LatestCheckpoint(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, `{"s":1}`, string(cp.State))
	require.ErrorIs(t, s.SaveStep(ctx, nil, []store.Event{{RunID: "r1", Seq: 1, Type: "x"}}), store.ErrConflict)
}

func TestCreateRunTxNativeTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)

	// fn gets a *sql.Tx that sees the run and whose writes commit with it.
	r := store.Run{ID: "r1", Tenant: "t", Agent: "a", Status: store.RunQueued}
	err := s.CreateRunTx(ctx, r, func(ctx context.Context, tx *sql.Tx) error {
		var status string
		if err := tx.QueryRowContext(ctx, `SELECT status FROM runs WHERE id = ?`, r.ID).Scan(&status); err != nil {
			return err
		}
		require.Equal(t, "queued", status)
		_, err := tx.ExecContext(ctx, `INSERT INTO checkpoints (run_id, step, state, created_at) VALUES (?, 1, '{}', 0)`, r.ID)
		return err
	})
	require.NoError(t, err)
	cp, err := s.LatestCheckpoint(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, 1, cp.Step)

	// fn's writes roll back with the run.
	r2 := store.Run{ID: "r2", Tenant: "t", Agent: "a", Status: store.RunQueued}
	boom := errors.New("boom")
	err = s.CreateRunTx(ctx, r2, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO checkpoints (run_id, step, state, created_at) VALUES (?, 1, '{}', 0)`, r2.ID); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.EqualError(t, err, "sqlite: create run r2: in transaction: boom")
	_, err = s.LatestCheckpoint(ctx, r2.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	// The write connection is free again.
	require.NoError(t, s.CreateRun(ctx, r2))
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)

	_, err := s.GetConversation(ctx, "t", "missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.EqualError(t, err, "sqlite: get conversation missing: not found")

	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(t, err)
	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.ErrorIs(t, err, store.ErrConflict)
	require.True(t, strings.HasPrefix(err.Error(), "sqlite: create conversation c: conflict: "), err.Error())

	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "t", ExpectedVersion: 5})
	require.ErrorIs(t, err, store.ErrConflict)
	require.EqualError(t, err, "sqlite: append messages to conversation c: conflict: version is 0, expected 5")

	// A canceled context is reported as such, not as a store error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.GetConversation(cctx, "t", "c")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrNotFound)
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := Open(t.Context(), ":memory:")
	require.Error(t, err)
	_, err = Open(t.Context(), "")
	require.Error(t, err)
	_, err = Open(t.Context(), filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"))
	require.Error(t, err)

	// Odd characters in the path are a file name, not URI syntax.
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "a?b#c%20d.db"))
	require.NoError(t, s.Migrate(t.Context()))
	matches, err := filepath.Glob(filepath.Join(dir, "a[?]b#c%20d.db"))
	require.NoError(t, err)
	require.Len(t, matches, 1)
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"sqlite:///abs/path.db":           "/abs/path.db",
		"sqlite:///var/lib/agentd/a.db":   "/var/lib/agentd/a.db",
		"sqlite://relative/path.db":       "relative/path.db",
		"sqlite://agentd.db":              "agentd.db",
		"sqlite://./data/agentd.db":       "./data/agentd.db",
		"sqlite:relative.db":              "relative.db",
		"sqlite:data/relative.db":         "data/relative.db",
		"sqlite:/abs/path.db":             "/abs/path.db",
		"SQLITE:///abs/path.db":           "/abs/path.db",
		"sqlite:///abs/with%20space.db":   "/abs/with space.db",
		"sqlite:with%20space.db":          "with space.db",
		"sqlite://rel/with%3Fquestion.db": "rel/with?question.db",
	}
	for in, want := range good {
		got, err := ParseURL(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	bad := []string{
		"",
		"agentd.db",
		"/abs/agentd.db",
		"postgres://localhost/agentd",
		"file:agentd.db",
		"sqlite3:///abs.db",
		"sqlite:",
		"sqlite://",
		"sqlite:///",
		"sqlite:///abs.db?mode=ro",
		"sqlite:///abs.db#frag",
		"sqlite://user@host/x.db",
		"sqlite://host:5432/x.db",
		"sqlite:rel.db?_pragma=foo",
	}
	for _, in := range bad {
		_, err := ParseURL(in)
		require.Error(t, err, in)
	}
}

// ---------------------------------------------------------------------------
// benchmarks

func BenchmarkAppendMessages(b *testing.B) {
	ctx := context.Background()
	s := newTestStore(b)
	c, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(b, err)
	content := json.RawMessage(`[{"type":"text","text":"` + strings.Repeat("lorem ipsum ", 20) + `"}]`)
	v := c.Version
	b.ReportAllocs()
	for b.Loop() {
		v, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t", ExpectedVersion: v,
			Messages: []store.Message{{Role: "user", Content: content, Tokens: 60}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSaveStep(b *testing.B) {
	ctx := context.Background()
	s := newTestStore(b)
	require.NoError(b, s.CreateRun(ctx, store.Run{ID: "r", Tenant: "t", Agent: "a", Status: store.RunRunning}))
	state := json.RawMessage(`{"messages":[` + strings.TrimSuffix(strings.Repeat(`{"role":"user","content":"hello"},`, 30), ",") + `]}`)
	data := json.RawMessage(`{"type":"content_block_delta","delta":{"type":"text_delta","text":"hello"}}`)
	seq := int64(0)
	step := 0
	b.ReportAllocs()
	for b.Loop() {
		step++
		evs := make([]store.Event, 5)
		for i := range evs {
			seq++
			evs[i] = store.Event{RunID: "r", Seq: seq, Type: "delta", Data: data}
		}
		if err := s.SaveStep(ctx, &store.Checkpoint{RunID: "r", Step: step, State: state}, evs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetConversation(b *testing.B) {
	ctx := context.Background()
	s := newTestStore(b)
	_, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(b, err)
	msgs := make([]store.Message, 20)
	for i := range msgs {
		msgs[i] = store.Message{Role: "user", Tokens: 60,
			Content: json.RawMessage(fmt.Sprintf(`[{"type":"text","text":"%d %s"}]`, i, strings.Repeat("lorem ipsum ", 20)))}
	}
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "t", Messages: msgs})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		c, err := s.GetConversation(ctx, "t", "c")
		if err != nil || len(c.Messages) != 20 {
			b.Fatal(err, len(c.Messages))
		}
	}
}

func TestReclaimExpiredRunsNativeTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)
	t0 := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	for _, id := range []string{"r1", "r2"} {
		require.NoError(t, s.CreateRun(ctx, store.Run{ID: id, Tenant: "t", Agent: "a", Status: store.RunQueued}))
		_, err := s.ClaimRun(ctx, store.ClaimRunParams{ID: id, Owner: "w1", LeaseUntil: t0.Add(time.Second), Now: t0})
		require.NoError(t, err)
	}
	mark := func(ctx context.Context, tx *sql.Tx, r store.Run) error {
		// fn sees the cleared lease and its writes commit with it.
		var owner sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT lease_owner FROM runs WHERE id = ?`, r.ID).Scan(&owner); err != nil {
			return err
		}
		require.False(t, owner.Valid)
		_, err := tx.ExecContext(ctx, `UPDATE runs SET error = 'reclaimed' WHERE id = ?`, r.ID)
		return err
	}

	// fn's writes roll back with the reclaim.
	boom := errors.New("boom")
	_, err := s.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), func(ctx context.Context, tx *sql.Tx, r store.Run) error {
		if err := mark(ctx, tx, r); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "sqlite: reclaim expired runs: run r")
	for _, id := range []string{"r1", "r2"} {
		r, err := s.GetRun(ctx, "t", id)
		require.NoError(t, err)
		require.Empty(t, r.Error)
	}

	n, err := s.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), mark)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, id := range []string{"r1", "r2"} {
		r, err := s.GetRun(ctx, "t", id)
		require.NoError(t, err)
		require.Equal(t, "reclaimed", r.Error)
	}
	// The write connection is free again.
	_, err = s.ClaimRun(ctx, store.ClaimRunParams{ID: "r1", Owner: "w2", LeaseUntil: t0.Add(2 * time.Minute), Now: t0.Add(time.Minute)})
	require.NoError(t, err)
}

// TestPingDoesNotQueueBehindWrites: a health check must answer while the
// single write connection is busy (a long write transaction, a queue of
// writers under load), instead of timing out and making /readyz fail.
func TestPingDoesNotQueueBehindWrites(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := t.Context()
	tx, err := s.write.BeginTx(ctx, nil) // holds the only write connection
	require.NoError(t, err)
	defer rollback(tx)
	_, err = tx.ExecContext(ctx, sqlstore.QAppendUsage, time.Now().UnixMicro(), "t", "", "a", "m", "r", 1, 1, 1, 0, 0, 0.1, 0, "")
	require.NoError(t, err)

	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	require.NoError(t, s.Ping(pctx))

	// A closed store does not answer.
	require.NoError(t, tx.Rollback())
	require.NoError(t, s.Close())
	require.Error(t, s.Ping(ctx))
}
