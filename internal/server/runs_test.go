package server_test

// The async run API (POST/GET /v1/runs, events, cancel, webhooks) against
// both store backends, wired like cmd/agentd's serve: a real store (a
// SQLite file, or a fresh PostgreSQL schema), real River queues with
// in-process workers, the event hub of the backend, and the simulator over
// HTTP. The PostgreSQL variants run when AGENTD_TEST_POSTGRES_URL is set.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/tool"
)

const (
	pgEnvURL        = "AGENTD_TEST_POSTGRES_URL"
	testWebhookKey  = "whsec_test"
	runKindRun      = "agentd_run"
	runKindWebhook  = "agentd_webhook"
	runPollInterval = 20 * time.Millisecond
	runWait         = 20 * time.Second
)

// runStore is what the run API needs of a backend's store (cmd/agentd's
// backendStore).
type runStore interface {
	store.Store
	store.RunLeases
	store.Approvals
}

// runsBundle is a whole agentd (API and worker) in process over one
// backend. It embeds a testBundle for the HTTP helpers and the swappable
// simulator.
type runsBundle struct {
	*testBundle
	Backend string
	St      runStore
	Runs    *run.Runs
	Hub     events.Hub
	Queue   queue.Queue

	bg      context.Context
	started atomic.Bool
	// jobs lists River jobs of a kind (inspection only).
	jobs func(ctx context.Context, kind string) ([]*rivertype.JobRow, error)
}

type runsConfig struct {
	sim       sim.Config
	noWorkers bool
	workers   int
	leaseTTL  time.Duration
	auth      bool // API keys required, /v1/audit served
	budgets   *config.Budgets
	maxCost   float64 // the demo agent's max_cost_usd
	chats     *admission.Limiter
	overflow  bool     // admission.overflow: queue
	approval  []string // the demo agent's approval_required tools
	// serverConfig adjusts the server's config last (openapi_test.go
	// turns every route on).
	serverConfig func(*server.Config)
}

type runsOption func(*runsConfig)

func withRunsSim(c sim.Config) runsOption { return func(r *runsConfig) { r.sim = c } }

func withLeaseTTL(d time.Duration) runsOption { return func(r *runsConfig) { r.leaseTTL = d } }

// withoutWorkers builds the worker's queue but does not start it (call
// startWorkers): submitted runs stay queued.
func withoutWorkers() runsOption { return func(r *runsConfig) { r.noWorkers = true } }

// forEachBackend runs fn as parallel subtests "sqlite" and "postgres".
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	pgtest.ForEachBackend(t, fn)
}

// pgTestSchema creates an empty schema, dropped when the test ends, and
// returns a URL whose search_path is that schema.
func pgTestSchema(t *testing.T) string {
	return pgtest.Schema(t, os.Getenv(pgEnvURL), 10)
}

// setupRuns builds a runsBundle on backend ("sqlite" or "postgres"). Agents
// as in setup: "demo" (built-in tools) and "other".
func setupRuns(t *testing.T, backend string, opts ...runsOption) *runsBundle {
	t.Helper()
	cfg := runsConfig{workers: 4, leaseTTL: 3 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("AGENTD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	b := &runsBundle{testBundle: &testBundle{}, Backend: backend}
	ctx := t.Context()

	// Background actors (event listener, River) end after the queue
	// stopped, before the store closes.
	// The backend as agentd builds it (internal/app); only the River job
	// listing needs the concrete database.
	var rawURL string
	switch backend {
	case "sqlite":
		rawURL = "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
	case "postgres":
		rawURL = pgTestSchema(t)
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	be, err := app.OpenBackend(ctx, rawURL, log)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, be.Close()) })
	require.NoError(t, be.Store.Migrate(ctx))
	b.St, b.Hub = be.Store, be.Hub
	newQueue := be.NewQueue
	var actors []func(context.Context) error
	for _, fn := range be.Actors {
		actors = append(actors, fn)
	}
	switch st := be.Store.(type) {
	case *sqlite.Store:
		rc, err := river.NewClient(riversqlite.New(st.WriteDB()), &river.Config{Logger: log})
		require.NoError(t, err)
		b.jobs = jobLister(rc)
	case *postgres.Store:
		rc, err := river.NewClient(riverpgxv5.New(st.Pool()), &river.Config{Logger: log})
		require.NoError(t, err)
		b.jobs = jobLister(rc)
	default:
		t.Fatalf("unexpected store %T", st)
	}
	bg, stopBG := context.WithCancel(context.Background())
	b.bg = bg
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stopBG()
		wg.Wait()
	})
	for _, fn := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = fn(bg)
		}()
	}

	b.setSim(cfg.sim)
	simSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.sim.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	model := anthropic.New(anthropic.Config{BaseURL: simSrv.URL, APIKey: testSimKey})

	agents := map[string]*run.ChatAgent{
		demoAgent: {Agent: run.Agent{
			Name: demoAgent, Model: testModel, System: "You are a test agent.", Tools: tool.Builtins(nil),
			MaxSteps: 8, MaxTokens: 1024, Timeout: 30 * time.Second, MaxCostUSD: cfg.maxCost,
			Approval: run.ApprovalPolicy{Tools: cfg.approval},
		}, MaxMessages: 100},
		otherAgent: {Agent: run.Agent{
			Name: otherAgent, Model: testModel, MaxSteps: 4, MaxTokens: 256, Timeout: 30 * time.Second,
		}, MaxMessages: 100},
	}
	infos := []server.AgentInfo{{Name: demoAgent, Model: testModel, Tools: []server.ToolInfo{}}, {Name: otherAgent, Model: testModel, Tools: []server.ToolInfo{}}}

	metrics := observe.NewMetrics("test")
	loop := &run.Loop{Model: model, Store: b.St, Log: log, Metrics: metrics}
	if cfg.budgets != nil {
		loop.Pricing = cost.New(nil, log)
		loop.Budget = budget.New(*cfg.budgets, b.St.(store.Budgets), loop.Pricing, metrics, log)
	}
	svc := &run.Service{Loop: loop, Store: b.St, Agents: agents, ConversationTTL: time.Hour,
		Log: log, Metrics: metrics, Hub: b.Hub}
	b.Runs = &run.Runs{Service: svc, Store: b.St, Owner: "test-worker-" + backend, LeaseTTL: cfg.leaseTTL, Log: log}
	q, err := newQueue(ctx, queue.Config{
		Executor:          b.Runs,
		Webhooks:          &run.Webhook{Store: b.St, Secret: testWebhookKey, Client: &http.Client{Timeout: 5 * time.Second}},
		Workers:           cfg.workers,
		FetchPollInterval: 50 * time.Millisecond,
		Log:               log,
	})
	require.NoError(t, err)
	b.Runs.Queue, b.Runs.Webhooks = q, q
	b.Queue = q
	t.Cleanup(func() {
		if !b.started.Load() {
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, q.Stop(sctx))
	})
	if !cfg.noWorkers {
		b.startWorkers(t)
	}

	health := &server.Health{Store: b.St, Version: "test", Log: log}
	health.MarkStarted(time.Now())
	scfg := server.Config{
		Chat: svc, Runs: b.Runs, Hub: b.Hub, Conversations: b.St, Agents: infos, Health: health,
		Metrics: metrics, Log: log, MaxBodyBytes: testMaxBody, SSEPingInterval: time.Hour,
		Chats: cfg.chats, OverflowToQueue: cfg.overflow,
	}
	if cfg.auth {
		scfg.Auth, scfg.Audit = testAuth(true, b.St.(store.APIKeys)), b.St.(store.Audit)
	}
	if cfg.serverConfig != nil {
		cfg.serverConfig(&scfg)
	}
	b.API = server.New(scfg)
	srv := httptest.NewServer(b.API)
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	b.Client = srv.Client()
	return b
}

