package server_test

// Client authentication (API keys) and tenant isolation.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// testAuth is the authenticator of a test server: nil unless on.
func testAuth(on bool, st store.APIKeys) *auth.Authenticator {
	if !on {
		return nil
	}
	return &auth.Authenticator{Keys: st}
}

func withAuth() bundleOption { return func(b *bundleConfig) { b.auth = true } }

func withRunsAuth() runsOption { return func(r *runsConfig) { r.auth = true } }

// testKey is a key created in a test's store.
type testKey struct {
	Token, Prefix, ID, Tenant string
}

func (k testKey) bearer() map[string]string {
	return map[string]string{"Authorization": "Bearer " + k.Token}
}

func newTestKey(t *testing.T, st store.APIKeys, tenant string, scopes ...string) testKey {
	t.Helper()
	k, err := auth.NewKey()
	require.NoError(t, err)
	require.NoError(t, st.CreateAPIKey(t.Context(), store.APIKey{ID: k.ID, Prefix: k.Prefix, Hash: k.Hash,
		Tenant: tenant, Scopes: scopes, Name: "test"}))
	return testKey{Token: k.Token, Prefix: k.Prefix, ID: k.ID, Tenant: tenant}
}

func requireUnauthorized(t *testing.T, resp response) {
	t.Helper()
	requireError(t, resp, http.StatusUnauthorized, "unauthorized")
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
}

func TestAuthKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth())
	chat := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	runsOnly := newTestKey(t, b.Store, "acme", auth.ScopeRuns)
	admin := newTestKey(t, b.Store, "acme", auth.ScopeAdmin)

	t.Run("Missing", func(t *testing.T) {
		requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/agents", "", nil))
		requireUnauthorized(t, b.postChat(t, map[string]any{"agent": demoAgent, "message": "hi"}))
		requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/conversations/conv_x", "", nil))
		requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/nope", "", nil))
	})
	t.Run("Invalid", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"Authorization": "Bearer agd_" + strings.Repeat("a", 52)},
			{"Authorization": "Bearer " + chat.Token + "x"},
			{"Authorization": "Bearer not-a-key"},
			{"Authorization": "Basic " + chat.Token},
			{"x-api-key": "agd_wrong"},
		} {
			requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/agents", "", h))
		}
	})
	t.Run("Valid", func(t *testing.T) {
		resp := b.do(t, http.MethodGet, "/v1/agents", "", chat.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		resp = b.do(t, http.MethodGet, "/v1/agents", "", map[string]string{"x-api-key": chat.Token})
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		resp = b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), chat.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		var a answer
		require.NoError(t, json.Unmarshal(resp.Body, &a))
		conv, err := b.Store.GetConversation(t.Context(), "acme", a.ConversationID)
		require.NoError(t, err, "the conversation belongs to the key's tenant")
		require.Equal(t, "acme", conv.Tenant)
	})
	t.Run("WrongScope", func(t *testing.T) {
		resp := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), runsOnly.bearer())
		requireError(t, resp, http.StatusForbidden, "forbidden")
		// admin grants every scope.
		resp = b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), admin.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	})
	t.Run("OpenPaths", func(t *testing.T) {
		for _, p := range []string{"/livez", "/readyz", "/healthz", "/metrics"} {
			resp := b.do(t, http.MethodGet, p, "", nil)
			require.NotEqual(t, http.StatusUnauthorized, resp.Status, p)
			require.NotEqual(t, http.StatusForbidden, resp.Status, p)
		}
	})
	t.Run("Admin", func(t *testing.T) {
		// Without an admin token the process-wide admin API does not
		// exist, whatever key a tenant holds.
		require.Equal(t, http.StatusNotFound, b.do(t, http.MethodGet, "/admin/keys", "", nil).Status)
		require.Equal(t, http.StatusNotFound, b.do(t, http.MethodGet, "/admin/keys", "", admin.bearer()).Status)
		require.Equal(t, http.StatusNotFound, b.do(t, http.MethodPost, "/admin/drain", "", admin.bearer()).Status)
	})
	t.Run("RevokedAtOnce", func(t *testing.T) {
		k := newTestKey(t, b.Store, "acme", auth.ScopeChat)
		require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", k.bearer()).Status)
		_, err := b.Store.RevokeAPIKey(t.Context(), k.Prefix, time.Time{})
		require.NoError(t, err)
		requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/agents", "", k.bearer()))
	})
}

// TestAuthOff: without an authenticator everything is the default tenant.
func TestAuthOff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hi"})
	_, err := b.Store.GetConversation(t.Context(), "default", a.ConversationID)
	require.NoError(t, err)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// TestAuthLogsNeverContainKey: request logs name the tenant and the key's
