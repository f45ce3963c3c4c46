package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/console"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeCanceler records cancellations (the store's RequestCancel does the
// work in the app; here only the console's part is under test).
type fakeCanceler struct {
	st       *sqlite.Store
	canceled []string
}

func (f *fakeCanceler) Cancel(ctx context.Context, tenant, id string) (store.Run, error) {
	f.canceled = append(f.canceled, tenant+"/"+id)
	return f.st.RequestCancel(ctx, tenant, id, time.Now())
}

// storeDecider decides with the store's transaction and no queue (the app
// uses run.Runs, which also enqueues the run; here only the console's part
// is under test).
type storeDecider struct{ st *sqlite.Store }

func (d storeDecider) Decide(ctx context.Context, p run.DecideParams) (store.Approval, store.Run, error) {
	return d.st.DecideApprovalTx(ctx, store.DecideApprovalParams{Tenant: p.Tenant, RunID: p.RunID, ToolUseID: p.ToolUseID,
		Decision: p.Decision, Reason: p.Reason, DecidedBy: p.DecidedBy}, nil)
}

type testBundle struct {
	st     *sqlite.Store
	srv    *httptest.Server
	clock  *clock
	cancel *fakeCanceler
	admin  string // an admin key of tenant ops
	acme   string // a runs key of tenant acme
}

func setup(t *testing.T, authOn bool) *testBundle {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	b := &testBundle{st: st, clock: &clock{t: time.Now()}, cancel: &fakeCanceler{st: st}}
	cfg := console.Config{Store: st, Runs: b.cancel, Approvals: storeDecider{st: st}, Now: b.clock.Now, SessionTTL: time.Hour,
		Redactor: observe.NewRedactor("s3cret-tool-token"),
		Health:   func() server.HealthReport { return server.HealthReport{Status: "ok", Ready: true, Version: "test"} }}
	if authOn {
		cfg.Auth = &auth.Authenticator{Keys: st}
		k, err := auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "ops", Scopes: []string{auth.ScopeAdmin}})
		require.NoError(t, err)
		b.admin = k.Token
		k, err = auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "acme", Scopes: []string{auth.ScopeRuns}})
		require.NoError(t, err)
		b.acme = k.Token
	}
	c, err := console.New(cfg)
	require.NoError(t, err)
	b.srv = httptest.NewServer(c)
	t.Cleanup(b.srv.Close)
	return b
}

// client is a browser-like client: a cookie jar, no redirects followed.
func (b *testBundle) client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	require.NotNil(t, m, "no CSRF field in the page")
	return m[1]
}