func jobLister[TTx any](rc *river.Client[TTx]) func(ctx context.Context, kind string) ([]*rivertype.JobRow, error) {
	return func(ctx context.Context, kind string) ([]*rivertype.JobRow, error) {
		res, err := rc.JobList(ctx, river.NewJobListParams().Kinds(kind).First(1000))
		if err != nil {
			return nil, err
		}
		return res.Jobs, nil
	}
}

// startWorkers starts the queue's workers (once).
func (b *runsBundle) startWorkers(t *testing.T) {
	t.Helper()
	if b.started.Swap(true) {
		return
	}
	require.NoError(t, b.Queue.Start(b.bg))
}

// submit posts a run; key, when not empty, is the Idempotency-Key.
func (b *runsBundle) submit(t *testing.T, req map[string]any, key string) response {
	t.Helper()
	var h map[string]string
	if key != "" {
		h = map[string]string{"Idempotency-Key": key}
	}
	return b.do(t, http.MethodPost, "/v1/runs", mustJSON(t, req), h)
}

// submitOK submits a new run and checks the 202 answer.
func (b *runsBundle) submitOK(t *testing.T, req map[string]any) run.RunBody {
	t.Helper()
	resp := b.submit(t, req, "")
	require.Equal(t, http.StatusAccepted, resp.Status, "body: %s", resp.Body)
	require.Equal(t, jsonType, resp.Header.Get("Content-Type"))
	require.Empty(t, resp.Header.Get("Idempotent-Replayed"))
	rb := decodeRun(t, resp.Body)
	require.Equal(t, "/v1/runs/"+rb.ID, resp.Header.Get("Location"))
	return rb
}

func decodeRun(t *testing.T, body []byte) run.RunBody {
	t.Helper()
	var rb run.RunBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rb), "body: %s", body)
	return rb
}

func (b *runsBundle) getRun(t *testing.T, id string) run.RunBody {
	t.Helper()
	resp := b.do(t, http.MethodGet, "/v1/runs/"+id, "", nil)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	return decodeRun(t, resp.Body)
}

// waitRun polls the run until its status is one of statuses.
func (b *runsBundle) waitRun(t *testing.T, id string, statuses ...string) run.RunBody {
	t.Helper()
	deadline := time.Now().Add(runWait)
	for {
		rb := b.getRun(t, id)
		if slices.Contains(statuses, rb.Status) {
			return rb
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s is %s after %s, want one of %v (error %q)", id, rb.Status, runWait, statuses, rb.Error)
		}
		time.Sleep(runPollInterval)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(runWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(runPollInterval)
	}
}

type runsPage struct {
	Runs       []run.RunBody `json:"runs"`
	NextCursor string        `json:"next_cursor"`
}

func (b *runsBundle) listRuns(t *testing.T, query string) runsPage {
	t.Helper()
	resp := b.do(t, http.MethodGet, "/v1/runs?"+query, "", nil)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(resp.Body, &raw))
	require.NotEqual(t, "null", string(raw["runs"]), "runs is an array, also when empty")
	var p runsPage
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p))
	return p
}

// followRun reads GET /v1/runs/{id}/events until the stream ends.
func (b *runsBundle) followRun(ctx context.Context, id, query string, header map[string]string) ([]sseEvent, error) {
	path := "/v1/runs/" + id + "/events"
	if query != "" {
		path += "?" + query
	}
	resp, err := b.send(ctx, http.MethodGet, path, "", header)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.Status, resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != eventStream {
		return nil, fmt.Errorf("content type %q", ct)
	}
	return readSSE(bytes.NewReader(resp.Body))
}

