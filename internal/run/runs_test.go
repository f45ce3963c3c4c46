package run_test

// Queued runs on real River queues and real stores (a SQLite file, or a
// fresh PostgreSQL schema when AGENTD_TEST_POSTGRES_URL is set): a run whose
// worker died is reclaimed and resumed from its checkpoint; a run whose
// worker shuts down is suspended and resumed by another worker.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/tool"
)

const (
	runsPGEnv   = "AGENTD_TEST_POSTGRES_URL"
	runsTenant  = "default"
	runsSimKey  = "sim-key"
	runsTimeout = 20 * time.Second
)

type runsStore interface {
	store.Store
	store.RunLeases
	store.Approvals
}

// runsEnv is one backend with the simulator; workers are added with
// newWorker.
type runsEnv struct {
	backend string
	st      runsStore
	hub     events.Hub
	log     *slog.Logger
	sim     atomic.Pointer[sim.Server]
	model   llm.Model
	lookup  *runsLookupTool
	agents  map[string]*run.ChatAgent
	bg      context.Context

	newQueue   func(ctx context.Context, cfg queue.Config) (queue.Queue, error)
	jobs       func(ctx context.Context, kind string) ([]*rivertype.JobRow, error)
	leaseOwner func(ctx context.Context, runID string) (string, error)
}

// runsLookupTool is a tool that counts its calls.
type runsLookupTool struct{ n atomic.Int64 }

func (l *runsLookupTool) Spec() llm.ToolSpec {
	return llm.ToolSpec{Name: "lookup", Description: "Looks a key up.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`)}
}

func (l *runsLookupTool) Call(_ context.Context, input json.RawMessage) (string, error) {
	l.n.Add(1)
	return "value-for-" + string(input), nil
}

func forEachRunsBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	pgtest.ForEachBackend(t, fn)
}

// runsPoolMaxConns is the PostgreSQL pool size of the runs tests' stores
// (0: the store's default, postgres.DefaultPoolMaxConns). TestRunsThroughput
// sets 0 to measure the default configuration.
var runsPoolMaxConns = 10

func runsPGSchema(t *testing.T) string {
	return pgtest.Schema(t, os.Getenv(runsPGEnv), runsPoolMaxConns)
}

func setupRunsEnv(t *testing.T, backend string, simCfg sim.Config) *runsEnv {
	t.Helper()
	ctx := t.Context()
	env := &runsEnv{backend: backend, log: slog.New(slog.DiscardHandler), lookup: &runsLookupTool{}}
	if os.Getenv("AGENTD_TEST_LOG") != "" {
		env.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// The backend as agentd builds it (internal/app); only the River job
	// listing and the lease column need the concrete database.
	var rawURL string
	switch backend {
	case "sqlite":
		rawURL = "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
	case "postgres":
		rawURL = runsPGSchema(t)
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	be, err := app.OpenBackend(ctx, rawURL, env.log)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, be.Close()) })
	require.NoError(t, be.Store.Migrate(ctx))
	env.st, env.hub, env.newQueue = be.Store, be.Hub, be.NewQueue
	var actors []func(context.Context) error
	for _, fn := range be.Actors {
		actors = append(actors, fn)
	}
	switch st := be.Store.(type) {
	case *sqlite.Store:
		rc, err := river.NewClient(riversqlite.New(st.WriteDB()), &river.Config{Logger: env.log})
		require.NoError(t, err)
		env.jobs = runsJobLister(rc)
		env.leaseOwner = func(ctx context.Context, id string) (string, error) {
			var owner string
			err := st.WriteDB().QueryRowContext(ctx, `SELECT coalesce(lease_owner, '') FROM runs WHERE id = ?`, id).Scan(&owner)
			return owner, err
		}
	case *postgres.Store:
		rc, err := river.NewClient(riverpgxv5.New(st.Pool()), &river.Config{Logger: env.log})
		require.NoError(t, err)
		env.jobs = runsJobLister(rc)
		env.leaseOwner = func(ctx context.Context, id string) (string, error) {
			var owner string
			err := st.Pool().QueryRow(ctx, `SELECT coalesce(lease_owner, '') FROM runs WHERE id = $1`, id).Scan(&owner)
			return owner, err
		}
	default:
		t.Fatalf("unexpected store %T", st)
	}
	bg, stop := context.WithCancel(context.Background())
	env.bg = bg
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	for _, fn := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = fn(bg)
		}()
	}

	env.setSim(simCfg)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.sim.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	env.model = anthropic.New(anthropic.Config{BaseURL: hs.URL, APIKey: runsSimKey})
	env.agents = map[string]*run.ChatAgent{"demo": {
		Agent: run.Agent{Name: "demo", Model: "claude-sonnet-4-5", System: "be brief",
			Tools: append(tool.Builtins(nil), env.lookup), MaxSteps: 5, MaxTokens: 512, Timeout: runsTimeout},
		MaxMessages: 100,
	}}
	return env
}

