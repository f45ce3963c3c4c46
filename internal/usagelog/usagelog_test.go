package usagelog_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/usagelog"
)

// newSQLite returns a migrated SQLite store and its file.
func newSQLite(t testing.TB) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentd.db")
	st, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(context.Background()))
	return st, path
}

// steps returns the step column of the tenant's usage rows in id order
// (the order they were written), read with a connection of its own.
func steps(t *testing.T, path, tenant string) []int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), "SELECT step FROM usage WHERE tenant = ? ORDER BY id", tenant)
	require.NoError(t, err)
	defer rows.Close()
	var out []int
	for rows.Next() {
		var s int
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func row(tenant string, step int) store.UsageRecord {
	return store.UsageRecord{Tenant: tenant, Agent: "a", Model: "m", RunID: "r", Step: step,
		InputTokens: 10, OutputTokens: 1, CostUSD: money.FromUSD(0.001)}
}

// recording wraps a store: it records batch sizes, can fail the first
// failures calls and can hold every write until gate is closed.
type recording struct {
	usagelog.Store
	mu       sync.Mutex
	batches  []int
	calls    int
	failures int
	gate     chan struct{} // nil: writes pass
	entered  chan struct{} // receives once per write that reached the gate
}

func (r *recording) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	if r.gate != nil {
		select {
		case r.entered <- struct{}{}:
		default:
		}
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.calls++
	fail := r.calls <= r.failures
	r.mu.Unlock()
	if fail {
		return errors.New("database is locked (injected)")
	}
	if err := r.Store.AppendUsageBatch(ctx, rs); err != nil {
		return err
	}
	r.mu.Lock()
	r.batches = append(r.batches, len(rs))
	r.mu.Unlock()
	return nil
}

func (r *recording) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.batches...)
}

func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func closeWriter(t *testing.T, w *usagelog.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, w.Close(ctx))
}

// Full batches are written without waiting for the interval, in order, and
// Flush makes the rest readable at once.
func TestBatchesInOrder(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	rec := &recording{Store: st}
	m := usagelog.NewMetrics(prometheus.NewRegistry())
	w := usagelog.New(rec, usagelog.Options{BatchRows: 100, WakeRows: 100, FlushInterval: time.Hour, Metrics: m})
	ctx := t.Context()
	for i := 1; i <= 1050; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	require.NoError(t, w.Flush(ctx))
	require.Equal(t, seq(1050), steps(t, path, "t1"), "rows in the order they were appended")
	sizes := rec.sizes()
	total := 0
	for _, n := range sizes {
		require.LessOrEqual(t, n, 100)
		total += n
	}
	require.Equal(t, 1050, total)
	require.LessOrEqual(t, len(sizes), 12, "batched: %v", sizes)
	require.Equal(t, 1050.0, value(t, m.RowsWritten))
	require.Equal(t, 0.0, value(t, m.BufferRows))
	require.Equal(t, 0, w.Buffered())

	// GET /v1/usage sums what was written.
	got, err := st.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, int64(1050), got[0].Requests)
	require.Equal(t, int64(10500), got[0].InputTokens)
	closeWriter(t, w)
}

// A row appended alone is written within the flush interval; its time is
// when it was appended, not when it was written.
func TestFlushInterval(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	w := usagelog.New(st, usagelog.Options{FlushInterval: 20 * time.Millisecond})
	defer closeWriter(t, w)
	before := time.Now()
	require.NoError(t, w.AppendUsage(t.Context(), row("t1", 1)))
	require.Eventually(t, func() bool { return len(steps(t, path, "t1")) == 1 }, 5*time.Second, 5*time.Millisecond)
	got, err := st.SumUsage(t.Context(), store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent,
		From: before.Add(-time.Millisecond), To: before.Add(20 * time.Millisecond)})
	require.NoError(t, err)
	require.Len(t, got, 1, "the row's time is when it was appended")
}

