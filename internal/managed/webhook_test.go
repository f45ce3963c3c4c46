package managed

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

const (
	testWebhookKey  = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA=="
	testWebhookKeyA = "whsec_YS1zaWduaW5nLWtleS1vZi10ZW5hbnQtYQ=="
	testWebhookKeyB = "whsec_Yi1zaWduaW5nLWtleS1vZi10ZW5hbnQtYg=="
)

// hookStore holds runs and sessions of several tenants: a tenant sees its
// own only, as in the store.
type hookStore struct {
	runs     map[string]store.Run
	sessions map[string]store.ManagedSession // by conversation
}

func (h *hookStore) GetRun(_ context.Context, tenant, id string) (store.Run, error) {
	r, ok := h.runs[id]
	if !ok || r.Tenant != tenant {
		return store.Run{}, store.ErrNotFound
	}
	return r, nil
}

func (h *hookStore) GetManagedSessionByConversation(_ context.Context, tenant, conv string) (store.ManagedSession, error) {
	ms, ok := h.sessions[conv]
	if !ok || ms.Tenant != tenant {
		return store.ManagedSession{}, store.ErrNotFound
	}
	return ms, nil
}

type runHooks struct{ got []string }

func (r *runHooks) Deliver(_ context.Context, tenant, runID, url, event, _ string) error {
	r.got = append(r.got, tenant+" "+runID+" "+url+" "+event)
	return nil
}

// hookReceiver records the POSTs it gets; verify checks them with the
// SDK's client.Beta.Webhooks.Unwrap under a key.
type hookReceiver struct {
	URL  string
	mu   sync.Mutex
	reqs []hookRequest
}

type hookRequest struct {
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.reqs = append(h.reqs, hookRequest{header: r.Header.Clone(), body: body})
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/hooks"
	return h
}

// take returns what was received since the last take.
func (h *hookReceiver) take() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.reqs
	h.reqs = nil
	return out
}

// events takes what was received, each verified under key, as
// "<event type> <session id> <organization_id>".
func (h *hookReceiver) events(t *testing.T, key string) []string {
	t.Helper()
	verifier := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithWebhookKey(key), option.WithAPIKey("x"))
	var out []string
	for _, r := range h.take() {
		ev, err := verifier.Beta.Webhooks.Unwrap(r.body, r.header)
		require.NoError(t, err, "webhook does not verify: %s", r.body)
		out = append(out, string(ev.Data.Type)+" "+ev.Data.ID+" "+ev.Data.OrganizationID)
	}
	return out
}

func TestWebhookDeliverer(t *testing.T) {
	verifier := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithWebhookKey(testWebhookKey), option.WithAPIKey("x"))
	var mu sync.Mutex
	var got []anthropic.UnwrapWebhookEvent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := verifier.Beta.Webhooks.Unwrap(body, r.Header)
		if !assertNoError(t, err) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, *ev)
		mu.Unlock()
	}))
	defer srv.Close()
	st := &hookStore{
		runs: map[string]store.Run{
			"run_ok":     {ID: "run_ok", Tenant: "t1", ConversationID: "conv_1"},
			"run_budget": {ID: "run_budget", Tenant: "t1", ConversationID: "conv_1", Error: "budget_exceeded: the run's max_cost_usd ..."},
			"run_plain":  {ID: "run_plain", Tenant: "t1", ConversationID: "conv_9"},
		},
		sessions: map[string]store.ManagedSession{"conv_1": {ID: "sesn_1", Tenant: "t1", ConversationID: "conv_1"}},
	}
	rh := &runHooks{}
	d := &WebhookDeliverer{Run: rh, Store: st, Webhooks: NewWebhookEndpoints(WebhookEndpoint{URL: srv.URL, Key: testWebhookKey}, nil)}
	ctx := t.Context()
	types := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, e := range got {
			require.Equal(t, "sesn_1", e.Data.ID)
			out = append(out, string(e.Data.Type)+" "+e.ID)
		}
		got = nil
		return out
	}

	// SessionWebhook (what Turns and ArchiveSession queue) and, queued by
	// an earlier agentd, the endpoint's URL itself: the same deliveries.
	for _, url := range []string{SessionWebhook, srv.URL} {
		require.NoError(t, d.Deliver(ctx, "t1", "run_ok", url, run.WebhookRunCompleted, "run_ok"))
		require.Equal(t, []string{"session.status_idled whe_run_ok_idled"}, types())
		require.NoError(t, d.Deliver(ctx, "t1", "run_ok", url, run.WebhookRunRequiresAction, "run_ok:run.requires_action:7"))
		require.Equal(t, []string{"session.status_idled whe_run_ok_idled_run_ok_run.requires_action_7"}, types())
		require.NoError(t, d.Deliver(ctx, "t1", "run_budget", url, run.WebhookRunCompleted, "run_budget"))
		require.Equal(t, []string{"session.budget_reached whe_run_budget_budget_reached", "session.status_idled whe_run_budget_idled"}, types())
		require.NoError(t, d.Deliver(ctx, "t1", "sesn_1", url, WebhookStatusTerminated, "sesn_1:session.status_terminated:9"))
		require.Equal(t, []string{"session.status_terminated whe_sesn_1_status_terminated"}, types())

		// Not a session's run, or a deleted run: dropped.
		require.NoError(t, d.Deliver(ctx, "t1", "run_plain", url, run.WebhookRunCompleted, "run_plain"))
		require.NoError(t, d.Deliver(ctx, "t1", "run_gone", url, run.WebhookRunCompleted, "run_gone"))
		require.Empty(t, types())
		require.Empty(t, rh.got)
	}
	// A run's own webhook URL: agentd's run webhook.
	require.NoError(t, d.Deliver(ctx, "t1", "run_plain", "https://elsewhere.example/h", run.WebhookRunCompleted, "run_plain"))
	require.Equal(t, []string{"t1 run_plain https://elsewhere.example/h run.completed"}, rh.got)

	// A receiver that fails makes the queue retry.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer bad.Close()
	d.Webhooks = NewWebhookEndpoints(WebhookEndpoint{URL: bad.URL, Key: testWebhookKey}, nil)
	require.ErrorContains(t, d.Deliver(ctx, "t1", "run_ok", SessionWebhook, run.WebhookRunCompleted, "run_ok"), "500")
}

