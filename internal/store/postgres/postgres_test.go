package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/store/storetest"
)

// envURL names the variable with the PostgreSQL URL the tests run against,
// e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable. Each test
// works in a schema of its own (agentd_test_<random>), dropped at the end.
const envURL = "AGENTD_TEST_POSTGRES_URL"

func baseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(envURL)
	if u == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL store tests "+
			"(set it to e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run them)", envURL)
	}
	return u
}

// withParams returns base (a URL or a key=value string) with params set.
func withParams(t testing.TB, base string, params map[string]string) string {
	t.Helper()
	if strings.Contains(base, "://") {
		u, err := url.Parse(base)
		require.NoError(t, err)
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for k, v := range params {
		base += fmt.Sprintf(" %s='%s'", k, v)
	}
	return base
}

// newSchema creates an empty schema, drops it when the test ends, and
// returns a URL whose search_path is that schema.
func newSchema(t testing.TB) string {
	t.Helper()
	base := baseURL(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "agentd_test_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()

	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	require.NoError(t, exec(context.Background(), "CREATE SCHEMA "+ident))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return withParams(t, base, map[string]string{"search_path": name, "pool_max_conns": "4"})
}

func openTest(t testing.TB, u string) *Store {
	t.Helper()
	s, err := Open(context.Background(), u)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() }) // before the schema's cleanup: LIFO
	return s
}

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s := openTest(t, newSchema(t))
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	baseURL(t)
	storetest.Exercise(t, func(t *testing.T) storetest.Store[pgx.Tx] { return newTestStore(t) })
}

func TestMigrateAndSchemaVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, newSchema(t))

	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Zero(t, v, "fresh schema")
	require.Positive(t, LatestSchemaVersion())

	for range 3 {
		require.NoError(t, s.Migrate(ctx))
		v, err := s.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, LatestSchemaVersion(), v)
		var n int
		require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n))
		require.Equal(t, LatestSchemaVersion(), n)
	}

	// The tables are in the test's schema, nowhere else.
	var schema string
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema))
	require.True(t, strings.HasPrefix(schema, "agentd_test_"), schema)
	var where []string
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_name = 'runs'`)
	require.NoError(t, err)
	where, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, where, schema)
}

func TestMigrateNoSchema(t *testing.T) {
	t.Parallel()
	u := withParams(t, baseURL(t), map[string]string{"search_path": "agentd_test_does_not_exist"})
	s := openTest(t, u)
	err := s.Migrate(t.Context())
	require.Error(t, err)
	v, err := s.SchemaVersion(t.Context())
	require.NoError(t, err)
	require.Zero(t, v)
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	u := newSchema(t)
	const n = 6
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = openTest(t, u)
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
	require.NoError(t, stores[0].pool.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&rows))
	require.Equal(t, LatestSchemaVersion(), rows)

	// The stores share the data, and appends from all of them serialize.
	ctx := t.Context()
	c, err := stores[0].CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(t, err)
	for i := range 30 {
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
	got, err := stores[n-1].GetConversation(ctx, "t", c.ID)
	require.NoError(t, err)
	require.Equal(t, int64(30), got.Version)
	require.Len(t, got.Messages, 30)
	require.Equal(t, int64(30), got.Messages[29].Seq)
}

func TestCreateRunTxNativeTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)

	// fn gets a pgx.Tx that sees the run and whose writes commit with it.
	r := store.Run{ID: "r1", Tenant: "t", Agent: "a", Status: store.RunQueued}
	err := s.CreateRunTx(ctx, r, func(ctx context.Context, tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM runs WHERE id = $1`, r.ID).Scan(&status); err != nil {
			return err
		}
		require.Equal(t, "queued", status)
		_, err := tx.Exec(ctx, `INSERT INTO checkpoints (run_id, step, state, created_at) VALUES ($1, 1, '{}', now())`, r.ID)
		return err
	})
	require.NoError(t, err)
	cp, err := s.LatestCheckpoint(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, 1, cp.Step)

	// fn's writes roll back with the run.
	r2 := store.Run{ID: "r2", Tenant: "t", Agent: "a", Status: store.RunQueued}
	boom := errors.New("boom")
	err = s.CreateRunTx(ctx, r2, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO checkpoints (run_id, step, state, created_at) VALUES ($1, 1, '{}', now())`, r2.ID); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.EqualError(t, err, "postgres: create run r2: in transaction: boom")
	_, err = s.LatestCheckpoint(ctx, r2.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	// A failed statement inside fn aborts the transaction: the run is not
	// written either.
	r3 := store.Run{ID: "r3", Tenant: "t", Agent: "a", Status: store.RunQueued}
	err = s.CreateRunTx(ctx, r3, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT * FROM no_such_table`)
		return err
	})
	require.Error(t, err)
	_, err = s.GetRun(ctx, "t", r3.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	require.NoError(t, s.CreateRun(ctx, r2))
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := newSchema(t)

	s, err := Open(ctx, u)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	exp := time.Date(2031, 1, 2, 3, 4, 5, 678901999, time.FixedZone("X", -3600))
	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c1", Tenant: "t", Agent: "a", ExpiresAt: exp})
	require.NoError(t, err)
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 0,
		Messages: []store.Message{
			{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"a"}]`), Tokens: 1},
			{Role: "assistant", Content: json.RawMessage(`[{"type":"text", "text":"b"}]`), Tokens: 2},
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

	s = openTest(t, u)
	require.NoError(t, s.Migrate(ctx))
	after, err := s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, exp.UTC().Truncate(time.Microsecond), after.ExpiresAt)
	require.Equal(t, []int64{2}, []int64{after.Messages[0].Seq})
	require.Equal(t, `[{"type":"text", "text":"b"}]`, string(after.Messages[0].Content))

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

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)

	_, err := s.GetConversation(ctx, "t", "missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.EqualError(t, err, "postgres: get conversation missing: not found")

	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(t, err)
	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.ErrorIs(t, err, store.ErrConflict)
	require.True(t, strings.HasPrefix(err.Error(), "postgres: create conversation c: conflict: "), err.Error())

	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "t", ExpectedVersion: 5})
	require.ErrorIs(t, err, store.ErrConflict)
	require.EqualError(t, err, "postgres: append messages to conversation c: conflict: version is 0, expected 5")
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "other"})
	require.ErrorIs(t, err, store.ErrNotFound)

	require.NoError(t, s.CreateRun(ctx, store.Run{ID: "r", Tenant: "t", Agent: "a", Status: store.RunQueued}))
	err = s.SaveStep(ctx, nil, []store.Event{{RunID: "r", Seq: 2, Type: "x"}})
	require.ErrorIs(t, err, store.ErrConflict)
	require.EqualError(t, err, "postgres: save step of run r: conflict: event seq 2 is not the next of run r")
	err = s.SaveStep(ctx, nil, []store.Event{{RunID: "nope", Seq: 1, Type: "x"}})
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NotErrorIs(t, err, store.ErrConflict)

	// Not JSON: PostgreSQL refuses it (SQLite would store it).
	err = s.SaveStep(ctx, nil, []store.Event{{RunID: "r", Seq: 1, Type: "x", Data: json.RawMessage(`{nope`)}})
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrConflict)

	// A canceled context is reported as such, not as a store error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.GetConversation(cctx, "t", "c")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrNotFound)
}

func TestOpen(t *testing.T) {
	t.Parallel()
	base := baseURL(t)
	ctx := t.Context()

	// Pool settings and run-time parameters come from the URL.
	u := newSchema(t)
	s := openTest(t, withParams(t, u, map[string]string{"pool_max_conns": "7", "application_name": "agentd-test"}))
	require.EqualValues(t, 7, s.Pool().Config().MaxConns)
	var app, path string
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('search_path')`).Scan(&app, &path))
	require.Equal(t, "agentd-test", app)
	require.True(t, strings.HasPrefix(path, "agentd_test_"), path)
	require.NoError(t, s.Ping(ctx))

	for _, bad := range []string{
		"postgres://user:s3cret@127.0.0.1:5432/x?pool_max_conns=nope",
		"postgres://user:s3cret@127.0.0.1:99999/x",
		"postgres://user:s3cret@[::1/x",
		"host=127.0.0.1 password=s3cret port=nope",
	} {
		_, err := Open(ctx, bad)
		require.Error(t, err, bad)
		require.NotContains(t, err.Error(), "s3cret", "the password is not in the error")
	}

	// Nothing listens there: Open fails at once rather than on first use.
	bad := withParams(t, base, map[string]string{"connect_timeout": "2"})
	if pu, err := url.Parse(bad); err == nil && strings.Contains(bad, "://") {
		pu.Host = "127.0.0.1:1"
		bad = pu.String()
		_, err := Open(ctx, bad)
		require.Error(t, err)
	}
}

