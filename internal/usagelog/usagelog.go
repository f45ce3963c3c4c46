// Package usagelog writes usage rows (one per model call) to the store in
// batches, off the request path.
//
// A Writer is the usage recorder of the agent loop and the gateway:
// AppendUsage puts the row in a bounded in-memory buffer and returns; one
// background goroutine writes the buffer with store.Usage.AppendUsageBatch,
// up to BatchRows rows per write, as soon as WakeRows rows are waiting and
// at least every FlushInterval. Under load the rows that arrive while one
// batch is being written form the next one, so a database that takes one
// write transaction per row (SQLite's single writer) takes one per batch,
// and a slow store gets larger batches.
//
// Rows are never dropped while the process lives:
//   - a batch that fails to write is retried, the same rows in the same
//     order, with exponential back-off (MinBackoff doubling up to
//     MaxBackoff), until it is written. Retries are idempotent: every row
//     gets a unique id (store.UsageRecord.UID) when it is buffered, and the
//     store skips a row whose id it holds, so a batch that committed
//     although the write reported an error (a timeout while the commit
//     was syncing, a write cut off at Close) is not written twice;
//   - when the buffer is full (the store is down or slower than the calls),
//     AppendUsage waits for room (back-pressure) and fails only when its
//     context ends first; that refusal is counted
//     (agentd_usage_rows_refused_total) and the caller logs it;
//   - Close writes everything buffered before it returns; AppendUsage after
//     Close writes its row directly (one row, one transaction).
//
// A row is readable (GET /v1/usage) once its batch is written: normally
// within FlushInterval, later while the store is failing. Rows still in the
// buffer when the process is killed (kill -9, OOM, power loss) are lost: at
// most BufferRows of them.
package usagelog

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentd/agentd/internal/store"
)

// Defaults of Options.
const (
	DefaultBufferRows    = 10_000
	DefaultBatchRows     = 500
	DefaultWakeRows      = 32
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
)

// Store writes batches of usage rows (store.Usage does).
type Store interface {
	AppendUsageBatch(ctx context.Context, rs []store.UsageRecord) error
}

// Options configure a Writer; zero values take the defaults.
type Options struct {
	// BufferRows bounds the rows held in memory (waiting or being
	// written); AppendUsage waits when it is reached.
	BufferRows int
	// BatchRows is the most rows one write takes.
	BatchRows int
	// WakeRows rows waiting start a write before FlushInterval ends; the
	// write takes every row waiting, up to BatchRows. Kept small so that
	// at a steady rate each write is short: a write holds the store's
	// writer and, on a core shared with the requests, that core (at 1,000
	// rows/s, 100-row writes every 100 ms were the gateway's p99 tail on
	// one core; docs/benchmarks.md, round 9).
	WakeRows int
	// FlushInterval is the longest a row waits before its batch is
	// written (when the store keeps up).
	FlushInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed batch is
	// retried.
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout bounds one batch write.
	WriteTimeout time.Duration
	Metrics      *Metrics
	Log          *slog.Logger
}

// Metrics are the writer's Prometheus metrics; nil records nothing.
type Metrics struct {
	RowsWritten prometheus.Counter
	WriteErrors prometheus.Counter
	RowsRefused prometheus.Counter
	BufferRows  prometheus.Gauge
}

// NewMetrics registers the writer's metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RowsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_usage_rows_written_total", Help: "Usage rows written to the store (batched).",
		}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_usage_write_errors_total", Help: "Failed usage batch writes (each is retried; rows are not lost).",
		}),
		RowsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_usage_rows_refused_total", Help: "Usage rows refused because the buffer stayed full until the caller's deadline (lost).",
		}),
		BufferRows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentd_usage_buffer_rows", Help: "Usage rows in memory, not yet written to the store.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.RowsWritten, m.WriteErrors, m.RowsRefused, m.BufferRows)
	}
	return m
}