func (b *runsBundle) follow(t *testing.T, id, query string, header map[string]string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runWait)
	defer cancel()
	evs, err := b.followRun(ctx, id, query, header)
	require.NoError(t, err)
	return evs
}

func textOf(t *testing.T, output json.RawMessage) string {
	t.Helper()
	var blocks []block
	require.NoError(t, json.Unmarshal(output, &blocks), "output %s", output)
	var sb strings.Builder
	for _, bl := range blocks {
		if bl.Type == "text" {
			sb.WriteString(bl.Text)
		}
	}
	return sb.String()
}

func TestRunsSubmitAndFollowUp(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend)
		before := time.Now().UTC().Add(-time.Second)
		sub := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "Hello there, please answer briefly."})
		require.True(t, strings.HasPrefix(sub.ID, "run_"), sub.ID)
		require.Equal(t, "queued", sub.Status)
		require.Equal(t, demoAgent, sub.Agent)
		require.True(t, strings.HasPrefix(sub.ConversationID, "conv_"), sub.ConversationID)
		require.JSONEq(t, `{"message":"Hello there, please answer briefly.","new_conversation":true}`, string(sub.Input))
		require.Zero(t, sub.Attempt)
		require.Nil(t, sub.StartedAt)
		require.Nil(t, sub.FinishedAt)
		require.True(t, sub.CreatedAt.After(before), "created_at %s", sub.CreatedAt)

		done := b.waitRun(t, sub.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", done.Status, "error: %s", done.Error)
		require.Equal(t, sub.ID, done.ID)
		require.Equal(t, sub.ConversationID, done.ConversationID)
		require.Equal(t, 1, done.Attempt)
		require.Equal(t, 1, done.Steps)
		require.Empty(t, done.Error)
		require.NotEmpty(t, textOf(t, done.Output))
		require.Positive(t, done.Usage.InputTokens)
		require.Positive(t, done.Usage.OutputTokens)
		require.NotNil(t, done.StartedAt)
		require.NotNil(t, done.FinishedAt)
		require.False(t, done.StartedAt.Before(done.CreatedAt))
		require.False(t, done.FinishedAt.Before(*done.StartedAt))
		// The 202 body's created_at has nanoseconds, the stored one
		// microseconds (see the report).
		require.WithinDuration(t, sub.CreatedAt, done.CreatedAt, time.Microsecond)

		c := b.getConversation(t, sub.ConversationID)
		require.Equal(t, demoAgent, c.Agent)
		require.Equal(t, int64(1), c.Version)
		require.Equal(t, []string{"user", "assistant"}, roles(c))
		var last []block
		require.NoError(t, json.Unmarshal(c.Messages[1].Content, &last))
		require.JSONEq(t, string(done.Output), string(c.Messages[1].Content), "output is the final assistant message")

		// A follow-up run continues the conversation.
		sub2 := b.submitOK(t, map[string]any{"agent": demoAgent, "conversation_id": sub.ConversationID, "message": "And one more thing."})
		require.Equal(t, sub.ConversationID, sub2.ConversationID)
		require.NotEqual(t, sub.ID, sub2.ID)
		require.JSONEq(t, `{"message":"And one more thing."}`, string(sub2.Input))
		done2 := b.waitRun(t, sub2.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", done2.Status, "error: %s", done2.Error)
		require.Equal(t, 1, done2.Attempt)
		require.Greater(t, done2.Usage.InputTokens, done.Usage.InputTokens, "the follow-up sends the history")

		c = b.getConversation(t, sub.ConversationID)
		require.Equal(t, int64(2), c.Version)
		require.Equal(t, []string{"user", "assistant", "user", "assistant"}, roles(c))
		var u []block
		require.NoError(t, json.Unmarshal(c.Messages[2].Content, &u))
		require.Equal(t, []block{{Type: "text", Text: "And one more thing."}}, u)

		// A tool-using run: two steps, its output the final answer.
		tools := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "What is 6 times 7? Use the calculator."})
		done3 := b.waitRun(t, tools.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", done3.Status, "error: %s", done3.Error)
		require.Equal(t, 2, done3.Steps)
		require.Contains(t, textOf(t, done3.Output), "calculator")
		c = b.getConversation(t, tools.ConversationID)
		require.Equal(t, []string{"user", "assistant", "user", "assistant"}, roles(c))
	})
}