// Close writes every buffered row, even with an interval that never
// fires; appends after Close are written directly.
func TestCloseFlushesAll(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	w := usagelog.New(st, usagelog.Options{BatchRows: 500, FlushInterval: time.Hour})
	ctx := t.Context()
	for i := 1; i <= 1234; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	closeWriter(t, w)
	require.Equal(t, seq(1234), steps(t, path, "t1"))
	closeWriter(t, w) // twice is fine

	require.NoError(t, w.AppendUsage(ctx, row("t1", 1235)))
	require.Equal(t, seq(1235), steps(t, path, "t1"), "an append after Close is written at once")
}

// Many goroutines append at once: every row is written exactly once.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	rec := &recording{Store: st}
	w := usagelog.New(rec, usagelog.Options{BufferRows: 300, BatchRows: 100, FlushInterval: 5 * time.Millisecond})
	const workers, each = 50, 100
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := 1; i <= each; i++ {
				if err := w.AppendUsage(t.Context(), row("t1", g*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeWriter(t, w)
	got := steps(t, path, "t1")
	require.Len(t, got, workers*each)
	seen := make(map[int]bool, len(got))
	for _, s := range got {
		require.False(t, seen[s], "step %d written twice", s)
		seen[s] = true
	}
	require.Less(t, len(rec.sizes()), workers*each/5, "rows were batched")
}

// A store that fails several times loses nothing and keeps the order.
func TestRetriesLoseNothing(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	rec := &recording{Store: st, failures: 4}
	m := usagelog.NewMetrics(nil)
	w := usagelog.New(rec, usagelog.Options{BatchRows: 50, FlushInterval: time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Metrics: m})
	ctx := t.Context()
	for i := 1; i <= 500; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, w.Flush(fctx))
	closeWriter(t, w)
	require.Equal(t, seq(500), steps(t, path, "t1"))
	require.Equal(t, 4.0, value(t, m.WriteErrors))
	require.Equal(t, 500.0, value(t, m.RowsWritten))
}

// WakeRows rows waiting start a write before the interval; the rows that
// arrive while it is being written (a slow store) form larger batches, up
// to BatchRows.
func TestWakeRows(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	rec := &recording{Store: st, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	w := usagelog.New(rec, usagelog.Options{BatchRows: 100, WakeRows: 8, FlushInterval: time.Hour})
	ctx := t.Context()
	for i := 1; i <= 7; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	select {
	case <-rec.entered:
		t.Fatal("a write started with fewer than WakeRows rows waiting")
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, w.AppendUsage(ctx, row("t1", 8)))
	select {
	case <-rec.entered: // the write of the 8 rows, stuck at the gate
	case <-time.After(5 * time.Second):
		t.Fatal("no write started with WakeRows rows waiting")
	}
	for i := 9; i <= 258; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	close(rec.gate)
	require.NoError(t, w.Flush(ctx))
	require.Equal(t, []int{8, 100, 100, 50}, rec.sizes())
	require.Equal(t, seq(258), steps(t, path, "t1"))
	closeWriter(t, w)
}

// With the store stuck, a full buffer makes AppendUsage wait; it fails
// only when its context ends, and goes on once there is room.
func TestBackPressure(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	rec := &recording{Store: st, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	m := usagelog.NewMetrics(nil)
	w := usagelog.New(rec, usagelog.Options{BufferRows: 10, BatchRows: 5, FlushInterval: time.Millisecond, Metrics: m})
	ctx := t.Context()
	for i := 1; i <= 10; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	<-rec.entered // a batch is being written (and stuck)
	require.Equal(t, 10, w.Buffered())
	require.Equal(t, 10.0, value(t, m.BufferRows))

	// start is taken before the deadline is set: on a loaded machine the
	// test may be descheduled between the two.
	start := time.Now()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := w.AppendUsage(short, row("t1", 999))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond, "it waited for room")
	require.Equal(t, 1.0, value(t, m.RowsRefused))

	appended := make(chan error, 1)
	go func() { appended <- w.AppendUsage(ctx, row("t1", 11)) }()
	select {
	case err := <-appended:
		t.Fatalf("AppendUsage returned (%v) with the buffer full", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(rec.gate) // the store answers again
	require.NoError(t, <-appended)
	closeWriter(t, w)
	require.Equal(t, seq(11), steps(t, path, "t1"), "the refused row only is missing")
}

// Close gives up when its context ends while the store keeps failing, and
// says how many rows were not written.
func TestCloseGivesUp(t *testing.T) {
	t.Parallel()
	st, _ := newSQLite(t)
	rec := &recording{Store: st, failures: 1 << 30}
	w := usagelog.New(rec, usagelog.Options{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	for i := 1; i <= 7; i++ {
		require.NoError(t, w.AppendUsage(t.Context(), row("t1", i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "7 usage rows not written")
	require.ErrorContains(t, w.Close(t.Context()), "7 usage rows not written", "a second Close says so too")
}

// Rows a backend would refuse are cleaned, so that one cannot block the
// batches behind it.
func TestSanitize(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	w := usagelog.New(st, usagelog.Options{})
	r := row("t1", 1)
	r.Model = "bad\x00model\xff"
	require.NoError(t, w.AppendUsage(t.Context(), r))
	require.NoError(t, w.Flush(t.Context()))
	closeWriter(t, w)
	require.Equal(t, []int{1}, steps(t, path, "t1"))
	got, err := st.SumUsage(t.Context(), store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByModel})
	require.NoError(t, err)
	require.Equal(t, "badmodel\uFFFD", got[0].Group)
}

// committedThenFailing wraps a store: its first write commits the batch
// and then reports an error (a write timeout that fired while the commit
// was syncing), so the writer retries a batch that is already stored.
type committedThenFailing struct {
	usagelog.Store
	mu    sync.Mutex
	calls int
	uids  [][]string // the UIDs of every write, in order
}

func (c *committedThenFailing) AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error {
	uids := make([]string, len(rs))
	for i, r := range rs {
		uids[i] = r.UID
	}
	c.mu.Lock()
	c.calls++
	first := c.calls == 1
	c.uids = append(c.uids, uids)
	c.mu.Unlock()
	if err := c.Store.AppendUsageBatch(ctx, rs); err != nil {
		return err
	}
	if first {
		return errors.New("context deadline exceeded (injected, after commit)")
	}
	return nil
}

// A batch that committed although its write reported an error is retried
// with the same UIDs, and the store skips the rows it holds: every row
// exists exactly once.
func TestRetryAfterCommitIsIdempotent(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	c := &committedThenFailing{Store: st}
	m := usagelog.NewMetrics(prometheus.NewRegistry())
	w := usagelog.New(c, usagelog.Options{BatchRows: 50, FlushInterval: time.Hour,
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Metrics: m})
	ctx := t.Context()
	for i := 1; i <= 120; i++ {
		require.NoError(t, w.AppendUsage(ctx, row("t1", i)))
	}
	require.NoError(t, w.Flush(ctx))
	closeWriter(t, w)

	require.Equal(t, seq(120), steps(t, path, "t1"), "every row once, in order")
	require.Equal(t, float64(1), value(t, m.WriteErrors))
	require.Equal(t, float64(120), value(t, m.RowsWritten))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.GreaterOrEqual(t, len(c.uids), 2)
	require.Equal(t, c.uids[0], c.uids[1], "the retry sends the same UIDs")
	seen := map[string]bool{}
	for _, batch := range c.uids[1:] {
		for _, u := range batch {
			require.Len(t, u, 32)
			require.False(t, seen[u], "UID %s in two batches", u)
			seen[u] = true
		}
	}
	require.Len(t, seen, 120)

	got, err := st.SumUsage(ctx, store.UsageQuery{Tenant: "t1", GroupBy: store.UsageByAgent})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, int64(120), got[0].Requests)
	require.Equal(t, int64(1200), got[0].InputTokens)
	require.Equal(t, money.FromUSD(0.12), got[0].CostUSD)
}

// A UID set by the caller is kept.
func TestCallerUIDKept(t *testing.T) {
	t.Parallel()
	st, path := newSQLite(t)
	w := usagelog.New(st, usagelog.Options{FlushInterval: time.Hour})
	ctx := t.Context()
	r := row("t1", 1)
	r.UID = "caller-uid"
	require.NoError(t, w.AppendUsage(ctx, r))
	require.NoError(t, w.AppendUsage(ctx, r)) // the same call recorded twice
	closeWriter(t, w)
	require.Equal(t, []int{1}, steps(t, path, "t1"))
}
