package managed

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// streamWorld is one session and its runs, held in memory; it counts the
// store reads a session stream makes.
type streamWorld struct {
	store.Managed // only the methods below are called
	Runner        // not called: a stream submits nothing

	ms store.ManagedSession
	a  store.ManagedAgent

	mu   sync.Mutex
	runs []store.Run
	// listed: the status ListConversationRuns says its runs have (a read
	// made before they changed); "": theirs.
	listed store.RunStatus
	evs    map[string][]store.Event
	reads  map[string]int
	// approvals are the runs' tool calls that wait or waited.
	approvals map[string][]store.Approval
}

func newStreamWorld(t *testing.T) *streamWorld {
	cfg, err := json.Marshal(AgentConfig{Name: "a", Model: ModelConfig{ID: "m"}})
	require.NoError(t, err)
	return &streamWorld{
		ms:    store.ManagedSession{ID: "sesn_1", Tenant: "t1", AgentID: "agent_1", AgentVersion: 1, ConversationID: "conv_1", Status: StatusIdle, Data: json.RawMessage(`{}`)},
		a:     store.ManagedAgent{ID: "agent_1", Tenant: store.SharedTenant, Version: 1, Config: cfg},
		evs:   map[string][]store.Event{},
		reads: map[string]int{},
	}
}

func (w *streamWorld) count(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads[what]++
}

func (w *streamWorld) read(what string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reads[what]
}

func (w *streamWorld) GetManagedSession(_ context.Context, _, _ string) (store.ManagedSession, error) {
	w.count("session")
	return w.ms, nil
}

func (w *streamWorld) GetManagedAgent(_ context.Context, _, _ string, _ int64) (store.ManagedAgent, error) {
	w.count("agent")
	return w.a, nil
}

// The session was never updated: no session events.
func (w *streamWorld) ListManagedSessionEvents(_ context.Context, _, _ string) ([]store.ManagedSessionEvent, error) {
	w.count("session events")
	return nil, nil
}

func (w *streamWorld) ListConversationRuns(_ context.Context, _, _ string) ([]store.Run, error) {
	w.count("runs")
	w.mu.Lock()
	defer w.mu.Unlock()
	runs := append([]store.Run(nil), w.runs...)
	for i := range runs {
		if w.listed != "" {
			runs[i].Status = w.listed
		}
	}
	return runs, nil
}

func (w *streamWorld) GetRun(_ context.Context, _, id string) (store.Run, error) {
	w.count("run")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.runs {
		if r.ID == id {
			return r, nil
		}
	}
	return store.Run{}, store.ErrNotFound
}

func (w *streamWorld) ListApprovals(_ context.Context, runID string) ([]store.Approval, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]store.Approval(nil), w.approvals[runID]...), nil
}

