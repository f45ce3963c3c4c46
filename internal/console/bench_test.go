package console_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/console"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// benchRuns is how many runs the render benchmarks put in the store.
const benchRuns = 100_000

// benchSessions is how many Managed Agents sessions they put there.
const benchSessions = 10_000

// seedRuns creates a SQLite store at path with n runs bulk-inserted in one
// transaction: 10 tenants, 5 agents, mostly succeeded, 1 in 50 failed, 1
// in 500 canceled; the newest 40 running and the 20 before them queued.
func seedRuns(tb testing.TB, path string, n int) {
	tb.Helper()
	st, err := sqlite.Open(tb.Context(), path)
	require.NoError(tb, err)
	require.NoError(tb, st.Migrate(tb.Context()))
	require.NoError(tb, st.Close())
	db, err := sql.Open("sqlite", path)
	require.NoError(tb, err)
	defer db.Close()
	tx, err := db.Begin()
	require.NoError(tb, err)
	ins, err := tx.Prepare(`INSERT INTO runs (id, tenant, agent, conversation_id, status, input, output, error, attempt, steps,
		input_tokens, output_tokens, cost_nanos, created_at, started_at, finished_at) VALUES (?, ?, ?, '', ?, ?, ?, ?, 1, 2, ?, ?, ?, ?, ?, ?)`)
	require.NoError(tb, err)
	start := time.Now().Add(-time.Duration(n) * time.Second)
	for i := range n {
		status, errMsg := "succeeded", ""
		switch {
		case i >= n-40:
			status = "running"
		case i >= n-60:
			status = "queued"
		case i%500 == 7:
			status = "canceled"
		case i%50 == 3:
			status, errMsg = "failed", "model_error: overloaded"
		}
		created := start.Add(time.Duration(i) * time.Second)
		var started, finished any
		if status != "queued" {
			started = created.Add(time.Second).UnixMicro()
		}
		if status != "queued" && status != "running" {
			finished = created.Add(3 * time.Second).UnixMicro()
		}
		_, err := ins.Exec(fmt.Sprintf("run_%012x", i), fmt.Sprintf("tenant-%d", i%10), fmt.Sprintf("agent-%d", i%5), status,
			`{"message":"hello"}`, `[{"type":"text","text":"hi"}]`, errMsg, 1200+i%300, 300+i%100, int64(4_200_000+i%1000),
			created.UnixMicro(), started, finished)
		require.NoError(tb, err)
	}
	require.NoError(tb, tx.Commit())
}

// seedSessions adds n Managed Agents sessions of 10 tenants to the store
// at path, half the runs as their turns (conversation_id), and 100 runs
// paused on a call each (the approvals page).
func seedSessions(tb testing.TB, path string, n int) {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	require.NoError(tb, err)
	defer db.Close()
	tx, err := db.Begin()
	require.NoError(tb, err)
	ins, err := tx.Prepare(`INSERT INTO managed_sessions (id, tenant, agent_id, agent_version, environment_id, conversation_id,
		status, data, created_at, updated_at) VALUES (?, ?, 'agent-1', 1, 'env_1', ?, 'idle', '{"metadata":{}}', ?, ?)`)
	require.NoError(tb, err)
	start := time.Now().Add(-time.Duration(n) * time.Minute)
	for i := range n {
		at := start.Add(time.Duration(i) * time.Minute).UnixMicro()
		_, err := ins.Exec(fmt.Sprintf("sesn_%08d", i), fmt.Sprintf("tenant-%d", i%10), fmt.Sprintf("conv_%d", i), at, at)
		require.NoError(tb, err)
	}
	_, err = tx.Exec(`UPDATE runs SET conversation_id = 'conv_' || (rowid % ?) WHERE rowid % 2 = 0`, n)
	require.NoError(tb, err)
	_, err = tx.Exec(`UPDATE runs SET status = 'requires_action' WHERE rowid % 1000 = 1`)
	require.NoError(tb, err)
	_, err = tx.Exec(`INSERT INTO run_approvals (run_id, tool_use_id, tenant, step, name, input, requested_at, expires_at)
		SELECT id, 'toolu_' || rowid, tenant, 1, 'pay', '{"amount":5}', created_at, created_at + 86400000000
		FROM runs WHERE status = 'requires_action'`)
	require.NoError(tb, err)
	require.NoError(tb, tx.Commit())
}