func runsJobLister[TTx any](rc *river.Client[TTx]) func(ctx context.Context, kind string) ([]*rivertype.JobRow, error) {
	return func(ctx context.Context, kind string) ([]*rivertype.JobRow, error) {
		res, err := rc.JobList(ctx, river.NewJobListParams().Kinds(kind).First(1000))
		if err != nil {
			return nil, err
		}
		return res.Jobs, nil
	}
}

func (env *runsEnv) setSim(cfg sim.Config) *sim.Server {
	cfg.APIKey = runsSimKey
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	s := sim.New(cfg, nil)
	env.sim.Store(s)
	return s
}

// service returns a Service as one worker process has it; model nil: the
// simulator's client.
func (env *runsEnv) service(model llm.Model) *run.Service {
	if model == nil {
		model = env.model
	}
	loop := &run.Loop{Model: model, Store: env.st, Log: env.log}
	return &run.Service{Loop: loop, Store: env.st, Agents: env.agents, ConversationTTL: time.Hour, Log: env.log, Hub: env.hub}
}

// runsWorker is one worker: its Runs and its (started) queue.
type runsWorker struct {
	runs    *run.Runs
	q       queue.Queue
	stopped atomic.Bool
}

// newWorker starts a worker named owner whose model calls go through model
// (nil: the simulator directly).
func (env *runsEnv) newWorker(t *testing.T, owner string, model llm.Model) *runsWorker {
	t.Helper()
	runs := &run.Runs{Service: env.service(model), Store: env.st, Owner: owner, LeaseTTL: 3 * time.Second, Log: env.log}
	q, err := env.newQueue(t.Context(), queue.Config{Executor: runs, Workers: 4, FetchPollInterval: 50 * time.Millisecond, Log: env.log})
	require.NoError(t, err)
	runs.Queue, runs.Webhooks = q, q
	w := &runsWorker{runs: runs, q: q}
	require.NoError(t, q.Start(env.bg))
	t.Cleanup(func() {
		if w.stopped.Swap(true) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, q.Stop(ctx))
	})
	return w
}

// stop stops the worker's queue, waiting at most grace for running runs.
func (w *runsWorker) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	require.False(t, w.stopped.Swap(true), "stopped twice")
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	require.NoError(t, w.q.Stop(ctx))
}

// noEnqueue is a queue that drops jobs: it stores the run without one, as
// a worker that took the run's job and died leaves it.
type noEnqueue struct{ st runsStore }

func (q noEnqueue) CreateRun(ctx context.Context, r store.Run) error { return q.st.CreateRun(ctx, r) }

// ReclaimExpiredRuns is never called: the dead worker reclaims nothing.
func (noEnqueue) ReclaimExpiredRuns(context.Context, time.Time) (int, error) { return 0, nil }

// DecideApproval is never called: the dead worker decides nothing.
func (noEnqueue) DecideApproval(context.Context, store.DecideApprovalParams) (store.Approval, store.Run, error) {
	return store.Approval{}, store.Run{}, errors.New("noEnqueue decides nothing")
}

