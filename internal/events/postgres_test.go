package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// startHub returns a Postgres hub on a real PostgreSQL (its own schema;
// the channel is the database's, so run ids are unique per test) that is
// listening: a probe event has gone round.
func startHub(t *testing.T) *Postgres {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), pgtest.Schema(t, pgtest.BaseURL(t), 4))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	h := NewPostgres(pool, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	probe := fmt.Sprintf("probe-%s-%d", t.Name(), time.Now().UnixNano())
	ch, unsub := h.Subscribe(probe)
	defer unsub()
	for deadline := time.Now().Add(10 * time.Second); ; {
		h.Publish(t.Context(), []store.Event{{RunID: probe, Seq: 1, Type: "probe"}})
		select {
		case <-ch:
			return h
		case <-time.After(50 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "the hub's LISTEN never received a notification")
	}
}

// receive reads n events from ch, failing after 10 s.
func receive(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	var got []store.Event
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case ev := <-ch:
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("received %d events of %d", len(got), n)
		}
	}
	return got
}

// Many runs publishing at once: every subscriber gets its run's events,
// all of them and in order, though the notifications share statements.
func TestPostgresPublishConcurrent(t *testing.T) {
	h := startHub(t)
	const runs, steps = 8, 100
	base := fmt.Sprintf("concurrent-%d", time.Now().UnixNano())
	chans := make([]<-chan store.Event, runs)
	for r := range runs {
		ch, unsub := h.Subscribe(fmt.Sprintf("%s-%d", base, r))
		t.Cleanup(unsub)
		chans[r] = ch
	}
	var wg sync.WaitGroup
	for r := range runs {
		wg.Go(func() {
			for seq := int64(1); seq <= steps; seq++ {
				h.Publish(t.Context(), []store.Event{{RunID: fmt.Sprintf("%s-%d", base, r), Seq: seq, Type: "step", Data: json.RawMessage(`{"n":1}`)}})
			}
		})
	}
	wg.Wait()
	for r := range runs {
		got := receive(t, chans[r], steps)
		for i, ev := range got {
			require.Equal(t, int64(i+1), ev.Seq, "run %d", r)
			require.Equal(t, "step", ev.Type)
			require.JSONEq(t, `{"n":1}`, string(ev.Data))
		}
	}
}

// Notifications queued while a statement is on its way go together in
// the next ones, maxPerSend at most each, in the order published.
func TestPostgresPublishCoalesces(t *testing.T) {
	h := startHub(t)
	run := fmt.Sprintf("coalesce-%d", time.Now().UnixNano())
	ch, unsub := h.Subscribe(run)
	defer unsub()

	// Wait for the probe's sender to end, then stand in for a sender on
	// its way: what is published now queues.
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.sending {
			return false
		}
		h.sending, h.idle = true, make(chan struct{})
		return true
	}, 5*time.Second, time.Millisecond)
	const n = maxPerSend + 36
	for seq := int64(1); seq <= n; seq++ {
		h.Publish(t.Context(), []store.Event{{RunID: run, Seq: seq, Type: "step"}})
	}
	h.mu.Lock()
	require.Len(t, h.pending, n, "nothing sent while a sender runs")
	before := h.sends
	h.mu.Unlock()

	h.send()
	got := receive(t, ch, n)
	for i, ev := range got {
		require.Equal(t, int64(i+1), ev.Seq)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, 2, h.sends-before, "%d notifications in two statements", n)
	require.False(t, h.sending, "the sender ends when nothing is queued")
	require.Empty(t, h.pending)
}

// A batch too large for one notification goes event by event, and an
// event too large for one as a hint that followers read from the store.
func TestPostgresPublishLargeEvents(t *testing.T) {
	h := startHub(t)
	run := fmt.Sprintf("large-%d", time.Now().UnixNano())
	ch, unsub := h.Subscribe(run)
	defer unsub()
	big := json.RawMessage(`"` + strings.Repeat("x", maxPayload) + `"`)
	mid := json.RawMessage(`"` + strings.Repeat("y", maxPayload/2) + `"`)
	h.Publish(t.Context(), []store.Event{
		{RunID: run, Seq: 1, Type: "a", Data: mid},
		{RunID: run, Seq: 2, Type: "b", Data: mid},
		{RunID: run, Seq: 3, Type: "c", Data: big},
	})
	got := receive(t, ch, 3)
	require.Equal(t, "a", got[0].Type)
	require.JSONEq(t, string(mid), string(got[0].Data))
	require.Equal(t, "b", got[1].Type)
	require.Equal(t, store.Event{RunID: run, Seq: 3}, got[2], "a hint: run and seq only")
}

// The queue is bounded in notifications and in bytes: past either,
// Publish drops and returns.
func TestPostgresPublishBounded(t *testing.T) {
	h := NewPostgres(nil, slog.New(slog.DiscardHandler))
	h.sending = true // no sender: nothing leaves the queue
	for seq := int64(1); seq <= maxPending+10; seq++ {
		h.Publish(t.Context(), []store.Event{{RunID: "r", Seq: seq}})
	}
	require.Len(t, h.pending, maxPending)
	var first wireBatch
	require.NoError(t, json.Unmarshal([]byte(h.pending[0]), &first))
	require.Equal(t, int64(1), first.Events[0].Seq, "the oldest are kept")

	h = NewPostgres(nil, slog.New(slog.DiscardHandler))
	h.sending = true
	big := json.RawMessage(`"` + strings.Repeat("x", maxPayload-100) + `"`)
	for seq := int64(1); seq <= maxPendingBytes/(maxPayload-100)+10; seq++ {
		h.Publish(t.Context(), []store.Event{{RunID: "r", Seq: seq, Data: big}})
	}
	require.Less(t, len(h.pending), maxPendingBytes/(maxPayload-100)+10)
	require.LessOrEqual(t, h.pendingBytes, maxPendingBytes)
	total := 0
	for _, p := range h.pending {
		total += len(p)
	}
	require.Equal(t, total, h.pendingBytes)
}

// Flush returns once what was published is sent; the queue is empty then.
func TestPostgresFlush(t *testing.T) {
	h := startHub(t)
	run := fmt.Sprintf("flush-%d", time.Now().UnixNano())
	ch, unsub := h.Subscribe(run)
	defer unsub()
	for seq := int64(1); seq <= 200; seq++ {
		h.Publish(t.Context(), []store.Event{{RunID: run, Seq: seq, Type: "step"}})
	}
	h.Flush(t.Context())
	h.mu.Lock()
	require.False(t, h.sending)
	require.Empty(t, h.pending)
	require.Zero(t, h.pendingBytes)
	h.mu.Unlock()
	require.Len(t, receive(t, ch, 200), 200)
	h.Flush(t.Context()) // nothing to send: returns at once
}