func BenchmarkRender(b *testing.B) {
	path := filepath.Join(b.TempDir(), "agentd.db")
	seedRuns(b, path, benchRuns)
	seedSessions(b, path, benchSessions)
	st, err := sqlite.Open(b.Context(), path)
	require.NoError(b, err)
	defer st.Close()
	// The overview's inputs as the app builds them: a health report from
	// real checks of this store, a sampler with a full hour of samples.
	metrics := observe.NewMetrics("bench")
	health := &server.Health{Store: st, Queue: st.QueueStats, Version: "bench"}
	health.MarkStarted(time.Now())
	health.SetReady(true)
	health.Check(b.Context())
	sampler := &console.Sampler{Gatherer: metrics.Registry}
	t0 := time.Now().Add(-time.Hour)
	for i := range 361 {
		metrics.HTTPRequests.WithLabelValues("GET", "GET /v1/runs", "200").Add(float64(i % 7))
		metrics.HTTPDuration.WithLabelValues("GET", "GET /v1/runs").Observe(0.002 * float64(i%11))
		sampler.Sample(t0.Add(time.Duration(i) * 10 * time.Second))
	}
	c, err := console.New(console.Config{Store: st, Health: func() server.HealthReport { return health.Report(0) }, Sampler: sampler})
	require.NoError(b, err)
	// A session (auth off: the console opens one on the first request).
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console", nil))
	cookie := rec.Result().Cookies()[0]

	for _, page := range []string{
		"/console",
		"/console/runs",
		"/console/runs?cursor=run_00000000c350", // page 2 from the middle
		"/console/runs?tenant=tenant-3",
		"/console/runs?tenant=tenant-3&status=failed",
		"/console/runs?status=running",
		"/console/runs?tenant=tenant-3&status=running",
		"/console/runs?status=failed",
		"/console/runs?status=canceled",
		"/console/runs?agent=agent-2",
		"/console/runs?tenant=tenant-3&status=canceled",
		"/console/sessions",
		"/console/sessions?tenant=tenant-3",
		"/console/sessions?cursor=" + fmt.Sprint(time.Now().Add(-benchSessions/2*time.Minute).UnixMicro()) + ".sesn_00005000",
		"/console/approvals",
	} {
		b.Run(strings.TrimPrefix(page, "/console"), func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, page, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				c.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", page, rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// The query shapes ListRuns builds (sqlstore/runs.go) for the console's
// filters, with SQLite's plan on a seeded store: each reads an index in id
// order (the id primary key, (tenant, id), (status, id) or (tenant, status,
// id)), never the table in storage order, and sorts nothing.
func TestRunListQueryPlans(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agentd.db")
	seedRuns(t, path, 20_000)
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	const cols = "SELECT id, tenant, status FROM runs"
	for _, tc := range []struct {
		query    string
		args     []any
		wantPlan string
	}{
		{cols + " ORDER BY id DESC LIMIT 51", nil, "sqlite_autoindex_runs_1"},
		{cols + " WHERE id < ? ORDER BY id DESC LIMIT 51", []any{"run_000000002710"}, "sqlite_autoindex_runs_1"},
		{cols + " WHERE tenant = ? ORDER BY id DESC LIMIT 51", []any{"tenant-3"}, "runs_tenant_id"},
		{cols + " WHERE tenant = ? AND status = ? ORDER BY id DESC LIMIT 51", []any{"tenant-3", "failed"}, "runs_tenant_status_id"},
		{cols + " WHERE tenant = ? AND status = ? AND id < ? ORDER BY id DESC LIMIT 51", []any{"tenant-3", "canceled", "run_000000002710"}, "runs_tenant_status_id"},
		{cols + " WHERE status = ? ORDER BY id DESC LIMIT 51", []any{"failed"}, "runs_status_id"},
		{cols + " WHERE status = ? ORDER BY id DESC LIMIT 51", []any{"canceled"}, "runs_status_id"},
		{cols + " WHERE status = ? ORDER BY id DESC LIMIT 51", []any{"running"}, "runs_status_id"},
		{cols + " WHERE status = ? AND agent = ? ORDER BY id DESC LIMIT 51", []any{"queued", "agent-3"}, "runs_status_id"},
		{cols + " WHERE tenant = ? AND status = ? ORDER BY id DESC LIMIT 51", []any{"tenant-3", "running"}, "runs_tenant_status_id"},
		{cols + " WHERE agent = ? ORDER BY id DESC LIMIT 51", []any{"agent-2"}, "sqlite_autoindex_runs_1"},
	} {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		joined := strings.Join(plan, "; ")
		require.Contains(t, joined, tc.wantPlan, tc.query)
		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN runs") {
				require.Contains(t, line, "USING", "%s: a scan in storage order: %s", tc.query, joined)
			}
		}
		require.NotContains(t, joined, "TEMP B-TREE", "%s: sorts every match: %s", tc.query, joined)
	}
	// The session list across tenants walks its created_at index; the
	// approvals page reads the paused runs by status (then sorts their
	// few calls).
	for q, want := range map[string]string{
		"SELECT m.id FROM managed_sessions m WHERE 1 = 1 ORDER BY m.created_at DESC, m.id DESC LIMIT 51":                 "managed_sessions_created_at",
		"SELECT m.id FROM managed_sessions m WHERE m.tenant = 'tenant-3' ORDER BY m.created_at DESC, m.id DESC LIMIT 51": "managed_sessions_tenant",
		`SELECT a.run_id FROM run_approvals a JOIN runs r ON r.id = a.run_id
			LEFT JOIN managed_sessions m ON r.conversation_id <> '' AND m.conversation_id = r.conversation_id
			WHERE a.decision = '' AND r.status = 'requires_action' AND (1 OR a.tenant = '')
			ORDER BY a.requested_at, a.run_id, a.tool_use_id LIMIT 101`: "runs_status_id",
	} {
		var plan []string
		rows, err := db.Query("EXPLAIN QUERY PLAN " + q)
		require.NoError(t, err)
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		joined := strings.Join(plan, "; ")
		require.Contains(t, joined, want, q)
		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN ") {
				require.Contains(t, line, "USING", "%s: a scan in storage order: %s", q, joined)
			}
		}
	}
}