func (env *runsEnv) waitRun(t *testing.T, id string, cond func(store.Run) bool) store.Run {
	t.Helper()
	deadline := time.Now().Add(runsTimeout)
	for {
		r, err := env.st.GetRun(t.Context(), runsTenant, id)
		require.NoError(t, err)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: still %s (attempt %d, error %q) after %s", id, r.Status, r.Attempt, r.Error, runsTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func terminal(r store.Run) bool { return r.Status.Terminal() }

// waitFinished waits until the run's row is terminal and its last stored
// event is done or error (the two are not written in one transaction).
func (env *runsEnv) waitFinished(t *testing.T, id string) store.Run {
	t.Helper()
	r := env.waitRun(t, id, terminal)
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := env.st.ListEvents(t.Context(), id, 0, 10000)
		require.NoError(t, err)
		if n := len(evs); n > 0 && (evs[n-1].Type == run.EventDone || evs[n-1].Type == run.EventError) {
			return r
		}
		if time.Now().After(deadline) {
			return r // the assertions on the events tell what is missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runEvents returns the run's stored events, checking seqs 1..n.
func (env *runsEnv) runEvents(t *testing.T, id string) []store.Event {
	t.Helper()
	evs, err := env.st.ListEvents(t.Context(), id, 0, 10000)
	require.NoError(t, err)
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "event seqs are gap-free from 1 (event %d, %s)", i, ev.Type)
	}
	return evs
}

// nonDeltaTypes lists event types without text deltas.
func nonDeltaTypes(evs []store.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type != run.EventTextDelta {
			out = append(out, ev.Type)
		}
	}
	return out
}

// dyingModel delegates model calls until call dieAt (1-based), where the
// worker "dies": the run's context ends with run.ErrSuspended, so the loop
// stops without an outcome (no error event), like a killed process.
type dyingModel struct {
	llm.Model
	dieAt int
	die   func()
	n     atomic.Int64
}

func (m *dyingModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if int(m.n.Add(1)) == m.dieAt {
		m.die()
		<-ctx.Done()
		return llm.Response{}, context.Cause(ctx)
	}
	return m.Model.Stream(ctx, req, onDelta)
}

// slowModel delays model calls from call slowFrom (1-based) on by delay,
// or until ctx ends.
type slowModel struct {
	llm.Model
	slowFrom int
	delay    time.Duration
	n        atomic.Int64
}

func (m *slowModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if int(m.n.Add(1)) >= m.slowFrom {
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
			return llm.Response{}, ctx.Err()
		}
	}
	return m.Model.Stream(ctx, req, onDelta)
}

func userText(text string) llm.Message {
	content, _ := json.Marshal([]llm.Block{{Type: "text", Text: text}})
	return llm.Message{Role: "user", Content: content}
}

func TestRunsResumeAfterWorkerDeath(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		ctx := t.Context()
		const msg = "please use lookup"

		// The dead worker took the run's job (so none is left queued),
		// claimed the run with a lease that has expired by now, made the
		// first model call (tool_use), ran the tool, checkpointed both, and
		// died during the second model call.
		dead := &run.Runs{Service: env.service(nil), Store: env.st, Queue: noEnqueue{env.st}, Owner: "dead", Log: env.log}
		rn, created, err := dead.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: msg})
		require.NoError(t, err)
		require.True(t, created)
		now := time.Now().UTC()
		claimed, err := env.st.ClaimRun(ctx, store.ClaimRunParams{ID: rn.ID, Owner: "dead", LeaseUntil: now.Add(-time.Second), Now: now})
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, claimed.Status)
		require.Equal(t, 1, claimed.Attempt)

		dctx, die := context.WithCancelCause(ctx)
		defer die(nil)
		dying := &dyingModel{Model: env.model, dieAt: 2, die: func() { die(run.ErrSuspended) }}
		deadLoop := &run.Loop{Model: dying, Store: env.st, Log: env.log}
		_, err = deadLoop.Execute(dctx, &run.Params{RunID: rn.ID, ConversationID: rn.ConversationID,
			Agent: &env.agents["demo"].Agent, Input: userText(msg)})
		require.ErrorIs(t, err, run.ErrSuspended)
		require.Equal(t, int64(1), env.lookup.n.Load())
		require.Equal(t, int64(1), env.sim.Load().Requests())
		before := env.runEvents(t, rn.ID)
		require.Equal(t, []string{"start", "tool_use", "usage", "tool_result"}, nonDeltaTypes(before))
		lastSeq := before[len(before)-1].Seq

		// Another run has a live lease: reclaiming must leave it alone.
		alive, _, err := dead.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: "hello"})
		require.NoError(t, err)
		_, err = env.st.ClaimRun(ctx, store.ClaimRunParams{ID: alive.ID, Owner: "alive", LeaseUntil: now.Add(time.Minute), Now: now})
		require.NoError(t, err)

		// A live worker with its reclaimer.
		w := env.newWorker(t, "live", nil)
		rctx, stopReclaim := context.WithCancel(env.bg)
		reclaimDone := make(chan error, 1)
		go func() { reclaimDone <- w.runs.Reclaim(rctx, 100*time.Millisecond) }()
		defer func() {
			stopReclaim()
			require.NoError(t, <-reclaimDone)
		}()

		final := env.waitFinished(t, rn.ID)
		require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
		require.Equal(t, 2, final.Attempt, "resumed once")
		require.Equal(t, 2, final.Steps)
		require.Equal(t, int64(1), env.lookup.n.Load(), "the checkpointed tool call is not repeated")
		require.Equal(t, int64(2), env.sim.Load().Requests(), "the checkpointed model call is not repeated")

		evs := env.runEvents(t, rn.ID)
		require.Equal(t, before, evs[:len(before)], "stored events are never rewritten")
		require.Equal(t, []string{"start", "tool_use", "usage", "tool_result", "resumed", "usage", "done"}, nonDeltaTypes(evs))
		resumed := evs[len(before)]
		require.Equal(t, run.EventResumed, resumed.Type)
		require.JSONEq(t, fmt.Sprintf(`{"step":2,"after_seq":%d}`, lastSeq), string(resumed.Data))

		conv, err := env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
		require.NoError(t, err)
		var roles []string
		for _, m := range conv.Messages {
			roles = append(roles, m.Role)
		}
		require.Equal(t, []string{"user", "assistant", "user", "assistant"}, roles)

		// The reclaimer enqueued the dead run once; the live-leased run
		// was left alone.
		jobs, err := env.jobs(ctx, queue.RunArgs{}.Kind())
		require.NoError(t, err)
		require.Len(t, jobs, 1)
		require.Contains(t, string(jobs[0].EncodedArgs), rn.ID)
		a, err := env.st.GetRun(ctx, runsTenant, alive.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, a.Status)
		require.Equal(t, 1, a.Attempt)
		owner, err := env.leaseOwner(ctx, alive.ID)
		require.NoError(t, err)
		require.Equal(t, "alive", owner)
	})
}