func TestRunsIdempotency(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withoutWorkers())
		req := map[string]any{"agent": demoAgent, "message": "only once please"}

		first := b.submit(t, req, "key-1")
		require.Equal(t, http.StatusAccepted, first.Status, "body: %s", first.Body)
		require.Empty(t, first.Header.Get("Idempotent-Replayed"))
		r1 := decodeRun(t, first.Body)

		second := b.submit(t, req, "key-1")
		require.Equal(t, http.StatusOK, second.Status, "body: %s", second.Body)
		require.Equal(t, "true", second.Header.Get("Idempotent-Replayed"))
		require.Equal(t, "/v1/runs/"+r1.ID, second.Header.Get("Location"))
		r2 := decodeRun(t, second.Body)
		require.Equal(t, r1.ID, r2.ID)
		require.Equal(t, r1.ConversationID, r2.ConversationID)

		// Same key, different body: refused with 422 naming the key, as
		// payment APIs do; nothing is created and the key's run stays.
		for _, other := range []map[string]any{
			{"agent": otherAgent, "message": "only once please"},
			{"agent": demoAgent, "message": "something else"},
			{"agent": demoAgent, "message": "only once please", "conversation_id": r1.ConversationID},
			{"agent": demoAgent, "message": "only once please", "max_cost_usd": 0.5},
			{"agent": demoAgent, "message": "only once please", "webhook": "https://example.com/hook"},
		} {
			e := requireError(t, b.submit(t, other, "key-1"), http.StatusUnprocessableEntity, "idempotency_key_reused")
			require.Contains(t, e.Error.Message, `"key-1"`, "the message names the key")
		}
		require.Equal(t, r1.ID, b.getRun(t, r1.ID).ID)

		// Another key, or none: new runs.
		other := b.submit(t, req, "key-2")
		require.Equal(t, http.StatusAccepted, other.Status)
		require.NotEqual(t, r1.ID, decodeRun(t, other.Body).ID)
		none := b.submitOK(t, req)
		require.NotEqual(t, r1.ID, none.ID)

		// Concurrent submits with one key create exactly one run.
		const n = 10
		type result struct {
			resp response
			err  error
		}
		results := make(chan result, n)
		var start sync.WaitGroup
		start.Add(1)
		for range n {
			go func() {
				start.Wait()
				resp, err := b.send(t.Context(), http.MethodPost, "/v1/runs", mustJSON(t, req), map[string]string{"Idempotency-Key": "race"})
				results <- result{resp, err}
			}()
		}
		start.Done()
		created, replayed := 0, 0
		ids := map[string]bool{}
		for range n {
			res := <-results
			require.NoError(t, res.err)
			switch res.resp.Status {
			case http.StatusAccepted:
				created++
			case http.StatusOK:
				replayed++
				require.Equal(t, "true", res.resp.Header.Get("Idempotent-Replayed"))
			default:
				t.Fatalf("status %d: %s", res.resp.Status, res.resp.Body)
			}
			ids[decodeRun(t, res.resp.Body).ID] = true
		}
		require.Equal(t, 1, created, "exactly one submit creates the run")
		require.Equal(t, n-1, replayed)
		require.Len(t, ids, 1, "every answer names the same run")
		page := b.listRuns(t, "limit=1000")
		require.Len(t, page.Runs, 4, "key-1, key-2, no key, race")

		// Exactly one River job per created run.
		jobs, err := b.jobs(t.Context(), runKindRun)
		require.NoError(t, err)
		require.Len(t, jobs, 4)

		// Key length: 255 is fine, 256 is refused before anything happens.
		ok := b.submit(t, req, strings.Repeat("k", 255))
		require.Equal(t, http.StatusAccepted, ok.Status, "body: %s", ok.Body)
		e := requireError(t, b.submit(t, req, strings.Repeat("k", 256)), http.StatusBadRequest, "invalid_request")
		require.Contains(t, e.Error.Message, "Idempotency-Key")
		require.Len(t, b.listRuns(t, "limit=1000").Runs, 5)
	})
}

func TestRunsBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withoutWorkers())
		chat := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})
		queued := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "hi"})

		cases := []struct {
			name        string
			body        string
			contentType string
			status      int
			typ         string
			msgContains string
		}{
			{name: "unknown agent", body: `{"agent":"nobody","message":"hi"}`, status: 404, typ: "not_found"},
			{name: "unknown conversation", body: `{"agent":"demo","message":"hi","conversation_id":"conv_nope"}`, status: 404, typ: "not_found"},
			{name: "other agent's conversation", body: `{"agent":"other","message":"hi","conversation_id":"` + chat.ConversationID + `"}`, status: 409, typ: "conflict", msgContains: "another agent"},
			{name: "malformed", body: `{"agent":"demo","message":`, status: 400, typ: "invalid_request"},
			{name: "syntax", body: `{"agent":"demo" "message":"hi"}`, status: 400, typ: "invalid_request", msgContains: "malformed JSON"},
			{name: "empty", body: ` `, status: 400, typ: "invalid_request"},
			{name: "unknown field", body: `{"agent":"demo","message":"hi","stream":true}`, status: 400, typ: "invalid_request", msgContains: `"stream"`},
			{name: "missing message", body: `{"agent":"demo"}`, status: 400, typ: "invalid_request", msgContains: "message"},
			{name: "blank message", body: `{"agent":"demo","message":"  "}`, status: 400, typ: "invalid_request", msgContains: "message"},
			{name: "missing agent", body: `{"message":"hi"}`, status: 400, typ: "invalid_request", msgContains: "agent"},
			{name: "wrong type", body: `{"agent":"demo","message":"hi","webhook":5}`, status: 400, typ: "invalid_request", msgContains: "webhook"},
			{name: "long conversation id", body: `{"agent":"demo","message":"hi","conversation_id":"` + strings.Repeat("c", 129) + `"}`, status: 400, typ: "invalid_request"},
			{name: "webhook ftp", body: `{"agent":"demo","message":"hi","webhook":"ftp://example.com/hook"}`, status: 400, typ: "invalid_request", msgContains: "webhook"},
			{name: "webhook relative", body: `{"agent":"demo","message":"hi","webhook":"/hook"}`, status: 400, typ: "invalid_request", msgContains: "webhook"},
			{name: "webhook no host", body: `{"agent":"demo","message":"hi","webhook":"http://"}`, status: 400, typ: "invalid_request", msgContains: "webhook"},
			{name: "webhook garbage", body: `{"agent":"demo","message":"hi","webhook":"::not a url"}`, status: 400, typ: "invalid_request", msgContains: "webhook"},
			{name: "webhook too long", body: `{"agent":"demo","message":"hi","webhook":"https://example.com/` + strings.Repeat("a", 2048) + `"}`, status: 400, typ: "invalid_request", msgContains: "webhook"},
			{name: "too large", body: `{"agent":"demo","message":"` + strings.Repeat("a", 2*testMaxBody) + `"}`, status: 413, typ: "request_too_large"},
			{name: "text/plain", body: `{"agent":"demo","message":"hi"}`, contentType: "text/plain", status: 415, typ: "unsupported_media_type"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h := map[string]string{}
				if tc.contentType != "" {
					h["Content-Type"] = tc.contentType
				}
				e := requireError(t, b.do(t, http.MethodPost, "/v1/runs", tc.body, h), tc.status, tc.typ)
				if tc.msgContains != "" {
					require.Contains(t, e.Error.Message, tc.msgContains)
				}
			})
		}
		// None of the refused submits created a run.
		require.Len(t, b.listRuns(t, "").Runs, 1+1, "the chat run and the queued one")

		for _, tc := range []struct{ method, path string }{
			{http.MethodGet, "/v1/runs/run_nope"},
			{http.MethodGet, "/v1/runs/run_nope/events"},
			{http.MethodPost, "/v1/runs/run_nope/cancel"},
		} {
			e := requireError(t, b.do(t, tc.method, tc.path, "", nil), http.StatusNotFound, "not_found")
			require.Contains(t, e.Error.Message, "run not found", "%s %s", tc.method, tc.path)
		}
		resp := b.do(t, http.MethodDelete, "/v1/runs/"+queued.ID, "", nil)
		requireError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
		require.Equal(t, "GET", resp.Header.Get("Allow"))

		for _, q := range []string{"status=done", "status=QUEUED", "limit=0", "limit=1001", "limit=-1", "limit=x", "limit=1.5"} {
			e := requireError(t, b.do(t, http.MethodGet, "/v1/runs?"+q, "", nil), http.StatusBadRequest, "invalid_request")
			require.Contains(t, e.Error.Message, strings.Split(q, "=")[0], q)
		}
		for _, id := range []string{"x", "-1", "1.5", "99999999999999999999"} {
			requireError(t, b.do(t, http.MethodGet, "/v1/runs/"+queued.ID+"/events", "", map[string]string{"Last-Event-ID": id}),
				http.StatusBadRequest, "invalid_request")
			requireError(t, b.do(t, http.MethodGet, "/v1/runs/"+queued.ID+"/events?after="+url.QueryEscape(id), "", nil),
				http.StatusBadRequest, "invalid_request")
		}
	})
}