// TestSchemaMatchesSQLite checks that both dialects' migrations describe
// the same tables, columns (name, order, nullability), primary keys and
// index names.
func TestSchemaMatchesSQLite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pg := newTestStore(t)

	path := filepath.Join(t.TempDir(), "schema.db")
	ls, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, ls.Migrate(ctx))
	require.NoError(t, ls.Close())
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()

	type column struct {
		Name    string
		NotNull bool
		PK      int // position in the primary key, from 1; 0: not in it
	}
	lite := map[string][]column{}
	var liteIndexes []string
	rows, err := db.QueryContext(ctx, `SELECT name, type FROM sqlite_master
		WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'`)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var name, typ string
		require.NoError(t, rows.Scan(&name, &typ))
		if typ == "table" {
			tables = append(tables, name)
		} else {
			liteIndexes = append(liteIndexes, name)
		}
	}
	require.NoError(t, rows.Err())
	for _, tbl := range tables {
		rows, err := db.QueryContext(ctx, `SELECT name, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, tbl)
		require.NoError(t, err)
		for rows.Next() {
			var c column
			require.NoError(t, rows.Scan(&c.Name, &c.NotNull, &c.PK))
			lite[tbl] = append(lite[tbl], c)
		}
		require.NoError(t, rows.Err())
	}

	post := map[string][]column{}
	prows, err := pg.pool.Query(ctx, `SELECT c.table_name, c.column_name, c.is_nullable = 'NO',
			coalesce(k.ordinal_position, 0)
		FROM information_schema.columns c
		LEFT JOIN information_schema.table_constraints tc
			ON tc.table_schema = c.table_schema AND tc.table_name = c.table_name AND tc.constraint_type = 'PRIMARY KEY'
		LEFT JOIN information_schema.key_column_usage k
			ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
			AND k.column_name = c.column_name
		WHERE c.table_schema = current_schema()
		ORDER BY c.table_name, c.ordinal_position`)
	require.NoError(t, err)
	for prows.Next() {
		var tbl string
		var c column
		require.NoError(t, prows.Scan(&tbl, &c.Name, &c.NotNull, &c.PK))
		post[tbl] = append(post[tbl], c)
	}
	require.NoError(t, prows.Err())
	require.Equal(t, lite, post)

	irows, err := pg.pool.Query(ctx, `SELECT indexname FROM pg_indexes
		WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey'`)
	require.NoError(t, err)
	pgIndexes, err := pgx.CollectRows(irows, pgx.RowTo[string])
	require.NoError(t, err)
	slices.Sort(liteIndexes)
	slices.Sort(pgIndexes)
	require.Equal(t, liteIndexes, pgIndexes)
}

// TestAppendUsageBatchOrder: the batch INSERT numbers rows in batch order
// (ids increase with the position in the batch), also when some rows are
// skipped because their uid is stored already.
func TestAppendUsageBatchOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestStore(t)
	rows := make([]store.UsageRecord, 700)
	for i := range rows {
		rows[i] = store.UsageRecord{Tenant: "t", Agent: "a", Model: "m", RunID: "r", Step: i + 1, UID: fmt.Sprintf("u%d", i)}
	}
	require.NoError(t, s.AppendUsageBatch(ctx, rows[:300]))
	require.NoError(t, s.AppendUsageBatch(ctx, rows)) // 0-299 skipped
	got, err := s.pool.Query(ctx, `SELECT step FROM usage WHERE tenant = 't' ORDER BY id`)
	require.NoError(t, err)
	steps, err := pgx.CollectRows(got, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Len(t, steps, 700)
	for i, st := range steps {
		require.Equal(t, int32(i+1), st)
	}
}

// ---------------------------------------------------------------------------
// benchmarks (the same as the sqlite package's)

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
	mark := func(ctx context.Context, tx pgx.Tx, r store.Run) error {
		var owner *string
		if err := tx.QueryRow(ctx, `SELECT lease_owner FROM runs WHERE id = $1`, r.ID).Scan(&owner); err != nil {
			return err
		}
		require.Nil(t, owner, "fn sees the cleared lease")
		_, err := tx.Exec(ctx, `UPDATE runs SET error = 'reclaimed' WHERE id = $1`, r.ID)
		return err
	}

	boom := errors.New("boom")
	_, err := s.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), func(ctx context.Context, tx pgx.Tx, r store.Run) error {
		if err := mark(ctx, tx, r); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "postgres: reclaim expired runs: run r")
	for _, id := range []string{"r1", "r2"} {
		r, err := s.GetRun(ctx, "t", id)
		require.NoError(t, err)
		require.Empty(t, r.Error, "fn's writes rolled back")
	}

	n, err := s.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), mark)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, id := range []string{"r1", "r2"} {
		r, err := s.GetRun(ctx, "t", id)
		require.NoError(t, err)
		require.Equal(t, "reclaimed", r.Error)
	}
}

