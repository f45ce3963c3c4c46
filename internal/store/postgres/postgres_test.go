package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/store/storetest"
)

// The tests run against the database named by pgtest.EnvURL, each in a
// schema of its own (agentd_test_<random>), dropped at the end.

func baseURL(t testing.TB) string { return pgtest.BaseURL(t) }

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

// newSchema creates an empty schema, dropped when the test ends, and
// returns a URL whose search_path is that schema.
func newSchema(t testing.TB) string { return pgtest.Schema(t, baseURL(t), 4) }

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

func TestNativeTx(t *testing.T) {
	t.Parallel()
	storetest.ExerciseNativeTx(t, func(t *testing.T) storetest.Store[pgx.Tx] { return newTestStore(t) }, storetest.NativeTx[pgx.Tx]{
		Exec: func(ctx context.Context, tx pgx.Tx, query string, args ...any) error {
			_, err := tx.Exec(ctx, query, args...)
			return err
		},
		QueryString: func(ctx context.Context, tx pgx.Tx, query string, args ...any) (string, error) {
			var v *string
			if err := tx.QueryRow(ctx, query, args...).Scan(&v); err != nil || v == nil {
				return "", err
			}
			return *v, nil
		},
	})
}

func TestMigrateAndSchemaVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, newSchema(t))

	// Versions and idempotence: storetest.ExerciseShared.
	require.Positive(t, LatestSchemaVersion())
	require.NoError(t, s.Migrate(ctx))

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

// TestShared: several Stores on one database (storetest.ExerciseShared).
func TestShared(t *testing.T) {
	t.Parallel()
	u := newSchema(t)
	storetest.ExerciseShared(t, func(t *testing.T) storetest.SharedStore[pgx.Tx] { return openTest(t, u) }, 6, LatestSchemaVersion())
}

func TestErrors(t *testing.T) {
	t.Parallel()
	storetest.ExerciseErrors(t, newTestStore(t), "postgres")
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

	// Without pool_max_conns the pool is agentd's default, not pgx's
	// max(4, NumCPU).
	d := openTest(t, pgtest.Schema(t, base, 0))
	require.EqualValues(t, DefaultPoolMaxConns(), d.Pool().Config().MaxConns)
	require.GreaterOrEqual(t, d.Pool().Config().MaxConns, int32(16))

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

// BenchmarkStore measures the chat hot path (storetest.Benchmark).
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(tb testing.TB) store.Store { return newTestStore(tb) })
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

// TestAuditDeleteGuard: the database itself guards the audit log
// (storetest.ExerciseAuditGuard).
func TestAuditDeleteGuard(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	storetest.ExerciseAuditGuard(t, s, func(ctx context.Context, sql string) (int64, error) {
		tag, err := s.pool.Exec(ctx, sql)
		return tag.RowsAffected(), err
	})
}