func TestRunsList(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withoutWorkers())
		const n = 25
		var ids []string // in submission order
		agentOf := map[string]string{}
		for i := range n {
			agent := demoAgent
			if i%5 == 0 {
				agent = otherAgent
			}
			rb := b.submitOK(t, map[string]any{"agent": agent, "message": "run " + strconv.Itoa(i)})
			ids = append(ids, rb.ID)
			agentOf[rb.ID] = agent
		}
		// Cancel three queued demo runs.
		canceled := map[string]bool{}
		for _, i := range []int{1, 7, 13} {
			resp := b.do(t, http.MethodPost, "/v1/runs/"+ids[i]+"/cancel", "", nil)
			require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
			require.Equal(t, "canceled", decodeRun(t, resp.Body).Status)
			canceled[ids[i]] = true
		}
		newestFirst := slices.Clone(ids)
		slices.Reverse(newestFirst)

		// The default page holds all 25, newest first, and no cursor.
		all := b.listRuns(t, "")
		require.Empty(t, all.NextCursor)
		require.Equal(t, newestFirst, runIDs(all.Runs))

		// Pages of 7: 7, 7, 7, 4; no duplicates, no gaps.
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10, "pagination does not end")
			q := "limit=7"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			p := b.listRuns(t, q)
			require.LessOrEqual(t, len(p.Runs), 7)
			got = append(got, runIDs(p.Runs)...)
			if p.NextCursor == "" {
				require.Len(t, p.Runs, 4, "the last page")
				break
			}
			require.Len(t, p.Runs, 7)
			require.Equal(t, p.Runs[len(p.Runs)-1].ID, p.NextCursor)
			cursor = p.NextCursor
		}
		require.Equal(t, newestFirst, got)

		// Pages of 5 (25 is a multiple): the walk still ends, without
		// duplicates or gaps.
		got, cursor = nil, ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10, "pagination does not end")
			q := "limit=5"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			p := b.listRuns(t, q)
			got = append(got, runIDs(p.Runs)...)
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		require.Equal(t, newestFirst, got)

		// Filters.
		filter := func(keep func(id string) bool) []string {
			var out []string
			for _, id := range newestFirst {
				if keep(id) {
					out = append(out, id)
				}
			}
			return out
		}
		require.Equal(t, filter(func(id string) bool { return canceled[id] }), runIDs(b.listRuns(t, "status=canceled").Runs))
		require.Equal(t, filter(func(id string) bool { return !canceled[id] }), runIDs(b.listRuns(t, "status=queued").Runs))
		require.Equal(t, filter(func(id string) bool { return agentOf[id] == otherAgent }), runIDs(b.listRuns(t, "agent=other").Runs))
		demoQueued := filter(func(id string) bool { return agentOf[id] == demoAgent && !canceled[id] })
		require.Len(t, demoQueued, 17)
		require.Equal(t, demoQueued, runIDs(b.listRuns(t, "agent=demo&status=queued").Runs))
		p := b.listRuns(t, "agent=demo&status=queued&limit=10")
		require.Equal(t, demoQueued[:10], runIDs(p.Runs))
		p = b.listRuns(t, "agent=demo&status=queued&limit=10&cursor="+url.QueryEscape(p.NextCursor))
		require.Equal(t, demoQueued[10:], runIDs(p.Runs))
		require.Empty(t, p.NextCursor)
		require.Empty(t, b.listRuns(t, "status=succeeded").Runs)
		require.Empty(t, b.listRuns(t, "agent=nobody").Runs)
		for _, rb := range b.listRuns(t, "status=canceled").Runs {
			require.Equal(t, "canceled", rb.Status)
			require.NotNil(t, rb.FinishedAt)
			require.Contains(t, rb.Error, "canceled")
		}
	})
}

