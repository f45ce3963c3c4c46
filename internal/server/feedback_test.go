package server_test

// Feedback on runs (POST /v1/runs/{id}/feedback, GET /v1/feedback and
// /v1/feedback/summary) through the HTTP API on both store backends: the
// store agentd opens for a store URL (a SQLite file, or a fresh PostgreSQL
// schema), real chats answered by the simulator over HTTP, API keys on.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// feedbackBundle is an API with chats, API keys (when auth) and the
// feedback endpoints on one backend.
type feedbackBundle struct {
	*testBundle
	St app.Store
}

func setupFeedback(t *testing.T, backend string, withKeys bool) *feedbackBundle {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx := t.Context()
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
	b := &feedbackBundle{testBundle: &testBundle{}, St: be.Store}

	b.setSim(sim.Config{})
	simSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.sim.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	model := anthropic.New(anthropic.Config{BaseURL: simSrv.URL, APIKey: testSimKey})
	agents := map[string]*run.ChatAgent{
		demoAgent: {Agent: run.Agent{Name: demoAgent, Model: testModel, Tools: tool.Builtins(nil),
			MaxSteps: 8, MaxTokens: 1024, Timeout: 30 * time.Second}, MaxMessages: 100},
		otherAgent: {Agent: run.Agent{Name: otherAgent, Model: testModel,
			MaxSteps: 4, MaxTokens: 256, Timeout: 30 * time.Second}, MaxMessages: 100},
	}
	b.Metrics = observe.NewMetrics("test")
	loop := &run.Loop{Model: model, Store: be.Store, Log: log, Metrics: b.Metrics}
	svc := &run.Service{Loop: loop, Store: be.Store, Agents: agents, ConversationTTL: time.Hour, Log: log, Metrics: b.Metrics}
	health := &server.Health{Store: be.Store, Version: "test", Log: log}
	health.MarkStarted(time.Now())
	b.API = server.New(server.Config{
		Chat: svc, Conversations: be.Store, Health: health, Metrics: b.Metrics, Log: log,
		// Room for the largest comment: the body limit is not what is
		// tested here.
		MaxBodyBytes: 64 << 10, SSEPingInterval: time.Hour,
		Auth: testAuth(withKeys, be.Store), Feedback: be.Store,
	})
	srv := httptest.NewServer(b.API)
	t.Cleanup(srv.Close)
	b.URL, b.Client = srv.URL, srv.Client()
	return b
}

// chatRun chats with agent as key (nil: no key) and returns the run id the
// answer carries.
func (b *feedbackBundle) chatRun(t *testing.T, agent string, key map[string]string) string {
	t.Helper()
	resp := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": agent, "message": "hello"}), key)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	var a answer
	require.NoError(t, json.Unmarshal(resp.Body, &a))
	require.NotEmpty(t, a.RunID, "a chat answer carries its run id")
	return a.RunID
}

func (b *feedbackBundle) postFeedback(t *testing.T, runID string, body any, key map[string]string) response {
	t.Helper()
	raw, ok := body.(string)
	if !ok {
		raw = mustJSON(t, body)
	}
	return b.do(t, http.MethodPost, "/v1/runs/"+runID+"/feedback", raw, key)
}

func decodeFeedback(t *testing.T, data []byte) server.FeedbackBody {
	t.Helper()
	var f server.FeedbackBody
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&f), "body: %s", data)
	return f
}

type feedbackList struct {
	Feedback   []server.FeedbackBody `json:"feedback"`
	NextCursor string                `json:"next_cursor"`
}

func (b *feedbackBundle) listFeedback(t *testing.T, query string, key map[string]string) feedbackList {
	t.Helper()
	resp := b.do(t, http.MethodGet, "/v1/feedback"+query, "", key)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	var l feedbackList
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&l), "body: %s", resp.Body)
	return l
}

func feedbackCount(t *testing.T, m *observe.Metrics, agent, rating string) float64 {
	t.Helper()
	return counterValue(t, m.Feedback.WithLabelValues(agent, rating))
}