// display prefix, never the key (nor its hash).
func TestAuthLogsNeverContainKey(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log, err := observe.NewLogger(&buf, "json", "debug")
	require.NoError(t, err)
	b := setup(t, withAuth(), func(c *bundleConfig) { c.log = log })
	k := newTestKey(t, b.Store, "acme", auth.ScopeChat)

	resp := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), k.bearer())
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	resp = b.do(t, http.MethodGet, "/v1/conversations/conv_missing", "", map[string]string{"x-api-key": k.Token})
	require.Equal(t, http.StatusNotFound, resp.Status)
	bad := "agd_" + strings.Repeat("z", 52)
	requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/agents", "", map[string]string{"Authorization": "Bearer " + bad}))
	_, err = b.Store.RevokeAPIKey(t.Context(), k.ID, time.Time{})
	require.NoError(t, err)
	requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/agents", "", k.bearer()))

	logs := buf.String()
	require.Contains(t, logs, `"tenant":"acme"`)
	require.Contains(t, logs, `"key_prefix":"`+k.Prefix+`"`)
	secret := strings.TrimPrefix(k.Token, k.Prefix)
	for _, s := range []string{k.Token, secret, auth.Hash(k.Token), bad, strings.TrimPrefix(bad, "agd_")} {
		require.NotContains(t, logs, s)
	}
}

// TestTenantIsolation: another tenant's conversation, run, events and
// audit answer 404 (never 403, never the data) on every endpoint.
func TestTenantIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withRunsAuth())
		keys := b.St.(store.APIKeys)
		a := newTestKey(t, keys, "acme", auth.ScopeChat, auth.ScopeRuns)
		other := newTestKey(t, keys, "globex", auth.ScopeChat, auth.ScopeRuns)
		b.headers = a.bearer() // the helpers act as acme

		chat := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})
		rn := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "a run"})
		b.waitRun(t, rn.ID, "succeeded")
		require.NoError(t, b.St.(store.Audit).AppendAudit(t.Context(), store.AuditEntry{
			Tenant: "acme", Agent: demoAgent, RunID: rn.ID, Step: 1, ToolUseID: "toolu_1", Tool: "kv_put",
			Phase: store.AuditCall, IdempotencyKey: rn.ID + ":1:toolu_1", Outcome: "started",
		}))

		h := other.bearer()
		notFound := func(resp response) {
			t.Helper()
			requireError(t, resp, http.StatusNotFound, "not_found")
			require.NotContains(t, string(resp.Body), "hello")
			require.NotContains(t, string(resp.Body), "a run")
		}
		notFound(b.do(t, http.MethodGet, "/v1/conversations/"+chat.ConversationID, "", h))
		notFound(b.do(t, http.MethodDelete, "/v1/conversations/"+chat.ConversationID, "", h))
		notFound(b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{
			"agent": demoAgent, "conversation_id": chat.ConversationID, "message": "let me in"}), h))
		notFound(b.do(t, http.MethodPost, "/v1/runs", mustJSON(t, map[string]any{
			"agent": demoAgent, "conversation_id": chat.ConversationID, "message": "let me in"}), h))
		notFound(b.do(t, http.MethodGet, "/v1/runs/"+rn.ID, "", h))
		notFound(b.do(t, http.MethodGet, "/v1/runs/"+rn.ID+"/events", "", h))
		notFound(b.do(t, http.MethodPost, "/v1/runs/"+rn.ID+"/cancel", "", h))

		// Listing shows only one's own runs.
		resp := b.do(t, http.MethodGet, "/v1/runs", "", h)
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		var page runsPage
		require.NoError(t, json.Unmarshal(resp.Body, &page))
		require.Empty(t, page.Runs)
		require.Contains(t, runIDs(b.listRuns(t, "").Runs), rn.ID)

		// The audit of another tenant's run is empty, as for an unknown run.
		var audit struct {
			Entries []json.RawMessage `json:"entries"`
		}
		resp = b.do(t, http.MethodGet, "/v1/audit?run_id="+rn.ID, "", h)
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		require.NoError(t, json.Unmarshal(resp.Body, &audit))
		require.Empty(t, audit.Entries)
		resp = b.do(t, http.MethodGet, "/v1/audit?run_id="+rn.ID, "", nil)
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		require.NoError(t, json.Unmarshal(resp.Body, &audit))
		require.Len(t, audit.Entries, 1)

		// Nothing of acme's was touched: the conversation is still there,
		// the run not canceled.
		c := b.getConversation(t, chat.ConversationID)
		require.NotEmpty(t, c.Messages)
		require.Equal(t, "succeeded", b.getRun(t, rn.ID).Status)
	})
}