func TestRunsSuspendOnShutdown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		msg  string
		// slowFrom: the first model call of worker 1 that hangs (2s).
		slowFrom int
		// wantTypes: the run's events (without text deltas) at the end.
		wantTypes []string
		// calls: model calls that reach the simulator in all.
		calls    int64
		messages int
		// checkpointed: worker 1 checkpointed a step before it stopped.
		checkpointed bool
	}{
		{
			name: "after the first step", msg: "please use lookup", slowFrom: 2,
			wantTypes: []string{"start", "tool_use", "usage", "tool_result", "resumed", "usage", "done"},
			calls:     2, messages: 4, checkpointed: true,
		},
		{
			name: "during the first model call", msg: "hello there", slowFrom: 1,
			wantTypes: []string{"start", "resumed", "usage", "done"},
			calls:     1, messages: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEachRunsBackend(t, func(t *testing.T, backend string) {
				env := setupRunsEnv(t, backend, sim.Config{})
				ctx := t.Context()
				slow := &slowModel{Model: env.model, slowFrom: tc.slowFrom, delay: 2 * time.Second}
				w1 := env.newWorker(t, "w1", slow)
				rn, _, err := w1.runs.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: tc.msg})
				require.NoError(t, err)

				// Wait until worker 1 is inside the hanging model call.
				deadline := time.Now().Add(runsTimeout)
				for slow.n.Load() < int64(tc.slowFrom) {
					require.True(t, time.Now().Before(deadline), "worker 1 never reached model call %d", tc.slowFrom)
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				r, err := env.st.GetRun(ctx, runsTenant, rn.ID)
				require.NoError(t, err)
				require.Equal(t, store.RunRunning, r.Status)
				require.Equal(t, 1, r.Attempt)
				owner, err := env.leaseOwner(ctx, rn.ID)
				require.NoError(t, err)
				require.Equal(t, "w1", owner)

				// Shutdown with a short drain: River cancels the job, the run
				// is suspended, its lease released, its job requeued.
				start := time.Now()
				w1.stop(t, 100*time.Millisecond)
				require.Less(t, time.Since(start), 2*time.Second, "the stop does not wait for the model call")
				r, err = env.st.GetRun(ctx, runsTenant, rn.ID)
				require.NoError(t, err)
				require.Equal(t, store.RunRunning, r.Status, "suspended, not finished (error %q)", r.Error)
				require.Equal(t, 1, r.Attempt)
				owner, err = env.leaseOwner(ctx, rn.ID)
				require.NoError(t, err)
				require.Empty(t, owner, "the lease is released")
				_, err = env.st.LatestCheckpoint(ctx, rn.ID)
				if tc.checkpointed {
					require.NoError(t, err)
				} else {
					require.ErrorIs(t, err, store.ErrNotFound)
				}
				jobs, err := env.jobs(ctx, queue.RunArgs{}.Kind())
				require.NoError(t, err)
				require.Len(t, jobs, 1)
				require.Equal(t, rivertype.JobStateAvailable, jobs[0].State, "the job is requeued at once")
				require.Empty(t, jobs[0].Errors, "a suspension is not a failed attempt")
				stopped := env.runEvents(t, rn.ID)
				require.NotContains(t, nonDeltaTypes(stopped), run.EventError, "a suspended run has no error event")

				// Another worker resumes it.
				env.newWorker(t, "w2", nil)
				final := env.waitFinished(t, rn.ID)
				require.Equal(t, store.RunSucceeded, final.Status, "error %q", final.Error)
				require.Equal(t, 2, final.Attempt)
				require.Equal(t, tc.calls, env.sim.Load().Requests(), "no finished model call is repeated")
				require.LessOrEqual(t, env.lookup.n.Load(), int64(1))

				evs := env.runEvents(t, rn.ID)
				require.Equal(t, stopped, evs[:len(stopped)], "stored events are never rewritten")
				require.Equal(t, tc.wantTypes, nonDeltaTypes(evs))
				conv, err := env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
				require.NoError(t, err)
				require.Len(t, conv.Messages, tc.messages)
				jobs, err = env.jobs(ctx, queue.RunArgs{}.Kind())
				require.NoError(t, err)
				require.Len(t, jobs, 1)
				waitJobs := time.Now().Add(runsTimeout)
				for jobs[0].State != rivertype.JobStateCompleted && time.Now().Before(waitJobs) {
					time.Sleep(20 * time.Millisecond)
					jobs, err = env.jobs(ctx, queue.RunArgs{}.Kind())
					require.NoError(t, err)
				}
				require.Equal(t, rivertype.JobStateCompleted, jobs[0].State)
			})
		})
	}
}