// Writer buffers usage rows and writes them in batches; see the package
// comment. Create it with New and Close it once nothing appends any more.
type Writer struct {
	st   Store
	opts Options
	log  *slog.Logger
	m    *Metrics

	mu       sync.Mutex
	pending  []store.UsageRecord // FIFO, not yet taken by the flusher
	inFlight int                 // rows of the batch being written
	enqueued uint64              // rows ever buffered
	written  uint64              // rows ever written from the buffer (a prefix of them)
	room     chan struct{}       // closed (and replaced) when rows were written
	closed   bool

	wake     chan struct{} // WakeRows rows waiting or a Flush: write now
	stop     chan struct{} // closed by Close: write everything, then exit
	done     chan struct{} // closed when the flusher exited
	stopOnce sync.Once
	// life ends when Close gives up (abandon): the flusher exits at once,
	// cancelling the write in progress.
	life    context.Context
	abandon context.CancelFunc
}

// New returns a Writer on st and starts its flusher.
func New(st Store, opts Options) *Writer {
	if opts.BufferRows <= 0 {
		opts.BufferRows = DefaultBufferRows
	}
	if opts.BatchRows <= 0 {
		opts.BatchRows = DefaultBatchRows
	}
	opts.BatchRows = min(opts.BatchRows, opts.BufferRows)
	if opts.WakeRows <= 0 {
		opts.WakeRows = DefaultWakeRows
	}
	opts.WakeRows = min(opts.WakeRows, opts.BatchRows)
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		st: st, opts: opts, log: log, m: opts.Metrics,
		room: make(chan struct{}),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	w.life, w.abandon = context.WithCancel(context.Background())
	go w.run()
	return w
}

// AppendUsage buffers r for the next batch (run.UsageRecorder and the
// gateway's recorder). A zero Time is set to now here, when the call
// finished, not when the batch is written. When the buffer is full it
// waits for room; it fails only if ctx ends first (the row is not
// recorded). After Close it writes r directly. An empty UID is set to a
// new unique id here, once, so that retries of its batch cannot write the
// row twice.
func (w *Writer) AppendUsage(ctx context.Context, r store.UsageRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.UID == "" {
		r.UID = newUID()
	}
	r = sanitize(r, w.log)
	w.mu.Lock()
	for !w.closed && len(w.pending)+w.inFlight >= w.opts.BufferRows {
		room := w.room
		w.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			if w.m != nil {
				w.m.RowsRefused.Inc()
			}
			return fmt.Errorf("usagelog: buffer full (%d rows): %w", w.opts.BufferRows, context.Cause(ctx))
		}
		w.mu.Lock()
	}
	if w.closed {
		w.mu.Unlock()
		if err := w.st.AppendUsageBatch(ctx, []store.UsageRecord{r}); err != nil {
			return fmt.Errorf("usagelog: append after close: %w", err)
		}
		if w.m != nil {
			w.m.RowsWritten.Inc()
		}
		return nil
	}
	w.pending = append(w.pending, r)
	w.enqueued++
	wake := len(w.pending) >= w.opts.WakeRows
	w.setGauge()
	w.mu.Unlock()
	if wake {
		w.poke()
	}
	return nil
}

// Buffered returns the rows in memory, not yet written.
func (w *Writer) Buffered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) + w.inFlight
}

// Flush writes every row buffered before the call now and waits until
// they are written, or ctx ends. Tests use it to read usage at once.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.enqueued
	w.mu.Unlock()
	for {
		w.mu.Lock()
		written, room, closed := w.written, w.room, w.closed
		w.mu.Unlock()
		if written >= target {
			return nil
		}
		if !closed {
			w.poke()
		}
		select {
		case <-room:
		case <-w.done:
			w.mu.Lock()
			written = w.written
			w.mu.Unlock()
			if written >= target {
				return nil
			}
			return errors.New("usagelog: flush: the writer was closed before the rows were written")
		case <-ctx.Done():
			return fmt.Errorf("usagelog: flush: %w", context.Cause(ctx))
		}
	}
}

// Close stops buffering (later AppendUsage calls write directly), writes
// every buffered row, retrying failed batches, and stops the flusher. If
// ctx ends first it gives up, returns an error with the number of rows not
// written, and those rows are lost. Close is safe to call more than once.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	close(w.room) // waiters in AppendUsage see closed
	w.room = make(chan struct{})
	w.mu.Unlock()
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		w.abandon() // releases the context
		// Rows are left only if an earlier Close gave up.
		if n := w.Buffered(); n > 0 {
			return fmt.Errorf("usagelog: close: %d usage rows not written", n)
		}
		return nil
	case <-ctx.Done():
		w.abandon()
		<-w.done
		n := w.Buffered()
		if n == 0 {
			return nil
		}
		w.log.Error("usage rows not written at shutdown", "rows", n, "err", context.Cause(ctx))
		return fmt.Errorf("usagelog: close: %d usage rows not written: %w", n, context.Cause(ctx))
	}
}

