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

const testWebhookKey = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA=="

type hookStore struct {
	runs     map[string]store.Run
	sessions map[string]store.ManagedSession // by conversation
}

func (h *hookStore) GetRun(_ context.Context, _, id string) (store.Run, error) {
	r, ok := h.runs[id]
	if !ok {
		return r, store.ErrNotFound
	}
	return r, nil
}

func (h *hookStore) GetManagedSessionByConversation(_ context.Context, _, conv string) (store.ManagedSession, error) {
	ms, ok := h.sessions[conv]
	if !ok {
		return ms, store.ErrNotFound
	}
	return ms, nil
}

type runHooks struct{ got []string }

func (r *runHooks) Deliver(_ context.Context, _, runID, url, event, _ string) error {
	r.got = append(r.got, runID+" "+url+" "+event)
	return nil
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
			"run_ok":     {ID: "run_ok", ConversationID: "conv_1"},
			"run_budget": {ID: "run_budget", ConversationID: "conv_1", Error: "budget_exceeded: the run's max_cost_usd ..."},
			"run_plain":  {ID: "run_plain", ConversationID: "conv_9"},
		},
		sessions: map[string]store.ManagedSession{"conv_1": {ID: "sesn_1", Tenant: "t1", ConversationID: "conv_1"}},
	}
	rh := &runHooks{}
	d := &WebhookDeliverer{Run: rh, Store: st, URL: srv.URL, Key: testWebhookKey}
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

	require.NoError(t, d.Deliver(ctx, "t1", "run_ok", srv.URL, run.WebhookRunCompleted, "run_ok"))
	require.Equal(t, []string{"session.status_idled whe_run_ok_idled"}, types())
	require.NoError(t, d.Deliver(ctx, "t1", "run_ok", srv.URL, run.WebhookRunRequiresAction, "run_ok:run.requires_action:7"))
	require.Equal(t, []string{"session.status_idled whe_run_ok_idled_run_ok_run.requires_action_7"}, types())
	require.NoError(t, d.Deliver(ctx, "t1", "run_budget", srv.URL, run.WebhookRunCompleted, "run_budget"))
	require.Equal(t, []string{"session.budget_reached whe_run_budget_budget_reached", "session.status_idled whe_run_budget_idled"}, types())
	require.NoError(t, d.Deliver(ctx, "t1", "sesn_1", srv.URL, WebhookStatusTerminated, "sesn_1:session.status_terminated:9"))
	require.Equal(t, []string{"session.status_terminated whe_sesn_1_status_terminated"}, types())

	// Not a session's run on the sessions' URL, or a deleted run: dropped.
	require.NoError(t, d.Deliver(ctx, "t1", "run_plain", srv.URL, run.WebhookRunCompleted, "run_plain"))
	require.NoError(t, d.Deliver(ctx, "t1", "run_gone", srv.URL, run.WebhookRunCompleted, "run_gone"))
	require.Empty(t, types())
	require.Empty(t, rh.got)
	// A run's own webhook URL: agentd's run webhook.
	require.NoError(t, d.Deliver(ctx, "t1", "run_plain", "https://elsewhere.example/h", run.WebhookRunCompleted, "run_plain"))
	require.Equal(t, []string{"run_plain https://elsewhere.example/h run.completed"}, rh.got)

	// A receiver that fails makes the queue retry.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer bad.Close()
	d.URL = bad.URL
	require.ErrorContains(t, d.Deliver(ctx, "t1", "run_ok", bad.URL, run.WebhookRunCompleted, "run_ok"), "500")
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("webhook does not verify: %v", err)
		return false
	}
	return true
}