// login logs c in with key and returns a page's CSRF token.
func (b *testBundle) login(t *testing.T, c *http.Client, key string) string {
	t.Helper()
	_, body := get(t, c, b.srv.URL+"/console/login?next=/console/runs")
	resp, _ := post(t, c, b.srv.URL+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "key": {key}, "next": {"/console/runs"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/runs", resp.Header.Get("Location"))
	resp, body = get(t, c, b.srv.URL+"/console/runs")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return csrfOf(t, body)
}

func (b *testBundle) run(t *testing.T, tenant string, status store.RunStatus) store.Run {
	t.Helper()
	id := "run_" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "") + tenant
	r := store.Run{ID: id, Tenant: tenant, Agent: "demo", Status: status, Input: []byte(`{"message":"hi"}`), CreatedAt: time.Now()}
	require.NoError(t, b.st.CreateRun(t.Context(), r))
	return r
}

func TestUnknownRunIs404Page(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	b.login(t, c, b.admin)
	resp, body := get(t, c, b.srv.URL+"/console/runs/run_does_not_exist")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	require.Contains(t, body, "No run with that id")
	// An unknown page is a 404 page too.
	resp, _ = get(t, c, b.srv.URL+"/console/nothing-here")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestStateChangeWithoutCSRFIs403(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	csrf := b.login(t, c, b.admin)
	r := b.run(t, "ops", store.RunQueued)
	for _, tok := range []string{"", "wrong-token"} {
		resp, body := post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/cancel", url.Values{"csrf": {tok}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "token %q", tok)
		require.Contains(t, body, "CSRF")
		resp, _ = post(t, c, b.srv.URL+"/console/keys", url.Values{"csrf": {tok}, "tenant": {"x"}, "scope": {"runs"}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, _ = post(t, c, b.srv.URL+"/console/logout", url.Values{"csrf": {tok}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	}
	require.Empty(t, b.cancel.canceled)
	keys, err := b.st.ListAPIKeys(t.Context(), "x")
	require.NoError(t, err)
	require.Empty(t, keys)
	// The login form needs its token too.
	resp, _ := post(t, b.client(t), b.srv.URL+"/console/login", url.Values{"key": {b.admin}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	// With the token the cancel goes through.
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/cancel", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, []string{"ops/" + r.ID}, b.cancel.canceled)
	got, err := b.st.GetRun(t.Context(), "ops", r.ID)
	require.NoError(t, err)
	require.Equal(t, store.RunCanceled, got.Status)
}

func TestExpiredSessionGoesToLogin(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	b.login(t, c, b.admin)
	b.clock.Add(59 * time.Minute)
	resp, _ := get(t, c, b.srv.URL+"/console/runs")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b.clock.Add(2 * time.Minute) // past the hour
	resp, _ = get(t, c, b.srv.URL+"/console/runs?status=failed")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/login?next="+url.QueryEscape("/console/runs?status=failed"), resp.Header.Get("Location"))
	// No session at all: the same.
	resp, _ = get(t, b.client(t), b.srv.URL+"/console")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/console/login"))
}

func TestLogoutAndRevokedKeyEndTheSession(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	csrf := b.login(t, c, b.admin)
	resp, _ := post(t, c, b.srv.URL+"/console/logout", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = get(t, c, b.srv.URL+"/console/runs")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	c2 := b.client(t)
	b.login(t, c2, b.acme)
	_, err := auth.RevokeKey(t.Context(), b.st, auth.DisplayPrefix(b.acme))
	require.NoError(t, err)
	resp, _ = get(t, c2, b.srv.URL+"/console/runs")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "a revoked key's session ends with its next page")
}

func TestBadKeyIsRefusedAtLogin(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	_, body := get(t, c, b.srv.URL+"/console/login")
	resp, body := post(t, c, b.srv.URL+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "key": {"agd_notarealkey"}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "unknown, malformed or revoked")
	require.NotContains(t, body, "agd_notarealkey", "the key typed is not echoed")
}

func TestTenantKeySeesItsTenantOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	mine, theirs := b.run(t, "acme", store.RunSucceeded), b.run(t, "ops", store.RunSucceeded)
	c := b.client(t)
	b.login(t, c, b.acme)
	resp, body := get(t, c, b.srv.URL+"/console/runs")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, mine.ID)
	require.NotContains(t, body, theirs.ID)
	// Asking for another tenant changes nothing.
	_, body = get(t, c, b.srv.URL+"/console/runs?tenant=ops")
	require.NotContains(t, body, theirs.ID)
	resp, _ = get(t, c, b.srv.URL+"/console/runs/"+theirs.ID)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get(t, c, b.srv.URL+"/console/runs/"+theirs.ID+"/events")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get(t, c, b.srv.URL+"/console/keys")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	// The admin sees both.
	a := b.client(t)
	b.login(t, a, b.admin)
	_, body = get(t, a, b.srv.URL+"/console/runs")
	require.Contains(t, body, mine.ID)
	require.Contains(t, body, theirs.ID)
	resp, _ = get(t, a, b.srv.URL+"/console/runs/"+mine.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	b.login(t, c, b.admin)
	for _, p := range []string{"/console", "/console/runs", "/console/runs/nope", "/console/keys", "/console/usage",
		"/console/audit", "/console/login", "/console/static/console.js", "/console/nothing"} {
		resp, body := get(t, c, b.srv.URL+p)
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'", p)
		require.NotContains(t, csp, "unsafe-inline", p)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), p)
		require.NotContains(t, body, "<script>", "no inline script on %s", p)
	}
	// The session cookie's attributes.
	_, body := get(t, b.client(t), b.srv.URL+"/console/login")
	c2 := b.client(t)
	_, body = get(t, c2, b.srv.URL+"/console/login")
	resp, _ := post(t, c2, b.srv.URL+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "key": {b.admin}})
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "agentd_console" && k.Value != "" {
			ck = k
		}
	}
	require.NotNil(t, ck)
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.False(t, ck.Secure, "plain HTTP: not Secure (it would never be sent back)")
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/console/login", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.True(t, resp.Cookies()[0].Secure, "behind TLS the cookies are Secure")
}

func TestKeySecretShownOnceAndNeverAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	c := b.client(t)
	csrf := b.login(t, c, b.admin)
	resp, body := post(t, c, b.srv.URL+"/console/keys", url.Values{"csrf": {csrf}, "tenant": {"newco"}, "name": {"ci"}, "scope": {"runs", "chat"}})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	tok := regexp.MustCompile(`agd_[a-z2-7]{52}`).FindString(body)
	require.NotEmpty(t, tok, "the new key is shown")
	p, err := (&auth.Authenticator{Keys: b.st}).Authenticate(t.Context(), tok)
	require.NoError(t, err)
	require.Equal(t, "newco", p.Tenant)
	for _, page := range []string{"/console/keys", "/console", "/console/runs", "/console/usage"} {
		_, body = get(t, c, b.srv.URL+page)
		require.NotContains(t, body, tok, page)
		require.NotContains(t, body, b.admin, page)
		require.NotContains(t, body, auth.Hash(b.admin), page)
	}
	// Bad input: an invalid tenant is refused with the form again.
	resp, body = post(t, c, b.srv.URL+"/console/keys", url.Values{"csrf": {csrf}, "tenant": {"-bad"}, "scope": {"runs"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "Tenant:")
}

func TestAuthOffOpensWithBanner(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	c := b.client(t)
	resp, body := get(t, c, b.srv.URL+"/console")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Authentication off")
	r := b.run(t, server.DefaultTenant, store.RunRunning)
	resp, body = get(t, c, b.srv.URL+"/console/runs/"+r.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// State changes still need the token.
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/cancel", nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/cancel", url.Values{"csrf": {csrfOf(t, body)}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

func TestToolCallsAreRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	r := b.run(t, server.DefaultTenant, store.RunSucceeded)
	evs := []store.Event{
		{RunID: r.ID, Seq: 1, Type: "start", Data: []byte(`{"agent":"demo","model":"m","run_id":"x","conversation_id":""}`)},
		{RunID: r.ID, Seq: 2, Type: "tool_use", Data: []byte(`{"id":"tu1","name":"lookup","step":1,"input":{"q":"use s3cret-tool-token please","auth":"Bearer abcdefghijkl"}}`)},
		{RunID: r.ID, Seq: 3, Type: "tool_result", Data: []byte(`{"tool_use_id":"tu1","name":"lookup","step":1,"content":"echo s3cret-tool-token","duration_ms":12,"is_error":false}`)},
		{RunID: r.ID, Seq: 4, Type: "usage", Data: []byte(`{"model":"claude-x","step":1,"input_tokens":1200,"output_tokens":34,"cost_usd":0.0042,"stop_reason":"tool_use"}`)},
	}
	require.NoError(t, b.st.SaveStep(t.Context(), nil, evs))
	resp, body := get(t, b.client(t), b.srv.URL+"/console/runs/"+r.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, body, "s3cret-tool-token")
	require.NotContains(t, body, "abcdefghijkl")
	require.Contains(t, body, "[redacted]")
	require.Contains(t, body, "claude-x")
	require.Contains(t, body, "1,200")
	require.Contains(t, body, "$0.0042")
}

func TestConversationTranscriptAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	ctx := t.Context()
	conv, err := b.st.CreateConversation(ctx, store.CreateConversationParams{ID: "conv_1", Tenant: "acme", Agent: "demo",
		ExpiresAt: time.Now().Add(24 * time.Hour)})
	require.NoError(t, err)
	_, err = b.st.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: conv.ID, Tenant: "acme", Messages: []store.Message{
		{Role: "user", Content: []byte(`[{"type":"text","text":"what is the weather?"}]`)},
		{Role: "assistant", Content: []byte(`[{"type":"tool_use","id":"tu_1","name":"weather","input":{"city":"Paris","key":"s3cret-tool-token"}}]`)},
		{Role: "user", Content: []byte(`[{"type":"tool_result","tool_use_id":"tu_1","content":[{"type":"text","text":"sunny, 21C"}]}]`)},
		{Role: "assistant", Content: []byte(`[{"type":"text","text":"It is sunny."}]`)},
	}})
	require.NoError(t, err)

	c := b.client(t)
	b.login(t, c, b.acme)
	resp, body := get(t, c, b.srv.URL+"/console/conversations/conv_1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{"what is the weather?", "weather", "Paris", "sunny, 21C", "It is sunny.", "tool_result for tu_1"} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, "s3cret-tool-token")
	csrf := csrfOf(t, body)

	// Another tenant cannot see it (an admin names the tenant).
	a := b.client(t)
	b.login(t, a, b.admin)
	resp, _ = get(t, a, b.srv.URL+"/console/conversations/conv_1")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get(t, a, b.srv.URL+"/console/conversations/conv_1?tenant=acme")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, _ = post(t, c, b.srv.URL+"/console/conversations/conv_1/delete", url.Values{})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/console/conversations/conv_1/delete", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, body = get(t, c, b.srv.URL+resp.Header.Get("Location"))
	require.Contains(t, body, "Conversation conv_1 deleted.", "the flash, once")
	_, body = get(t, c, b.srv.URL+"/console/runs")
	require.NotContains(t, body, "deleted.")
	_, err = b.st.GetConversation(ctx, "acme", "conv_1")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestUsageByTenantAndBudgets(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	now := time.Now()
	for _, r := range []store.UsageRecord{
		{Time: now, Tenant: "acme", Agent: "demo", Model: "claude-a", InputTokens: 100, OutputTokens: 10, CostUSD: 2_000_000_000},
		{Time: now, Tenant: "acme", Agent: "other", Model: "claude-b", InputTokens: 50, OutputTokens: 5, CostUSD: 1_000_000_000},
		{Time: now, Tenant: "globex", Agent: "demo", Model: "claude-a", InputTokens: 7, OutputTokens: 1, CostUSD: 500_000_000},
	} {
		require.NoError(t, st.AppendUsage(t.Context(), r))
	}
	k, err := auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "globex", Scopes: []string{auth.ScopeChat}})
	require.NoError(t, err)
	_, err = auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "acme", Scopes: []string{auth.ScopeChat}})
	require.NoError(t, err)
	admin, err := auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "ops", Scopes: []string{auth.ScopeAdmin}})
	require.NoError(t, err)
	c, err := console.New(console.Config{Store: st, Auth: &auth.Authenticator{Keys: st},
		Budgets: func(tenant string) (float64, float64) {
			if tenant == "acme" {
				return 4, 0 // $3 of $4 today
			}
			return 0, 0
		}})
	require.NoError(t, err)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	b := &testBundle{srv: srv}

	cl := b.client(t)
	b.login(t, cl, admin.Token)
	_, body := get(t, cl, srv.URL+"/console/usage?by=tenant")
	require.Regexp(t, `<td>acme</td><td class="n">2</td><td class="n">150</td>`, body)
	require.Regexp(t, `<td>globex</td><td class="n">1</td><td class="n">7</td>`, body)
	require.Contains(t, body, "$3.5", "the total")
	require.Regexp(t, `<td>acme</td><td>day</td><td class="n">\$4.0000</td><td class="n">\$3.0000</td>`, body)
	require.Contains(t, body, "75%")
	_, body = get(t, cl, srv.URL+"/console/usage?by=model&tenant=acme")
	require.Contains(t, body, "claude-b")
	resp, _ := get(t, cl, srv.URL+"/console/usage?by=nonsense")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// A tenant key sees its own usage only.
	g := b.client(t)
	b.login(t, g, k.Token)
	_, body = get(t, g, srv.URL+"/console/usage?by=model&tenant=acme")
	require.NotContains(t, body, "claude-b")
	require.Contains(t, body, "claude-a")
	require.Contains(t, body, "$0.5")
}

