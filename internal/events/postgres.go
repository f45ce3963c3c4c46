package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentd/agentd/internal/store"
)

// Channel is the PostgreSQL notification channel of run events.
const Channel = "agentd_run_events"

// maxPayload keeps NOTIFY payloads under PostgreSQL's 8000-byte limit.
const maxPayload = 7800

// Postgres is a Hub across processes: Publish sends a NOTIFY, and every
// process LISTENs and delivers to its local subscribers. Events too large
// for a notification travel as a hint (run and seq only); followers read
// them from the store.
//
// Publish does not wait for the database: it queues the notifications,
// and one sender at a time sends all that are queued in one statement
// (qNotify). Under load, the notifications of many runs' steps share a
// round trip instead of each taking one (docs/benchmarks.md, round 7).
type Postgres struct {
	local *Local
	pool  *pgxpool.Pool
	log   *slog.Logger

	mu           sync.Mutex
	pending      []string      // payloads not sent yet, in the order published
	pendingBytes int           // their bytes
	sending      bool          // a sender is running (send)
	idle         chan struct{} // closed when the running sender ends
	sends        int           // statements sent, for tests
}

// qNotify sends the notifications of $2 in the array's order (NOTIFY
// delivers in the order sent).
const qNotify = `SELECT pg_notify($1, u.p) FROM unnest($2::text[]) WITH ORDINALITY AS u(p, i) ORDER BY u.i`

const (
	// maxPending and maxPendingBytes bound the notifications waiting for
	// the sender (while the database is slow or away); past them,
	// Publish drops (followers read the store; see notify).
	maxPending      = 1 << 14
	maxPendingBytes = 4 << 20
	// maxPerSend bounds one statement's notifications (and its
	// parameter's size: at most maxPerSend x maxPayload bytes).
	maxPerSend = 64
)

// NewPostgres returns a hub on pool. Call Run to receive notifications.
func NewPostgres(pool *pgxpool.Pool, log *slog.Logger) *Postgres {
	return &Postgres{local: NewLocal(), pool: pool, log: log}
}

type wireEvent struct {
	RunID string          `json:"r"`
	Seq   int64           `json:"s"`
	Type  string          `json:"t,omitempty"`
	Data  json.RawMessage `json:"d,omitempty"`
}

type wireBatch struct {
	Events []wireEvent `json:"e"`
}

// Publish implements Hub: one NOTIFY per batch that fits, else one per
// event (hints for events that do not fit).
func (h *Postgres) Publish(ctx context.Context, evs []store.Event) {
	if len(evs) == 0 {
		return
	}
	batch := wireBatch{Events: make([]wireEvent, len(evs))}
	for i, ev := range evs {
		batch.Events[i] = wireEvent{RunID: ev.RunID, Seq: ev.Seq, Type: ev.Type, Data: ev.Data}
	}
	if raw, err := json.Marshal(batch); err == nil && len(raw) <= maxPayload {
		h.notify(ctx, string(raw))
		return
	}
	payloads := make([]string, len(batch.Events))
	for i, w := range batch.Events {
		raw, _ := json.Marshal(wireBatch{Events: []wireEvent{w}})
		if len(raw) > maxPayload {
			raw, _ = json.Marshal(wireBatch{Events: []wireEvent{{RunID: w.RunID, Seq: w.Seq}}})
		}
		payloads[i] = string(raw)
	}
	h.notify(ctx, payloads...)
}

// notify queues payloads for the sender, starting it if none runs.
// Followers poll the store as a backstop: a notification dropped (queue
// full) or lost (the database unreachable) only delays them.
func (h *Postgres) notify(ctx context.Context, payloads ...string) {
	size := 0
	for _, p := range payloads {
		size += len(p)
	}
	h.mu.Lock()
	if len(h.pending)+len(payloads) > maxPending || h.pendingBytes+size > maxPendingBytes {
		waiting, bytes := len(h.pending), h.pendingBytes
		h.mu.Unlock()
		h.log.WarnContext(ctx, "publish run events: too many notifications waiting for the database; dropped",
			"waiting", waiting, "bytes", bytes)
		return
	}
	h.pending = append(h.pending, payloads...)
	h.pendingBytes += size
	start := !h.sending
	if start {
		h.sending, h.idle = true, make(chan struct{})
	}
	h.mu.Unlock()
	if start {
		go h.send()
	}
}

// Flush waits until the notifications published so far are sent (or
// given up on), or ctx ends. The process calls it before it closes the
// pool, so that a run's last events still reach other processes live.
func (h *Postgres) Flush(ctx context.Context) {
	h.mu.Lock()
	if !h.sending {
		h.mu.Unlock()
		return
	}
	idle := h.idle
	h.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// send sends what is queued, up to maxPerSend a statement, until nothing
// is; what is published meanwhile goes with the next statement.
func (h *Postgres) send() {
	for {
		h.mu.Lock()
		n := min(len(h.pending), maxPerSend)
		if n == 0 {
			h.pending, h.pendingBytes, h.sending = nil, 0, false
			close(h.idle)
			h.mu.Unlock()
			return
		}
		batch := h.pending[:n:n]
		h.pending = h.pending[n:]
		for _, p := range batch {
			h.pendingBytes -= len(p)
		}
		h.sends++
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := h.pool.Exec(ctx, qNotify, Channel, batch)
		cancel()
		if err != nil {
			h.log.Warn("publish run events", "notifications", n, "err", err)
		}
	}
}

// Subscribe implements Hub.
func (h *Postgres) Subscribe(runID string) (<-chan store.Event, func()) {
	return h.local.Subscribe(runID)
}

// Run listens for notifications until ctx ends, reconnecting with back-off.
func (h *Postgres) Run(ctx context.Context) error {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = minBackoff // it had been working: this is a new outage
		}
		h.log.WarnContext(ctx, "event listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (h *Postgres) listen(ctx context.Context) error {
	pooled, err := h.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	// The connection carries a LISTEN: it never goes back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		var b wireBatch
		if err := json.Unmarshal([]byte(n.Payload), &b); err != nil || len(b.Events) == 0 {
			continue
		}
		evs := make([]store.Event, len(b.Events))
		for i, w := range b.Events {
			evs[i] = store.Event{RunID: w.RunID, Seq: w.Seq, Type: w.Type, Data: w.Data}
		}
		h.local.deliver(evs)
	}
}
