package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// Webhook endpoints per tenant (managed.tenants), through the SDK: each
// tenant's sessions' webhooks reach its own endpoint only, signed with its
// own key (each receiver verifies them with client.Beta.Webhooks.Unwrap
// under its tenant's key and fails the test on anything else, another
// tenant's events included); the top-level endpoint, which both tenants'
// entries replace, gets nothing. A /v1/runs client naming another tenant's
// endpoint as its run's webhook gets nothing delivered there; its own
// webhook URL gets agentd's run webhook, not a session event.
func TestManagedSessionWebhooksPerTenantSDK(t *testing.T) {
	const (
		keyT1 = "whsec_YS1zaWduaW5nLWtleS1vZi10ZW5hbnQtYQ=="
		keyT2 = "whsec_Yi1zaWduaW5nLWtleS1vZi10ZW5hbnQtYg=="
	)
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		hook1, hook2 := newTenantHookSink(t, keyT1, "t1"), newTenantHookSink(t, keyT2, "t2")
		nobody := newTenantHookSink(t, webhookKey, "nobody") // every event fails the test
		own := make(chan http.Header, 10)
		ownSrv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			own <- r.Header.Clone()
		}))
		t.Cleanup(ownSrv.Close)
		b := startManagedWith(t, backend, eventAgents+fmt.Sprintf(`managed:
  webhook_url: %q
  webhook_signing_key: %q
  tenants:
    t1: {webhook_url: %q, webhook_signing_key: %q}
    t2: {webhook_url: %q, webhook_signing_key: %q}
`, nobody.URL, webhookKey, hook1.URL, keyT1, hook2.URL, keyT2))
		ctx := t.Context()
		do := rawDo(b)
		submit := func(webhook string) string {
			t.Helper()
			resp, err := do(ctx, http.MethodPost, "/v1/runs", `{"agent":"demo","message":"hello there","webhook":"`+webhook+`"}`)
			require.NoError(t, err)
			defer resp.Body.Close()
			var r struct {
				ID string `json:"id"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
			require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, resp.StatusCode)
			return r.ID
		}

		// First (so its webhook job is long done when the test ends): a
		// run of t1 naming t2's endpoint. It succeeds; hook2 gets none of
		// it.
		stray := submit(hook2.URL)
		require.Eventually(t, func() bool {
			resp, err := do(ctx, http.MethodGet, "/v1/runs/"+stray, "")
			require.NoError(t, err)
			defer resp.Body.Close()
			var r struct {
				Status string `json:"status"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
			return r.Status == "succeeded"
		}, 30*time.Second, 50*time.Millisecond)

		// Each tenant's session: its turn's session.status_idled and its
		// archive's session.status_terminated, at its own endpoint.
		demo := anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}
		for _, tc := range []struct {
			c    anthropic.Client
			hook *hookSink
		}{{b.Client, hook1}, {b.Other, hook2}} {
			env, err := tc.c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
			require.NoError(t, err)
			sess, err := tc.c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID})
			require.NoError(t, err)
			_, err = tc.c.Beta.Sessions.Events.Send(ctx, sess.ID, say("hello there"))
			require.NoError(t, err)
			require.Equal(t, "session.status_idled", string(tc.hook.next(t, sess.ID).Data.Type))
			_, err = tc.c.Beta.Sessions.Archive(ctx, sess.ID, anthropic.BetaSessionArchiveParams{})
			require.NoError(t, err)
			require.Equal(t, "session.status_terminated", string(tc.hook.next(t, sess.ID).Data.Type))
		}

		// A run's own webhook: agentd's run webhook, as without sessions.
		id := submit(ownSrv.URL + "/mine")
		select {
		case h := <-own:
			require.Equal(t, id, h.Get("X-Agentd-Run-ID"))
			require.Equal(t, "run.completed", h.Get("X-Agentd-Event"))
			require.NotEmpty(t, h.Get("X-Agentd-Signature"))
			require.Empty(t, h.Get("webhook-signature"), "not signed as a session's")
		case <-time.After(30 * time.Second):
			t.Fatal("no run webhook within 30s")
		}
		for _, h := range []*hookSink{hook1, hook2, nobody} {
			require.Empty(t, h.events, "no other webhooks")
		}
	})
}