// A session cookie is signed: every instance with the same session secret
// accepts it (the cluster tier behind one address), one with another
// secret does not, and a cookie changed in any part is refused.
func TestSessionsAcrossInstances(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	admin, err := auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "ops", Scopes: []string{auth.ScopeAdmin}})
	require.NoError(t, err)
	instance := func(secret string) *testBundle {
		c, err := console.New(console.Config{Store: st, Auth: &auth.Authenticator{Keys: st}, SessionSecret: []byte(secret)})
		require.NoError(t, err)
		srv := httptest.NewServer(c)
		t.Cleanup(srv.Close)
		return &testBundle{srv: srv}
	}
	const secret = "0123456789abcdef0123456789abcdef"
	a, b, other := instance(secret), instance(secret), instance("another-secret-another-secret-xx")
	c := a.client(t)
	csrfA := a.login(t, c, admin.Token)
	var value string
	for _, ck := range c.Jar.Cookies(mustURL(t, a.srv.URL+"/console")) {
		if ck.Name == "agentd_console" {
			value = ck.Value
		}
	}
	require.NotEmpty(t, value)
	require.NotContains(t, value, admin.Token)
	require.NotContains(t, value, auth.DisplayPrefix(admin.Token))

	withCookie := func(bundle *testBundle, v string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, bundle.srv.URL+"/console/runs", nil)
		require.NoError(t, err)
		req.AddCookie(&http.Cookie{Name: "agentd_console", Value: v})
		resp, err := http.DefaultTransport.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := withCookie(b, value)
	require.Equal(t, http.StatusOK, code, "the other instance accepts the session")
	require.Equal(t, csrfA, csrfOf(t, body), "with the same CSRF token")
	code, _ = withCookie(other, value)
	require.Equal(t, http.StatusSeeOther, code, "an instance with another secret does not")
	for i := range value {
		if value[i] == '.' {
			continue
		}
		forged := value[:i] + string(rune('A'+(value[i]+1)%26)) + value[i+1:]
		if forged == value {
			continue
		}
		code, _ = withCookie(b, forged)
		require.Equal(t, http.StatusSeeOther, code, "changed at %d", i)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// consoleStore opens an empty, migrated store of backend ("sqlite", or
// "postgres" in an isolated schema).
func consoleStore(t *testing.T, backend string) console.Store {
	t.Helper()
	if backend == "postgres" {
		st, err := postgres.Open(t.Context(), pgtest.Schema(t, pgtest.BaseURL(t), 4))
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		require.NoError(t, st.Migrate(t.Context()))
		return st
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	return st
}

// The audit page: the newest rows first, every tenant's for an admin,
// paged with a cursor; a tenant key sees its own rows; inputs redacted.
func TestAuditPage(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			st := consoleStore(t, backend)
			ctx := t.Context()
			for i := range 60 {
				tenant := "acme"
				if i%3 == 0 {
					tenant = "globex"
				}
				require.NoError(t, st.AppendAudit(ctx, store.AuditEntry{Tenant: tenant, Agent: "demo", RunID: fmt.Sprintf("run_%02d", i),
					Step: 1, ToolUseID: "tu", Tool: fmt.Sprintf("tool_%02d", i), Phase: store.AuditCall, Outcome: "started",
					Input: []byte(`{"token":"s3cret-tool-token"}`)}))
			}
			admin, err := auth.CreateKey(ctx, st, auth.CreateParams{Tenant: "ops", Scopes: []string{auth.ScopeAdmin}})
			require.NoError(t, err)
			acme, err := auth.CreateKey(ctx, st, auth.CreateParams{Tenant: "acme", Scopes: []string{auth.ScopeRuns}})
			require.NoError(t, err)
			c, err := console.New(console.Config{Store: st, Auth: &auth.Authenticator{Keys: st}, Redactor: observe.NewRedactor("s3cret-tool-token")})
			require.NoError(t, err)
			srv := httptest.NewServer(c)
			t.Cleanup(srv.Close)
			b := &testBundle{srv: srv}

			a := b.client(t)
			b.login(t, a, admin.Token)
			_, body := get(t, a, srv.URL+"/console/audit")
			require.Contains(t, body, "tool_59")
			require.Contains(t, body, "tool_10")
			require.NotContains(t, body, "tool_09", "50 a page")
			require.Less(t, strings.Index(body, "tool_59"), strings.Index(body, "tool_58"), "newest first")
			require.NotContains(t, body, "s3cret-tool-token")
			next := regexp.MustCompile(`/console/audit\?before=(\d+)`).FindString(body)
			require.NotEmpty(t, next)
			_, body = get(t, a, srv.URL+next)
			require.Contains(t, body, "tool_09")
			require.Contains(t, body, "tool_00")
			require.NotContains(t, body, "tool_10")
			require.NotContains(t, body, "before=", "the last page")

			g := b.client(t)
			b.login(t, g, acme.Token)
			_, body = get(t, g, srv.URL+"/console/audit")
			require.Contains(t, body, "tool_59")
			require.NotContains(t, body, "tool_57", "globex's row")
			resp, _ := get(t, g, srv.URL+"/console/audit?before=x")
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		})
	}
}