// TestReclaimSkipsLocked: a reclaimer does not wait for the runs another
// one (here: another Store, as on another worker) is reclaiming; it skips
// them, and takes the rest.
func TestReclaimSkipsLocked(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := newSchema(t)
	a := openTest(t, u)
	require.NoError(t, a.Migrate(ctx))
	b := openTest(t, u)
	t0 := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	claim := func(id string, until time.Time) {
		require.NoError(t, a.CreateRun(ctx, store.Run{ID: id, Tenant: "t", Agent: "a", Status: store.RunQueued}))
		_, err := a.ClaimRun(ctx, store.ClaimRunParams{ID: id, Owner: "w1", LeaseUntil: until, Now: t0})
		require.NoError(t, err)
	}
	claim("r1", t0.Add(time.Second))

	inFn, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		n, err := a.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), func(context.Context, pgx.Tx, store.Run) error {
			close(inFn)
			<-release
			return nil
		})
		if err == nil && n != 1 {
			err = fmt.Errorf("a reclaimed %d runs, want 1", n)
		}
		done <- err
	}()
	<-inFn
	claim("r2", t0.Add(2*time.Second)) // expires too, not locked by a

	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var got []string
	n, err := b.ReclaimExpiredRuns(bctx, t0.Add(time.Minute), func(_ context.Context, _ pgx.Tx, r store.Run) error {
		got = append(got, r.ID)
		return nil
	})
	require.NoError(t, err, "b must not wait for a's locks")
	require.Equal(t, 1, n)
	require.Equal(t, []string{"r2"}, got)

	close(release)
	require.NoError(t, <-done)
	n, err = b.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), nil)
	require.NoError(t, err)
	require.Zero(t, n, "a's reclaim committed: nothing left")
}