func runIDs(runs []run.RunBody) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func TestRunsEvents(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		// A slow-ish stream, so that followers see live events.
		b := setupRuns(t, backend, withRunsSim(sim.Config{Latency: 200 * time.Millisecond, EventDelay: 15 * time.Millisecond, Words: 20}))
		sub := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "Count the words with word_count: one two three"})

		// Two followers from the moment the run exists.
		type result struct {
			evs []sseEvent
			err error
		}
		results := make(chan result, 2)
		ctx, cancel := context.WithTimeout(t.Context(), runWait)
		defer cancel()
		for range 2 {
			go func() {
				evs, err := b.followRun(ctx, sub.ID, "", nil)
				results <- result{evs, err}
			}()
		}
		var streams [][]sseEvent
		for range 2 {
			res := <-results
			require.NoError(t, res.err)
			streams = append(streams, res.evs)
		}
		evs := streams[0]
		require.Equal(t, evs, streams[1], "concurrent followers see identical sequences")
		requireSeqIDs(t, evs)
		types := eventTypes(evs)
		require.Equal(t, "start", types[0])
		require.Equal(t, "done", types[len(types)-1])
		require.Contains(t, types, "text_delta")
		require.Contains(t, types, "tool_use")
		require.Contains(t, types, "tool_result")
		require.Equal(t, 2, strings.Count(strings.Join(types, " "), "usage"))
		var start struct {
			RunID          string `json:"run_id"`
			ConversationID string `json:"conversation_id"`
			Agent          string `json:"agent"`
			Model          string `json:"model"`
		}
		require.NoError(t, json.Unmarshal([]byte(evs[0].Data), &start))
		require.Equal(t, sub.ID, start.RunID)
		require.Equal(t, sub.ConversationID, start.ConversationID)
		var done answer
		require.NoError(t, json.Unmarshal([]byte(evs[len(evs)-1].Data), &done))
		require.Equal(t, sub.ID, done.RunID)
		require.Equal(t, 2, done.Steps)

		// The done event is stored and published before the run row is
		// updated (see the report): a client that saw done may briefly
		// read the run as running.
		final := b.waitRun(t, sub.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", final.Status, "error %q", final.Error)
		var doneRaw struct {
			Content json.RawMessage `json:"content"`
		}
		require.NoError(t, json.Unmarshal([]byte(evs[len(evs)-1].Data), &doneRaw))
		require.JSONEq(t, string(final.Output), string(doneRaw.Content))

		// A finished run replays, and the stream ends.
		require.Equal(t, evs, b.follow(t, sub.ID, "", nil))

		// Reconnects: only later events.
		for _, k := range []int{1, len(evs) / 2, len(evs) - 1} {
			tail := b.follow(t, sub.ID, "", map[string]string{"Last-Event-ID": strconv.Itoa(k)})
			require.Equal(t, evs[k:], tail, "Last-Event-ID %d", k)
			require.Equal(t, evs[k:], b.follow(t, sub.ID, "after="+strconv.Itoa(k), nil), "after=%d", k)
		}
		// After the last event: nothing, and the stream still ends.
		require.Empty(t, b.follow(t, sub.ID, "", map[string]string{"Last-Event-ID": strconv.Itoa(len(evs))}))
		// Last-Event-ID wins over ?after= (the browser's reconnect).
		require.Equal(t, evs[2:], b.follow(t, sub.ID, "after=5", map[string]string{"Last-Event-ID": "2"}))

		// A follower that connects mid-run with Last-Event-ID sees the rest.
		slow := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "Tell me a story about a lighthouse."})
		var first []sseEvent
		waitFor(t, "first events of the second run", func() bool {
			evs, err := b.St.ListEvents(t.Context(), slow.ID, 0, 10)
			require.NoError(t, err)
			return len(evs) >= 2
		})
		first = b.follow(t, slow.ID, "", nil)
		requireSeqIDs(t, first)
		k := 1
		rest := b.follow(t, slow.ID, "", map[string]string{"Last-Event-ID": strconv.Itoa(k)})
		require.Equal(t, first[k:], rest)

		// Chat runs can be followed (replayed) afterwards too.
		a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "What is 6 times 7? Use the calculator."})
		chatRun := b.getRun(t, a.RunID)
		require.Equal(t, "succeeded", chatRun.Status)
		require.Equal(t, 1, chatRun.Attempt)
		require.Equal(t, a.ConversationID, chatRun.ConversationID)
		cevs := b.follow(t, a.RunID, "", nil)
		requireSeqIDs(t, cevs)
		ctypes := eventTypes(cevs)
		require.Equal(t, "start", ctypes[0])
		require.Equal(t, "done", ctypes[len(ctypes)-1])
		var cdone answer
		require.NoError(t, json.Unmarshal([]byte(cevs[len(cevs)-1].Data), &cdone))
		require.Equal(t, a.RunID, cdone.RunID)
		require.Equal(t, a.Text, cdone.Text)

		// A streamed chat's events are the ones stored.
		_, streamed := b.stream(t, map[string]any{"agent": demoAgent, "message": "stream me"})
		var sstart struct {
			RunID string `json:"run_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(streamed[0].Data), &sstart))
		require.Equal(t, streamed, b.follow(t, sstart.RunID, "", nil))
	})
}

func TestRunsCancelQueued(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withoutWorkers())
		sub := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "never run me"})
		keep := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "run me"})

		resp := b.do(t, http.MethodPost, "/v1/runs/"+sub.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		c := decodeRun(t, resp.Body)
		require.Equal(t, "canceled", c.Status)
		require.NotNil(t, c.FinishedAt)
		require.True(t, strings.HasPrefix(c.Error, "canceled: "), c.Error)
		require.Zero(t, c.Attempt)
		require.Equal(t, c, b.getRun(t, sub.ID))

		// Canceling again changes nothing.
		resp = b.do(t, http.MethodPost, "/v1/runs/"+sub.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusOK, resp.Status)
		require.Equal(t, c, decodeRun(t, resp.Body))

		// Workers start: the canceled run's job is consumed without a
		// model call; the other run executes.
		simBefore := b.sim.Load().Requests()
		require.Zero(t, simBefore)
		b.startWorkers(t)
		require.Equal(t, "succeeded", b.waitRun(t, keep.ID, "succeeded", "failed", "canceled").Status)
		waitFor(t, "both run jobs completed", func() bool {
			jobs, err := b.jobs(t.Context(), runKindRun)
			require.NoError(t, err)
			n := 0
			for _, j := range jobs {
				if j.State == rivertype.JobStateCompleted {
					n++
				}
			}
			return n == 2
		})
		require.Equal(t, int64(1), b.sim.Load().Requests(), "only the other run called the model")
		require.Equal(t, c, b.getRun(t, sub.ID), "the canceled run never executed")
		_, err := b.St.LatestCheckpoint(t.Context(), sub.ID)
		require.ErrorIs(t, err, store.ErrNotFound)

		// Its event stream is empty and ends.
		require.Empty(t, b.follow(t, sub.ID, "", nil))
	})
}

// webhookReceiver records deliveries; the first failFirst answer 500.
type webhookReceiver struct {
	srv       *httptest.Server
	failFirst int

	mu    sync.Mutex
	calls []webhookCall
}

type webhookCall struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Status int
}

func newWebhookReceiver(t *testing.T, failFirst int) *webhookReceiver {
	t.Helper()
	w := &webhookReceiver{failFirst: failFirst}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		status := http.StatusNoContent
		if len(w.calls) < w.failFirst || r.Method != http.MethodPost {
			status = http.StatusInternalServerError
		}
		w.calls = append(w.calls, webhookCall{At: time.Now(), Header: r.Header.Clone(), Body: body, Status: status})
		w.mu.Unlock()
		rw.WriteHeader(status)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) Calls() []webhookCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// checkDelivery verifies one delivery's headers, signature and body.
func checkDelivery(t *testing.T, c webhookCall, want run.RunBody) {
	t.Helper()
	require.Equal(t, jsonType, c.Header.Get("Content-Type"))
	require.Equal(t, want.ID, c.Header.Get("X-Agentd-Run-ID"))
	require.Equal(t, want.ID, c.Header.Get("Idempotency-Key"))
	sig := c.Header.Get("X-Agentd-Signature")
	ts, v1, ok := strings.Cut(sig, ",")
	require.True(t, ok, "signature %q", sig)
	require.True(t, strings.HasPrefix(ts, "t="), sig)
	require.True(t, strings.HasPrefix(v1, "v1="), sig)
	ts, v1 = strings.TrimPrefix(ts, "t="), strings.TrimPrefix(v1, "v1=")
	require.Equal(t, run.Sign(testWebhookKey, ts, c.Body), v1, "signature verifies")
	require.NotEqual(t, run.Sign("other-secret", ts, c.Body), v1)
	sec, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	require.InDelta(t, float64(time.Now().Unix()), float64(sec), 60)
	require.Equal(t, want, decodeRun(t, c.Body), "the body is the run object")
}

func TestRunsWebhook(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend)
		ok := newWebhookReceiver(t, 0)
		flaky := newWebhookReceiver(t, 1)  // delivered at attempt 2 (~1s later)
		broken := newWebhookReceiver(t, 2) // attempt 3 is River's ~16s back-off away

		subOK := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "hook me", "webhook": ok.srv.URL + "/hook?x=1"})
		subFlaky := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "hook me again", "webhook": flaky.srv.URL})
		subBroken := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "hook me later", "webhook": broken.srv.URL})
		require.JSONEq(t, `{"message":"hook me","new_conversation":true,"webhook":"`+ok.srv.URL+`/hook?x=1"}`, string(subOK.Input))

		finalOK := b.waitRun(t, subOK.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", finalOK.Status)
		waitFor(t, "webhook delivery", func() bool { return len(ok.Calls()) >= 1 })
		calls := ok.Calls()
		require.Len(t, calls, 1)
		checkDelivery(t, calls[0], finalOK)

		finalFlaky := b.waitRun(t, subFlaky.ID, "succeeded", "failed", "canceled")
		waitFor(t, "webhook retry", func() bool { return len(flaky.Calls()) >= 2 })
		calls = flaky.Calls()
		require.Len(t, calls, 2)
		require.Equal(t, http.StatusInternalServerError, calls[0].Status)
		require.Equal(t, http.StatusNoContent, calls[1].Status)
		require.Equal(t, calls[0].Body, calls[1].Body, "a retry posts the same run")
		checkDelivery(t, calls[1], finalFlaky)
		require.GreaterOrEqual(t, calls[1].At.Sub(calls[0].At), 500*time.Millisecond, "River backs off (~1s)")

		// Failing twice: the third attempt is scheduled with River's
		// attempt^4 back-off (16s after the second); it is not waited for.
		b.waitRun(t, subBroken.ID, "succeeded", "failed", "canceled")
		waitFor(t, "two failed deliveries", func() bool { return len(broken.Calls()) >= 2 })
		var job *rivertype.JobRow
		waitFor(t, "the webhook job to be retryable", func() bool {
			jobs, err := b.jobs(t.Context(), runKindWebhook)
			require.NoError(t, err)
			for _, j := range jobs {
				if strings.Contains(string(j.EncodedArgs), subBroken.ID) && j.State == rivertype.JobStateRetryable && len(j.Errors) == 2 {
					job = j
					return true
				}
			}
			return false
		})
		require.Equal(t, 2, job.Attempt)
		require.Equal(t, queue.DefaultWebhookAttempts, job.MaxAttempts)
		require.Contains(t, job.Errors[1].Error, "500")
		wait := time.Until(job.ScheduledAt)
		require.Greater(t, wait, 8*time.Second, "attempt 3 in ~16s (scheduled %s)", job.ScheduledAt)
		require.Less(t, wait, 20*time.Second)
		require.Len(t, broken.Calls(), 2)
	})
}

// A run that pauses for approval is posted to its webhook as
// run.requires_action with its pending calls, under an idempotency key of
// its own; once decided and finished, as run.completed under the run id.
func TestRunsWebhookOnRequiresAction(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, func(c *runsConfig) { c.approval = []string{"calculator"} })
		hook := newWebhookReceiver(t, 0)
		sub := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "use the calculator", "webhook": hook.srv.URL})
		paused := b.waitRun(t, sub.ID, "requires_action", "succeeded", "failed")
		require.Equal(t, "requires_action", paused.Status)
		waitFor(t, "the requires_action delivery", func() bool { return len(hook.Calls()) >= 1 })
		first := hook.Calls()[0]
		require.Equal(t, "run.requires_action", first.Header.Get("X-Agentd-Event"))
		require.True(t, strings.HasPrefix(first.Header.Get("Idempotency-Key"), sub.ID+":run.requires_action:"), first.Header.Get("Idempotency-Key"))
		var body run.RunBody
		require.NoError(t, json.Unmarshal(first.Body, &body))
		require.Equal(t, "requires_action", body.Status)
		require.Len(t, body.PendingApprovals, 1)
		require.Equal(t, "calculator", body.PendingApprovals[0].Name)

		resp := b.do(t, "POST", "/v1/runs/"+sub.ID+"/approvals",
			`{"tool_use_id":"`+body.PendingApprovals[0].ToolUseID+`","decision":"approve"}`, nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		final := b.waitRun(t, sub.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", final.Status)
		waitFor(t, "the completion delivery", func() bool { return len(hook.Calls()) >= 2 })
		second := hook.Calls()[1]
		require.Equal(t, "run.completed", second.Header.Get("X-Agentd-Event"))
		require.Equal(t, sub.ID, second.Header.Get("Idempotency-Key"))
	})
}

func TestRunsCancelRunning(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		// A long lease: renewals (every 10s) cannot be what stops the run
		// within the bound below, only the in-process cancellation can.
		b := setupRuns(t, backend, withRunsSim(sim.Config{Latency: 5 * time.Second}), withLeaseTTL(30*time.Second))
		hook := newWebhookReceiver(t, 0)
		sub := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "slow one", "webhook": hook.srv.URL})

		// Follow it from the start.
		type result struct {
			evs []sseEvent
			err error
		}
		followed := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), runWait)
			defer cancel()
			evs, err := b.followRun(ctx, sub.ID, "", nil)
			followed <- result{evs, err}
		}()

		waitFor(t, "the model call", func() bool { return b.sim.Load().Requests() >= 1 })
		running := b.getRun(t, sub.ID)
		require.Equal(t, "running", running.Status)
		require.Equal(t, 1, running.Attempt)
		require.NotNil(t, running.StartedAt)

		start := time.Now()
		resp := b.do(t, http.MethodPost, "/v1/runs/"+sub.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusAccepted, resp.Status, "body: %s", resp.Body)
		require.Equal(t, "running", decodeRun(t, resp.Body).Status)
		final := b.waitRun(t, sub.ID, "succeeded", "failed", "canceled")
		took := time.Since(start)
		require.Equal(t, "canceled", final.Status)
		// ~50ms when idle. The bound only has to tell "cancelled the call"
		// from "waited for the model" (5 s) or for a lease renewal (10 s),
		// with room for a loaded -race run on 2 cores (2.8 s seen).
		require.Less(t, took, 4*time.Second, "in-process cancellation does not wait for the model")
		require.Equal(t, "canceled: the run was canceled", final.Error)
		require.NotNil(t, final.FinishedAt)
		require.Nil(t, final.Output)
		require.Equal(t, 1, final.Attempt)

		res := <-followed
		require.NoError(t, res.err)
		requireSeqIDs(t, res.evs)
		types := eventTypes(res.evs)
		require.Equal(t, []string{"start", "error"}, types)
		var e struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.evs[1].Data), &e))
		require.Equal(t, "canceled", e.Type)

		// Canceling the finished run changes nothing.
		resp = b.do(t, http.MethodPost, "/v1/runs/"+sub.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusOK, resp.Status)
		require.Equal(t, final, decodeRun(t, resp.Body))

		// The canceled run is delivered to its webhook, and its job is
		// done (not retried).
		waitFor(t, "webhook of the canceled run", func() bool { return len(hook.Calls()) >= 1 })
		checkDelivery(t, hook.Calls()[0], final)
		waitFor(t, "run job completed", func() bool {
			jobs, err := b.jobs(t.Context(), runKindRun)
			require.NoError(t, err)
			return len(jobs) == 1 && jobs[0].State == rivertype.JobStateCompleted
		})
		require.Equal(t, int64(1), b.sim.Load().Requests(), "no model call after the cancel")

		// Cancel of a succeeded run: 200, unchanged.
		b.setSim(sim.Config{})
		sub2 := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "quick one"})
		done := b.waitRun(t, sub2.ID, "succeeded", "failed", "canceled")
		require.Equal(t, "succeeded", done.Status)
		resp = b.do(t, http.MethodPost, "/v1/runs/"+sub2.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		require.Equal(t, done, decodeRun(t, resp.Body))
		require.Equal(t, done, b.getRun(t, sub2.ID))
	})
}