// After login the browser goes back to the console page it asked for, and
// nowhere else.
func TestLoginRedirectStaysOnConsole(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	for next, want := range map[string]string{
		"/console/runs?status=failed":  "/console/runs?status=failed",
		"https://evil.example/console": "/console",
		"//evil.example/console/runs":  "/console",
		"/v1/runs":                     "/console",
		"javascript:alert(1)":          "/console",
	} {
		c := b.client(t)
		_, body := get(t, c, b.srv.URL+"/console/login")
		resp, _ := post(t, c, b.srv.URL+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "key": {b.admin}, "next": {next}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, next)
		require.Equal(t, want, resp.Header.Get("Location"), next)
	}
}

func TestRunsStatusFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	failed, ok := b.run(t, server.DefaultTenant, store.RunFailed), b.run(t, server.DefaultTenant, store.RunSucceeded)
	c := b.client(t)
	_, body := get(t, c, b.srv.URL+"/console/runs?status=failed")
	require.Contains(t, body, failed.ID)
	require.NotContains(t, body, ok.ID)
	resp, body := get(t, c, b.srv.URL+"/console/runs?status=requires_action")
	require.Equal(t, http.StatusOK, resp.StatusCode, "a status the list does not offer still filters")
	require.Contains(t, body, "No runs match")
	resp, _ = get(t, c, b.srv.URL+"/console/runs?status=%27%3B--")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// A paused run's page lists the calls it waits for; a key with the