// TestRunsCancelWhileWorkerDead: cancellation requested while a run's worker was
// dead is honoured by the worker that resumes it, at its first renewal.
func TestRunsCancelWhileWorkerDead(t *testing.T) {
	t.Parallel()
	forEachRunsBackend(t, func(t *testing.T, backend string) {
		env := setupRunsEnv(t, backend, sim.Config{})
		ctx := t.Context()
		dead := &run.Runs{Service: env.service(nil), Store: env.st, Queue: noEnqueue{env.st}, Owner: "dead", Log: env.log}
		rn, _, err := dead.Submit(ctx, run.SubmitParams{Tenant: runsTenant, Agent: "demo", Message: "hello"})
		require.NoError(t, err)
		now := time.Now().UTC()
		_, err = env.st.ClaimRun(ctx, store.ClaimRunParams{ID: rn.ID, Owner: "dead", LeaseUntil: now.Add(300 * time.Millisecond), Now: now})
		require.NoError(t, err)
		// Canceled through another API instance: it only marks the run.
		c, err := dead.Cancel(ctx, runsTenant, rn.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, c.Status)

		w := env.newWorker(t, "live", nil)
		rctx, stopReclaim := context.WithCancel(env.bg)
		reclaimDone := make(chan error, 1)
		go func() { reclaimDone <- w.runs.Reclaim(rctx, 100*time.Millisecond) }()
		defer func() {
			stopReclaim()
			require.NoError(t, <-reclaimDone)
		}()
		final := env.waitFinished(t, rn.ID)
		evs := env.runEvents(t, rn.ID)
		require.Equal(t, store.RunCanceled, final.Status, "error %q", final.Error)
		require.Equal(t, 2, final.Attempt)
		require.Equal(t, "canceled: the run was canceled", final.Error)
		require.NotEmpty(t, evs, "a canceled run ends with an error event")
		types := nonDeltaTypes(evs)
		require.Equal(t, run.EventError, types[len(types)-1])
		var e run.ErrorInfo
		require.NoError(t, json.Unmarshal(evs[len(evs)-1].Data, &e))
		require.Equal(t, "canceled", e.Type)
		_, err = env.st.GetConversation(ctx, runsTenant, rn.ConversationID)
		require.ErrorIs(t, err, store.ErrNotFound, "a canceled first turn creates no conversation")
	})
}