// poke wakes the flusher without blocking.
func (w *Writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// setGauge updates the buffer gauge; w.mu is held.
func (w *Writer) setGauge() {
	if w.m != nil {
		w.m.BufferRows.Set(float64(len(w.pending) + w.inFlight))
	}
}

// run is the flusher: on every tick, WakeRows rows waiting or Flush it
// writes all pending rows, a batch at a time; after stop it writes what
// is left and exits.
func (w *Writer) run() {
	defer close(w.done)
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	for {
		stopping := false
		select {
		case <-t.C:
		case <-w.wake:
		case <-w.stop:
			stopping = true
		case <-w.life.Done():
			return
		}
		if !w.drain() {
			return // abandoned
		}
		if stopping {
			return
		}
	}
}

// drain writes pending rows until there are none; false if abandoned.
func (w *Writer) drain() bool {
	for {
		w.mu.Lock()
		n := min(len(w.pending), w.opts.BatchRows)
		if n == 0 {
			w.mu.Unlock()
			return true
		}
		batch := make([]store.UsageRecord, n)
		copy(batch, w.pending)
		w.pending = w.pending[n:]
		if len(w.pending) == 0 {
			w.pending = nil // let the backing array go
		}
		w.inFlight = n
		w.mu.Unlock()

		if !w.write(batch) {
			return false
		}
		w.mu.Lock()
		w.inFlight = 0
		w.written += uint64(n)
		close(w.room)
		w.room = make(chan struct{})
		w.setGauge()
		w.mu.Unlock()
		if w.m != nil {
			w.m.RowsWritten.Add(float64(n))
		}
	}
}

// write writes batch, retrying with back-off until it is written (true)
// or the writer is abandoned (false: the batch stays counted in inFlight).
func (w *Writer) write(batch []store.UsageRecord) bool {
	backoff := w.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(w.life, w.opts.WriteTimeout)
		err := w.st.AppendUsageBatch(ctx, batch)
		cancel()
		if err == nil {
			if attempt > 1 {
				w.log.Info("usage batch written after retries", "rows", len(batch), "attempts", attempt)
			}
			return true
		}
		if w.m != nil {
			w.m.WriteErrors.Inc()
		}
		// Jitter: a fleet of instances does not retry in step.
		d := backoff/2 + rand.N(backoff/2+1)
		w.log.Warn("write usage batch failed; retrying", "rows", len(batch), "attempt", attempt, "retry_in", d, "err", err)
		select {
		case <-time.After(d):
		case <-w.life.Done():
			return false
		}
		backoff = min(2*backoff, w.opts.MaxBackoff)
	}
}

// newUID returns a unique 128-bit id, 32 hex digits: a UUIDv7, whose
// first 48 bits are the time in milliseconds, so that the store's unique
// index on it grows at one end, as the row's time does. Random ids put
// every row of a batch on a page of its own in that index, which made a
// row's insert twice as costly on SQLite (docs/benchmarks.md, round 9).
func newUID() string {
	u, err := uuid.NewV7()
	if err != nil {
		_, _ = crand.Read(u[:]) // never fails (crypto/rand.Read's documentation)
	}
	return hex.EncodeToString(u[:])
}

// sanitize makes r writable by every backend, so that one bad row cannot
// block the batches behind it: text must be valid UTF-8 without NUL bytes
// (PostgreSQL refuses them). (A cost is integer nano-dollars: never NaN.)
func sanitize(r store.UsageRecord, log *slog.Logger) store.UsageRecord {
	clean := func(s string) string {
		if strings.ContainsRune(s, 0) {
			s = strings.ReplaceAll(s, "\x00", "")
		}
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	r.Tenant, r.Key, r.Agent, r.Model, r.RunID, r.UID = clean(r.Tenant), clean(r.Key), clean(r.Agent), clean(r.Model), clean(r.RunID), clean(r.UID)
	return r
}