func (w *streamWorld) ListEvents(_ context.Context, runID string, after int64, _ int) ([]store.Event, error) {
	w.count("events")
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []store.Event
	for _, e := range w.evs[runID] {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, nil
}

// store stores run events (numbered on) and sets the run's status.
func (w *streamWorld) store(t *testing.T, runID string, status store.RunStatus, payloads ...run.EventData) []store.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var stored []store.Event
	for _, p := range payloads {
		b, err := json.Marshal(p)
		require.NoError(t, err)
		e := store.Event{RunID: runID, Seq: int64(len(w.evs[runID]) + 1), Type: p.EventType(), Data: b, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
		w.evs[runID] = append(w.evs[runID], e)
		stored = append(stored, e)
	}
	for i := range w.runs {
		if w.runs[i].ID == runID {
			w.runs[i].Status = status
			if status == store.RunRunning && w.runs[i].StartedAt.IsZero() {
				w.runs[i].StartedAt = time.Now()
			}
			if status.Terminal() {
				w.runs[i].FinishedAt = time.Now()
			}
		}
	}
	return stored
}

func (w *streamWorld) addRun(r store.Run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs = append(w.runs, r)
}

// streamOf runs a session stream (no poll: only wakes move it) and
// returns its events as sent.
func streamOf(t *testing.T, w *streamWorld, hub events.Hub) (*Service, <-chan Out) {
	s := &Service{Store: w, Runs: w, RunEvents: w, Hub: hub}
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan Out, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Stream(ctx, "t1", w.ms.ID, StreamParams{Deltas: true, Poll: time.Hour}, func(outs []Out) error {
			for _, o := range outs {
				out <- o
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	// Following the session once it has read its runs.
	require.Eventually(t, func() bool { return w.read("runs") == 1 }, 5*time.Second, time.Millisecond)
	return s, out
}

func nextOut(t *testing.T, out <-chan Out, typ string) Out {
	t.Helper()
	for {
		select {
		case o := <-out:
			if o.Type == typ {
				return o
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5 s (the stream's poll is an hour away)", typ)
		}
	}
}

// A turn followed through the run hub reads the store only where it must:
// the session's runs when woken for the turn, the run's events once
// subscribed, and the run and its events after its end.
func TestStreamReadsPerTurn(t *testing.T) {
	t.Parallel()
	w := newStreamWorld(t)
	hub := events.NewLocal()
	s, out := streamOf(t, w, hub)
	require.Equal(t, 1, w.read("session"))
	require.Equal(t, 1, w.read("agent"))

	w.addRun(store.Run{ID: "run_1", Tenant: "t1", Agent: "a", ConversationID: w.ms.ConversationID, Status: store.RunQueued,
		Input: json.RawMessage(`{"message":"hi"}`), CreatedAt: time.Now()})
	s.Wake(w.ms.ConversationID)
	nextOut(t, out, EvUserMessage)
	require.Eventually(t, func() bool { return hub.Subscribers() == 1 }, 5*time.Second, time.Millisecond)

	hub.Publish(t.Context(), w.store(t, "run_1", store.RunRunning, run.StartEvent{Agent: "a", RunID: "run_1"}))
	nextOut(t, out, "session.status_running")
	hub.Publish(t.Context(), w.store(t, "run_1", store.RunRunning, run.TextDeltaEvent{Step: 1, Text: "Hel"}, run.TextDeltaEvent{Step: 1, Text: "lo."}))
	nextOut(t, out, "event_delta")
	hub.Publish(t.Context(), w.store(t, "run_1", store.RunSucceeded, run.Answer{Text: "Hello."}))
	nextOut(t, out, "session.status_idle")

	w.mu.Lock()
	defer w.mu.Unlock()
	// The session's events (its updates) are read at the start and each
	// time the stream is between turns: after the turn's end, racing this
	// read of the counts.
	sessionEvents := w.reads["session events"]
	delete(w.reads, "session events")
	require.Equal(t, map[string]int{"session": 1, "agent": 1, "runs": 2, "events": 2, "run": 1}, w.reads,
		"store reads of one turn: the runs at the start and when woken, the events once subscribed, the run and its events after its end")
	require.True(t, sessionEvents >= 1 && sessionEvents <= 3, "session events read %d times", sessionEvents)
}

// A turn that ended before the stream subscribed to its run (no hub event
// will come) still ends on the stream at once, not at the next poll.
func TestStreamTurnEndedBeforeSubscription(t *testing.T) {
	t.Parallel()
	w := newStreamWorld(t)
	s, out := streamOf(t, w, events.NewLocal())
	w.addRun(store.Run{ID: "run_1", Tenant: "t1", Agent: "a", ConversationID: w.ms.ConversationID, Status: store.RunRunning,
		Input: json.RawMessage(`{"message":"hi"}`), CreatedAt: time.Now(), StartedAt: time.Now()})
	// The runs as the stream reads them say running; the events and the
	// run, read after, say it ended.
	w.store(t, "run_1", store.RunSucceeded, run.StartEvent{Agent: "a", RunID: "run_1"}, run.TextDeltaEvent{Step: 1, Text: "Hi."}, run.Answer{Text: "Hi."})
	w.mu.Lock()
	w.listed = store.RunRunning
	w.mu.Unlock()
	s.Wake(w.ms.ConversationID)
	nextOut(t, out, EvUserMessage)
	nextOut(t, out, "session.status_running")
	nextOut(t, out, "agent.message")
	nextOut(t, out, "session.status_idle")
}