func TestFeedbackStoredReplacedAndCounted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupFeedback(t, backend, true)
		chatKey := newTestKey(t, b.St, "acme", auth.ScopeChat)
		runsKey := newTestKey(t, b.St, "acme", auth.ScopeRuns)
		runID := b.chatRun(t, demoAgent, chatKey.bearer())

		before := time.Now().UTC()
		resp := b.postFeedback(t, runID, map[string]any{"rating": -1, "comment": "wrong answer",
			"tags": []string{"accuracy", "tone"}}, chatKey.bearer())
		require.Equal(t, http.StatusCreated, resp.Status, "body: %s", resp.Body)
		require.Equal(t, jsonType, resp.Header.Get("Content-Type"))
		first := decodeFeedback(t, resp.Body)
		require.True(t, strings.HasPrefix(first.ID, "fb_"), first.ID)
		require.Equal(t, runID, first.RunID)
		require.Equal(t, demoAgent, first.Agent)
		require.Equal(t, chatKey.ID, first.KeyID)
		require.Equal(t, -1, first.Rating)
		require.Equal(t, "wrong answer", first.Comment)
		require.Equal(t, []string{"accuracy", "tone"}, first.Tags)
		require.Equal(t, 1, first.Revision)
		require.Equal(t, first.CreatedAt, first.UpdatedAt)
		require.False(t, first.CreatedAt.Before(before.Truncate(time.Microsecond)))
		require.Equal(t, 1.0, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackNegative))
		require.Zero(t, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackPositive))

		// The same key changes its mind: the entry is replaced (200),
		// id and created_at kept, and the new rating counted.
		resp = b.postFeedback(t, runID, map[string]any{"rating": 1}, chatKey.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		second := decodeFeedback(t, resp.Body)
		require.Equal(t, first.ID, second.ID)
		require.Equal(t, 1, second.Rating)
		require.Equal(t, "", second.Comment)
		require.Equal(t, []string{}, second.Tags)
		require.Equal(t, 2, second.Revision)
		require.Equal(t, first.CreatedAt, second.CreatedAt)
		require.False(t, second.UpdatedAt.Before(first.UpdatedAt))
		require.Equal(t, 1.0, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackPositive))
		require.Equal(t, 1.0, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackNegative))

		// The same rating again (a retry, an edited comment): replaced,
		// not counted again.
		resp = b.postFeedback(t, runID, map[string]any{"rating": 1, "comment": "on second thought, fine"}, chatKey.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		require.Equal(t, 3, decodeFeedback(t, resp.Body).Revision)
		require.Equal(t, 1.0, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackPositive))

		// Another key of the tenant (the runs scope) rates the same run:
		// an entry of its own.
		resp = b.postFeedback(t, runID, map[string]any{"rating": -1}, runsKey.bearer())
		require.Equal(t, http.StatusCreated, resp.Status, "body: %s", resp.Body)
		other := decodeFeedback(t, resp.Body)
		require.NotEqual(t, first.ID, other.ID)
		require.Equal(t, runsKey.ID, other.KeyID)
		require.Equal(t, 2.0, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackNegative))

		// Listed: both entries, newest first, the replaced one with its
		// latest rating and comment.
		l := b.listFeedback(t, "", chatKey.bearer())
		require.Len(t, l.Feedback, 2)
		require.Empty(t, l.NextCursor)
		require.Equal(t, other.ID, l.Feedback[0].ID)
		require.Equal(t, first.ID, l.Feedback[1].ID)
		require.Equal(t, 1, l.Feedback[1].Rating)
		require.Equal(t, "on second thought, fine", l.Feedback[1].Comment)

		// The metric is on /metrics.
		resp = b.do(t, http.MethodGet, "/metrics", "", nil)
		require.Contains(t, string(resp.Body), `agentd_feedback_total{agent="demo",rating="negative"} 2`)
		require.Contains(t, string(resp.Body), `agentd_feedback_total{agent="demo",rating="positive"} 1`)
	})
}

func TestFeedbackRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupFeedback(t, backend, true)
		acme := newTestKey(t, b.St, "acme", auth.ScopeChat)
		globex := newTestKey(t, b.St, "globex", auth.ScopeChat, auth.ScopeRuns)
		runID := b.chatRun(t, demoAgent, acme.bearer())

		for name, tc := range map[string]struct {
			body string
			msg  string
		}{
			"NoRating":       {`{"comment":"x"}`, "rating: required"},
			"RatingZero":     {`{"rating":0}`, "rating: must be 1 or -1, not 0"},
			"RatingTwo":      {`{"rating":2}`, "rating: must be 1 or -1, not 2"},
			"RatingFraction": {`{"rating":0.5}`, "rating: must be a number"},
			"RatingString":   {`{"rating":"up"}`, "rating: must be a number"},
			"UnknownField":   {`{"rating":1,"stars":5}`, `unknown field "stars"`},
			"CommentTooLong": {mustJSON(t, map[string]any{"rating": 1, "comment": strings.Repeat("x", server.MaxFeedbackComment+1)}), "comment: 4097 bytes, at most 4096"},
			"TooManyTags":    {mustJSON(t, map[string]any{"rating": 1, "tags": strings.Split(strings.Repeat("t,", server.MaxFeedbackTags)+"last", ",")}), "tags: 17 tags, at most 16"},
			"TagTooLong":     {mustJSON(t, map[string]any{"rating": 1, "tags": []string{strings.Repeat("t", server.MaxFeedbackTag+1)}}), "tags[0]: 65 bytes, at most 64"},
			"TagBlank":       {`{"rating":1,"tags":["ok"," "]}`, "tags[1]: must not be blank"},
			"TagControl":     {`{"rating":1,"tags":["a\nb"]}`, "tags[0]: must be valid UTF-8 without control characters"},
			"TagTwice":       {`{"rating":1,"tags":["a","a"]}`, `tags[1]: "a" is given twice`},
			"TagsNotAnArray": {`{"rating":1,"tags":"a"}`, "tags: must be an array"},
			"Empty":          {``, "request body is empty"},
			"NotJSON":        {`rating=1`, "malformed JSON"},
			"TwoObjects":     {`{"rating":1}{"rating":1}`, "exactly one JSON object"},
			"CommentBytes":   {mustJSON(t, map[string]any{"rating": 1, "comment": strings.Repeat("é", server.MaxFeedbackComment/2+1)}), "comment: 4098 bytes, at most 4096"},
		} {
			t.Run(name, func(t *testing.T) {
				resp := b.postFeedback(t, runID, tc.body, acme.bearer())
				e := requireError(t, resp, http.StatusBadRequest, "invalid_request")
				require.Contains(t, e.Error.Message, tc.msg)
				require.NotRegexp(t, internalText, string(resp.Body))
			})
		}
		// A comment and tags of exactly the limits pass.
		tags := make([]string, server.MaxFeedbackTags)
		for i := range tags {
			tags[i] = fmt.Sprintf("%02d", i) + strings.Repeat("t", server.MaxFeedbackTag-2)
		}
		resp := b.postFeedback(t, runID, map[string]any{"rating": 1, "comment": strings.Repeat("x", server.MaxFeedbackComment),
			"tags": tags}, acme.bearer())
		require.Equal(t, http.StatusCreated, resp.Status, "body: %s", resp.Body)
		// Nothing else was stored, nothing else counted.
		require.Len(t, b.listFeedback(t, "", acme.bearer()).Feedback, 1)
		require.Equal(t, 1.0, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackPositive))
		require.Zero(t, feedbackCount(t, b.Metrics, demoAgent, observe.FeedbackNegative))

		resp = b.do(t, http.MethodPost, "/v1/runs/"+runID+"/feedback", `{"rating":1}`, map[string]string{
			"Authorization": "Bearer " + acme.Token, "Content-Type": "text/plain"})
		requireError(t, resp, http.StatusUnsupportedMediaType, "unsupported_media_type")

		// Unknown run, and another tenant's run: 404 alike.
		for _, key := range []testKey{acme, globex} {
			run := map[testKey]string{acme: "run_nope", globex: runID}[key]
			resp := b.postFeedback(t, run, map[string]any{"rating": -1}, key.bearer())
			e := requireError(t, resp, http.StatusNotFound, "not_found")
			require.Equal(t, "run not found", e.Error.Message)
			require.NotRegexp(t, internalText, string(resp.Body))
		}
		// The other tenant sees none of acme's feedback.
		require.Empty(t, b.listFeedback(t, "", globex.bearer()).Feedback)
		require.Equal(t, 1, b.listFeedback(t, "", acme.bearer()).Feedback[0].Rating, "acme's rating untouched")

		// A run that has not finished has no answer to rate yet.
		queued := store.Run{ID: "run_queued", Tenant: "acme", Agent: demoAgent, Status: store.RunQueued, Input: json.RawMessage(`{}`)}
		require.NoError(t, b.St.CreateRun(t.Context(), queued))
		resp = b.postFeedback(t, queued.ID, map[string]any{"rating": 1}, acme.bearer())
		e := requireError(t, resp, http.StatusConflict, "run_not_finished")
		require.Equal(t, "run run_queued is queued: feedback rates a finished run's answer", e.Error.Message)
		require.NotRegexp(t, internalText, string(resp.Body))

		// No key: 401.
		requireUnauthorized(t, b.postFeedback(t, runID, map[string]any{"rating": 1}, nil))
		requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/feedback", "", nil))
	})
}

func TestFeedbackListFiltersAndCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupFeedback(t, backend, true)
		key := newTestKey(t, b.St, "acme", auth.ScopeChat)
		type rated struct {
			agent  string
			rating int
		}
		var ids, runIDs []string // in the order given: oldest first
		for _, r := range []rated{{demoAgent, 1}, {demoAgent, -1}, {otherAgent, 1}, {demoAgent, 1}, {otherAgent, -1}} {
			runID := b.chatRun(t, r.agent, key.bearer())
			resp := b.postFeedback(t, runID, map[string]any{"rating": r.rating}, key.bearer())
			require.Equal(t, http.StatusCreated, resp.Status, "body: %s", resp.Body)
			ids = append(ids, decodeFeedback(t, resp.Body).ID)
			runIDs = append(runIDs, runID)
		}
		newestFirst := func(idx ...int) []string {
			out := []string{}
			for i := len(idx) - 1; i >= 0; i-- {
				out = append(out, ids[idx[i]])
			}
			return out
		}
		idsOf := func(l feedbackList) []string {
			out := []string{}
			for _, f := range l.Feedback {
				out = append(out, f.ID)
			}
			return out
		}

		require.Equal(t, newestFirst(0, 1, 2, 3, 4), idsOf(b.listFeedback(t, "", key.bearer())))
		require.Equal(t, newestFirst(0, 1, 3), idsOf(b.listFeedback(t, "?agent=demo", key.bearer())))
		require.Equal(t, newestFirst(1, 4), idsOf(b.listFeedback(t, "?rating=-1", key.bearer())))
		require.Equal(t, newestFirst(1, 4), idsOf(b.listFeedback(t, "?rating=negative", key.bearer())))
		require.Equal(t, newestFirst(2), idsOf(b.listFeedback(t, "?agent=other&rating=positive", key.bearer())))
		require.Empty(t, b.listFeedback(t, "?agent=nobody", key.bearer()).Feedback)
		// One run's feedback (what a console shows on the run).
		l := b.listFeedback(t, "?run_id="+runIDs[2], key.bearer())
		require.Equal(t, newestFirst(2), idsOf(l))
		require.Equal(t, runIDs[2], l.Feedback[0].RunID)
		require.Empty(t, b.listFeedback(t, "?run_id=run_nope", key.bearer()).Feedback)

		// Time bounds: everything is from today.
		today := time.Now().UTC().Format(time.DateOnly)
		require.Len(t, b.listFeedback(t, "?from="+today+"&to="+today, key.bearer()).Feedback, 5)
		tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
		require.Empty(t, b.listFeedback(t, "?from="+tomorrow, key.bearer()).Feedback)
		require.Empty(t, b.listFeedback(t, "?to="+url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)), key.bearer()).Feedback)

		// Pages of 2 through next_cursor, filters kept.
		var got []string
		query := "?limit=2"
		for range 5 {
			l := b.listFeedback(t, query, key.bearer())
			require.LessOrEqual(t, len(l.Feedback), 2)
			got = append(got, idsOf(l)...)
			if l.NextCursor == "" {
				break
			}
			query = "?limit=2&cursor=" + url.QueryEscape(l.NextCursor)
		}
		require.Equal(t, newestFirst(0, 1, 2, 3, 4), got)
		l = b.listFeedback(t, "?agent=demo&limit=2", key.bearer())
		require.Equal(t, newestFirst(1, 3), idsOf(l))
		l = b.listFeedback(t, "?agent=demo&limit=2&cursor="+url.QueryEscape(l.NextCursor), key.bearer())
		require.Equal(t, newestFirst(0), idsOf(l))
		require.Empty(t, l.NextCursor)

		for query, msg := range map[string]string{
			"?rating=0":                          "rating must be 1, -1, positive or negative",
			"?rating=good":                       "rating must be 1, -1, positive or negative",
			"?limit=0":                           "limit: must be an integer from 1 to 1000",
			"?limit=1001":                        "limit: must be an integer from 1 to 1000",
			"?cursor=bm9wZQ":                     "cursor: not a cursor",
			"?cursor=%25%25":                     "cursor: not a cursor",
			"?from=yesterday":                    "from:",
			"?from=" + tomorrow + "&to=" + today: "must be before to",
		} {
			e := requireError(t, b.do(t, http.MethodGet, "/v1/feedback"+query, "", key.bearer()), http.StatusBadRequest, "invalid_request")
			require.Contains(t, e.Error.Message, msg, query)
		}
	})
}