// The same query shapes on PostgreSQL (100,000 runs seeded as seedRuns
// does, analysed): each reads an index, none scans the table.
func TestRunListQueryPlansPostgres(t *testing.T) {
	t.Parallel()
	u := pgtest.Schema(t, pgtest.BaseURL(t), 0)
	st, err := postgres.Open(t.Context(), u)
	require.NoError(t, err)
	require.NoError(t, st.Migrate(t.Context()))
	require.NoError(t, st.Close())
	conn, err := pgx.Connect(t.Context(), u)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(t.Context(), `INSERT INTO runs (id, tenant, agent, status, input, output, created_at)
		SELECT format('run_%s', lpad(to_hex(i), 12, '0')), 'tenant-' || (i % 10), 'agent-' || (i % 5),
			CASE WHEN i >= 99960 THEN 'running' WHEN i >= 99940 THEN 'queued' WHEN i % 500 = 7 THEN 'canceled'
				WHEN i % 50 = 3 THEN 'failed' ELSE 'succeeded' END,
			'{}', '[]', now() - (100000 - i) * interval '1 second'
		FROM generate_series(0, 99999) i`)
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `ANALYZE runs`)
	require.NoError(t, err)
	const cols = "SELECT id, tenant, status FROM runs"
	for _, tc := range []struct {
		query string
		args  []any
		want  string // the index the plan must read ("": any)
	}{
		{cols + " ORDER BY id DESC LIMIT 51", nil, ""},
		{cols + " WHERE id < $1 ORDER BY id DESC LIMIT 51", []any{"run_00000000c350"}, ""},
		{cols + " WHERE tenant = $1 ORDER BY id DESC LIMIT 51", []any{"tenant-3"}, ""},
		{cols + " WHERE tenant = $1 AND status = $2 ORDER BY id DESC LIMIT 51", []any{"tenant-3", "failed"}, ""},
		{cols + " WHERE tenant = $1 AND status = $2 ORDER BY id DESC LIMIT 51", []any{"tenant-3", "canceled"}, "runs_tenant_status_id"},
		{cols + " WHERE status = $1 ORDER BY id DESC LIMIT 51", []any{"failed"}, ""},
		{cols + " WHERE status = $1 ORDER BY id DESC LIMIT 51", []any{"canceled"}, "runs_status_id"},
		{cols + " WHERE status = $1 ORDER BY id DESC LIMIT 51", []any{"running"}, "runs_status_id"},
		{cols + " WHERE status = $1 AND agent = $2 ORDER BY id DESC LIMIT 51", []any{"queued", "agent-3"}, ""},
		{cols + " WHERE agent = $1 ORDER BY id DESC LIMIT 51", []any{"agent-2"}, ""},
	} {
		rows, err := conn.Query(t.Context(), "EXPLAIN "+tc.query, tc.args...)
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			plan = append(plan, line)
		}
		require.NoError(t, rows.Err())
		joined := strings.Join(plan, "\n")
		require.Contains(t, joined, "Index", tc.query)
		require.Contains(t, joined, tc.want, tc.query)
		require.NotContains(t, joined, "Seq Scan", "%s: a full scan:\n%s", tc.query, joined)
	}
}