// approve (or admin) scope approves or denies them with the CSRF token; a
// key without it sees no buttons and is refused (403); a call decided
// twice is a 409 page.
func TestApproveAndDenyPendingCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	ctx := t.Context()
	r := b.run(t, "acme", store.RunQueued)
	now := time.Now().UTC()
	r, err := b.st.ClaimRun(ctx, store.ClaimRunParams{ID: r.ID, Owner: "w", LeaseUntil: now.Add(time.Minute), Now: now})
	require.NoError(t, err)
	require.NoError(t, b.st.PauseRun(ctx, store.PauseRunParams{
		Run: store.UpdateRunParams{ID: r.ID, Status: store.RunRequiresAction, Attempt: r.Attempt, StartedAt: r.StartedAt},
		Approvals: []store.Approval{
			{Tenant: "acme", ToolUseID: "toolu_pay", Step: 1, Name: "pay", Input: json.RawMessage(`{"amount":5,"token":"s3cret-tool-token"}`), ExpiresAt: now.Add(time.Hour)},
			{Tenant: "acme", ToolUseID: "toolu_mail", Step: 1, Name: "mail", Input: json.RawMessage(`{}`), ExpiresAt: now.Add(time.Hour)},
		},
	}))

	// The runs-only tenant key sees the calls, not the buttons.
	viewer := b.client(t)
	tok := b.login(t, viewer, b.acme)
	resp, body := get(t, viewer, b.srv.URL+"/console/runs/"+r.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Waiting for a person")
	require.Contains(t, body, "toolu_pay")
	require.NotContains(t, body, "s3cret-tool-token", "inputs are scrubbed")
	require.NotContains(t, body, `id="approve-toolu_pay"`)
	resp, _ = post(t, viewer, b.srv.URL+"/console/runs/"+r.ID+"/approvals", url.Values{"csrf": {tok}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	c := b.client(t)
	csrf := b.login(t, c, b.admin)
	_, body = get(t, c, b.srv.URL+"/console/runs/"+r.ID)
	require.Contains(t, body, `id="approve-toolu_pay"`)
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/approvals", url.Values{"tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token")
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/approvals", url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"maybe"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/approvals", url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/approvals", url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"deny"}})
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+r.ID+"/approvals", url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_mail"}, "decision": {"deny"}, "reason": {"not now"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	list, err := b.st.ListApprovals(ctx, r.ID)
	require.NoError(t, err)
	got := map[string]store.Approval{}
	for _, a := range list {
		got[a.ToolUseID] = a
	}
	require.Equal(t, store.DecisionApprove, got["toolu_pay"].Decision)
	require.Equal(t, store.DecisionDeny, got["toolu_mail"].Decision)
	require.Equal(t, "not now", got["toolu_mail"].Reason)
	require.NotEmpty(t, got["toolu_pay"].DecidedBy, "the deciding key")
	after, err := b.st.GetRun(ctx, "acme", r.ID)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, after.Status, "the last decision queues the run")
}

// A run's page shows people's feedback on it, comments scrubbed.
func TestRunPageShowsFeedback(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	r := b.run(t, "acme", store.RunSucceeded)
	_, err := b.st.PutFeedback(t.Context(), store.FeedbackEntry{ID: "fb_1", Tenant: "acme", RunID: r.ID, Key: "key_x", Agent: "demo",
		Rating: store.RatingNegative, Comment: "wrong answer, token s3cret-tool-token", Tags: []string{"accuracy"}})
	require.NoError(t, err)
	c := b.client(t)
	b.login(t, c, b.admin)
	resp, body := get(t, c, b.srv.URL+"/console/runs/"+r.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Feedback")
	require.Contains(t, body, "negative")
	require.Contains(t, body, "[accuracy]")
	require.Contains(t, body, "wrong answer")
	require.NotContains(t, body, "s3cret-tool-token")
}