type feedbackSummary struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Days []struct {
		Agent         string  `json:"agent"`
		Day           string  `json:"day"`
		Count         int64   `json:"count"`
		Positive      int64   `json:"positive"`
		Negative      int64   `json:"negative"`
		PositiveShare float64 `json:"positive_share"`
	} `json:"days"`
	Agents []struct {
		Agent         string  `json:"agent"`
		Count         int64   `json:"count"`
		Positive      int64   `json:"positive"`
		Negative      int64   `json:"negative"`
		PositiveShare float64 `json:"positive_share"`
	} `json:"agents"`
}

func TestFeedbackSummary(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupFeedback(t, backend, true)
		key := newTestKey(t, b.St, "acme", auth.ScopeChat)
		other := newTestKey(t, b.St, "acme", auth.ScopeChat)
		// Today, through the API: demo 2 up (one after a change of mind),
		// 1 down; other 1 down.
		r1, r2, r3 := b.chatRun(t, demoAgent, key.bearer()), b.chatRun(t, demoAgent, key.bearer()), b.chatRun(t, otherAgent, key.bearer())
		for _, p := range []struct {
			run    string
			rating int
			key    testKey
		}{{r1, -1, key}, {r1, 1, key}, {r1, -1, other}, {r2, 1, key}, {r3, -1, key}} {
			resp := b.postFeedback(t, p.run, map[string]any{"rating": p.rating}, p.key.bearer())
			require.Contains(t, []int{http.StatusCreated, http.StatusOK}, resp.Status, "body: %s", resp.Body)
		}
		// Two days ago (a store write: the API stamps now): demo 1 up,
		// 3 down; another tenant's entry stays out.
		old := time.Now().UTC().AddDate(0, 0, -2)
		for i, rating := range []int{1, -1, -1, -1} {
			_, err := b.St.PutFeedback(t.Context(), store.FeedbackEntry{ID: fmt.Sprintf("fb_old_%d", i), Tenant: "acme",
				RunID: fmt.Sprintf("run_old_%d", i), Agent: demoAgent, Rating: rating, UpdatedAt: old})
			require.NoError(t, err)
		}
		_, err := b.St.PutFeedback(t.Context(), store.FeedbackEntry{ID: "fb_globex", Tenant: "globex", RunID: "run_g",
			Agent: demoAgent, Rating: 1, UpdatedAt: old})
		require.NoError(t, err)

		get := func(query string) feedbackSummary {
			t.Helper()
			resp := b.do(t, http.MethodGet, "/v1/feedback/summary"+query, "", key.bearer())
			require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
			var s feedbackSummary
			dec := json.NewDecoder(bytes.NewReader(resp.Body))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&s), "body: %s", resp.Body)
			return s
		}
		today, oldDay := time.Now().UTC().Format(time.DateOnly), old.Format(time.DateOnly)
		s := get("")
		require.WithinDuration(t, time.Now(), s.To, time.Minute)
		require.Equal(t, server.DefaultFeedbackWindow, s.To.Sub(s.From))
		require.Len(t, s.Days, 3)
		d := s.Days[0]
		require.Equal(t, []any{demoAgent, oldDay, int64(4), int64(1), int64(3), 0.25},
			[]any{d.Agent, d.Day, d.Count, d.Positive, d.Negative, d.PositiveShare})
		d = s.Days[1]
		require.Equal(t, []any{demoAgent, today, int64(3), int64(2), int64(1)},
			[]any{d.Agent, d.Day, d.Count, d.Positive, d.Negative})
		require.InDelta(t, 2.0/3, d.PositiveShare, 1e-9)
		d = s.Days[2]
		require.Equal(t, []any{otherAgent, today, int64(1), int64(0), int64(1), 0.0},
			[]any{d.Agent, d.Day, d.Count, d.Positive, d.Negative, d.PositiveShare})
		require.Len(t, s.Agents, 2)
		require.Equal(t, []any{demoAgent, int64(7), int64(3), int64(4)},
			[]any{s.Agents[0].Agent, s.Agents[0].Count, s.Agents[0].Positive, s.Agents[0].Negative})
		require.InDelta(t, 3.0/7, s.Agents[0].PositiveShare, 1e-9)
		require.Equal(t, []any{otherAgent, int64(1), 0.0}, []any{s.Agents[1].Agent, s.Agents[1].Count, s.Agents[1].PositiveShare})

		// Filters: one agent; from today on.
		s = get("?agent=other")
		require.Len(t, s.Days, 1)
		require.Equal(t, otherAgent, s.Days[0].Agent)
		s = get("?from=" + today)
		require.Len(t, s.Days, 2)
		require.Equal(t, today, s.Days[0].Day)
		s = get("?to=" + oldDay)
		require.Len(t, s.Days, 1)
		require.Equal(t, oldDay, s.Days[0].Day)
		s = get("?agent=nobody")
		require.NotNil(t, s.Days)
		require.Empty(t, s.Days)
		require.NotNil(t, s.Agents)
		require.Empty(t, s.Agents)

		e := requireError(t, b.do(t, http.MethodGet, "/v1/feedback/summary?from="+today+"&to="+oldDay, "", key.bearer()),
			http.StatusBadRequest, "invalid_request")
		require.Contains(t, e.Error.Message, "must be before to")
	})
}

// With authentication off everything belongs to the default tenant and a
// feedback has no key: one entry per run.
func TestFeedbackWithoutAuth(t *testing.T) {
	t.Parallel()
	b := setupFeedback(t, "sqlite", false)
	runID := b.chatRun(t, demoAgent, nil)
	resp := b.postFeedback(t, runID, map[string]any{"rating": 1}, nil)
	require.Equal(t, http.StatusCreated, resp.Status, "body: %s", resp.Body)
	f := decodeFeedback(t, resp.Body)
	require.Equal(t, "", f.KeyID)
	resp = b.postFeedback(t, runID, map[string]any{"rating": -1}, nil)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	require.Equal(t, f.ID, decodeFeedback(t, resp.Body).ID)
	l := b.listFeedback(t, "", nil)
	require.Len(t, l.Feedback, 1)
	require.Equal(t, -1, l.Feedback[0].Rating)
}