// Each tenant's session webhooks go to its endpoint, signed with its key
// (two tenants may share a URL, each with its key); a tenant without an
// entry uses the deployment's; a run's own webhook is never a session's.
func TestWebhookDelivererPerTenant(t *testing.T) {
	hookA, hookB, shared, def := newHookReceiver(t), newHookReceiver(t), newHookReceiver(t), newHookReceiver(t)
	st := &hookStore{runs: map[string]store.Run{}, sessions: map[string]store.ManagedSession{}}
	for _, tenant := range []string{"a", "b", "s1", "s2", "other", "quiet"} {
		st.runs["run_"+tenant] = store.Run{ID: "run_" + tenant, Tenant: tenant, ConversationID: "conv_" + tenant}
		st.sessions["conv_"+tenant] = store.ManagedSession{ID: "sesn_" + tenant, Tenant: tenant, ConversationID: "conv_" + tenant}
	}
	st.runs["run_a_own"] = store.Run{ID: "run_a_own", Tenant: "a", ConversationID: "conv_a"} // a /v1/runs run in a's session
	rh := &runHooks{}
	d := &WebhookDeliverer{Run: rh, Store: st, Webhooks: NewWebhookEndpoints(WebhookEndpoint{URL: def.URL, Key: testWebhookKey},
		map[string]WebhookEndpoint{
			"a":     {URL: hookA.URL, Key: testWebhookKeyA},
			"b":     {URL: hookB.URL, Key: testWebhookKeyB},
			"s1":    {URL: shared.URL, Key: testWebhookKeyA},
			"s2":    {URL: shared.URL, Key: testWebhookKeyB},
			"quiet": {},
		})}
	ctx := t.Context()
	deliver := func(tenant, id, url, event string) {
		t.Helper()
		require.NoError(t, d.Deliver(ctx, tenant, id, url, event, id))
	}
	wrongKey := func(h *hookReceiver, key string) {
		t.Helper()
		verifier := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithWebhookKey(key), option.WithAPIKey("x"))
		reqs := h.take()
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			_, err := verifier.Beta.Webhooks.Unwrap(r.body, r.header)
			require.Error(t, err, "signed with another tenant's key")
		}
	}

	for _, tenant := range []string{"a", "b", "s1", "s2", "other", "quiet"} {
		deliver(tenant, "run_"+tenant, SessionWebhook, run.WebhookRunCompleted)
		deliver(tenant, "sesn_"+tenant, SessionWebhook, WebhookStatusTerminated)
	}
	require.Equal(t, []string{"session.status_idled sesn_a a", "session.status_terminated sesn_a a"}, hookA.events(t, testWebhookKeyA))
	require.Equal(t, []string{"session.status_idled sesn_b b", "session.status_terminated sesn_b b"}, hookB.events(t, testWebhookKeyB))
	require.Equal(t, []string{"session.status_idled sesn_other other", "session.status_terminated sesn_other other"}, def.events(t, testWebhookKey))
	// One URL, two tenants: each tenant's events under its own key.
	got := shared.take()
	require.Len(t, got, 4)
	shared.reqs = got[:2]
	require.Equal(t, []string{"session.status_idled sesn_s1 s1", "session.status_terminated sesn_s1 s1"}, shared.events(t, testWebhookKeyA))
	shared.reqs = got[2:]
	require.Equal(t, []string{"session.status_idled sesn_s2 s2", "session.status_terminated sesn_s2 s2"}, shared.events(t, testWebhookKeyB))
	shared.reqs = got[2:]
	wrongKey(shared, testWebhookKeyA)
	deliver("a", "run_a", SessionWebhook, run.WebhookRunCompleted)
	wrongKey(hookA, testWebhookKeyB)
	require.Empty(t, rh.got, "quiet (an entry without a URL) sends nothing")

	// Jobs an earlier agentd queued with an endpoint's URL itself: the
	// session's, to its tenant's endpoint, whichever endpoint the job
	// names (never to another tenant's, nor as a run webhook); a /v1/runs
	// run that named an endpoint and is no session's: nothing.
	deliver("a", "run_a", hookA.URL, run.WebhookRunCompleted)
	deliver("a", "run_a", hookB.URL, run.WebhookRunCompleted)
	deliver("a", "run_a", def.URL, run.WebhookRunCompleted)
	require.Equal(t, []string{"session.status_idled sesn_a a", "session.status_idled sesn_a a", "session.status_idled sesn_a a"},
		hookA.events(t, testWebhookKeyA))
	deliver("s1", "run_s1", shared.URL, run.WebhookRunCompleted)
	require.Equal(t, []string{"session.status_idled sesn_s1 s1"}, shared.events(t, testWebhookKeyA))
	deliver("quiet", "run_quiet", def.URL, run.WebhookRunCompleted)
	st.runs["run_b_plain"] = store.Run{ID: "run_b_plain", Tenant: "b", ConversationID: "conv_none"}
	deliver("b", "run_b_plain", hookA.URL, run.WebhookRunCompleted)
	deliver("b", "run_b_plain", hookB.URL, run.WebhookRunCompleted)
	for _, h := range []*hookReceiver{hookA, hookB, def, shared} {
		require.Empty(t, h.take())
	}
	require.Empty(t, rh.got)

	// A run's own webhook (a /v1/runs client's URL), even a run in a
	// session's conversation: agentd's run webhook, not re-signed.
	deliver("a", "run_a_own", "https://client.example/h", run.WebhookRunCompleted)
	deliver("quiet", "run_quiet", "https://client.example/q", run.WebhookRunCompleted)
	require.Equal(t, []string{"a run_a_own https://client.example/h run.completed", "quiet run_quiet https://client.example/q run.completed"}, rh.got)
	require.Empty(t, hookA.take())

	// The configuration changed since the jobs were queued: they go to
	// the tenant's endpoint as it is now, with its key now (a queued
	// session.* event too, whatever URL it names); a tenant with none
	// now gets nothing.
	hookA2 := newHookReceiver(t)
	d.Webhooks = NewWebhookEndpoints(WebhookEndpoint{}, map[string]WebhookEndpoint{"a": {URL: hookA2.URL, Key: testWebhookKeyB}})
	deliver("a", "run_a", SessionWebhook, run.WebhookRunCompleted)
	deliver("a", "sesn_a", hookA.URL, WebhookStatusTerminated)
	deliver("b", "run_b", SessionWebhook, run.WebhookRunCompleted)
	deliver("other", "sesn_other", SessionWebhook, WebhookStatusTerminated)
	require.Equal(t, []string{"session.status_idled sesn_a a", "session.status_terminated sesn_a a"}, hookA2.events(t, testWebhookKeyB))
	for _, h := range []*hookReceiver{hookA, hookB, shared, def} {
		require.Empty(t, h.take())
	}
	// A URL that is no endpoint any more is a run's own webhook again:
	// so a job an earlier agentd queued with it (before SessionWebhook)
	// goes out as a run webhook, which the receiver does not verify.
	deliver("b", "run_b", hookB.URL, run.WebhookRunCompleted)
	require.Equal(t, "b run_b "+hookB.URL+" run.completed", rh.got[len(rh.got)-1])

	// No endpoints at all: session jobs are dropped, runs' go out.
	d.Webhooks = nil
	rh.got = nil
	deliver("a", "run_a", SessionWebhook, run.WebhookRunCompleted)
	deliver("a", "sesn_a", SessionWebhook, WebhookStatusTerminated)
	deliver("a", "run_a_own", "https://client.example/h", run.WebhookRunCompleted)
	require.Equal(t, []string{"a run_a_own https://client.example/h run.completed"}, rh.got)
	require.Empty(t, hookA2.take())
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("webhook does not verify: %v", err)
		return false
	}
	return true
}
