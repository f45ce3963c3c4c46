package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/httptool"
)

// countingServer is a streamable-HTTP MCP server on 127.0.0.1 that counts
// the MCP sessions opened on it (initialize requests).
func countingServer(t *testing.T) (url string, sessions *atomic.Int32) {
	t.Helper()
	srv := testServer(false)
	sessions = &atomic.Int32{}
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"method":"initialize"`)) {
			sessions.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp", sessions
}

func newPool(t *testing.T, cfg PoolConfig) *Pool {
	t.Helper()
	p, err := NewPool(cfg)
	require.NoError(t, err)
	return p
}

func names(t *testing.T, p *Pool, url string) []string {
	t.Helper()
	ts, err := p.Tools(t.Context(), "t1", url)
	require.NoError(t, err)
	var out []string
	for _, x := range ts {
		out = append(out, x.Spec().Name)
	}
	return out
}

// One connection per URL, made when first asked for (concurrent askers
// share it) and reused; its tools are the server's, callable.
func TestPoolConnectsOncePerURL(t *testing.T) {
	url, sessions := countingServer(t)
	p := newPool(t, PoolConfig{Policy: httptool.Policy{AllowHosts: []string{"127.0.0.1"}}, ConnectTimeout: 5 * time.Second})
	t.Cleanup(p.Close)
	require.Nil(t, p.Known("t1", url), "nothing pooled before the first use")

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// No credential is restricted: every tenant shares it.
			_, err := p.Tools(context.Background(), fmt.Sprintf("tenant-%d", i%3), url)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	got := names(t, p, url)
	require.Contains(t, got, "echo")
	require.NotContains(t, got, "crash", "the HTTP test server has no stdio-only tools")
	require.Equal(t, int32(1), sessions.Load(), "one MCP session for every caller")
	require.ElementsMatch(t, got, p.Known("tenant-1", url))
	require.ElementsMatch(t, got, p.Known("", url))

	ts, err := p.Tools(t.Context(), "t1", url)
	require.NoError(t, err)
	for _, x := range ts {
		if x.Spec().Name == "echo" {
			out, err := x.Call(t.Context(), []byte(`{"text":"pooled"}`))
			require.NoError(t, err)
			require.Equal(t, "pooled", out)
		}
	}
	require.Equal(t, int32(1), sessions.Load())
}

// The private-address policy is httptool's: 127.0.0.1 is refused unless
// allowed, by the static check and at dial time.
func TestPoolSSRFGuard(t *testing.T) {
	url, sessions := countingServer(t)
	p := newPool(t, PoolConfig{Policy: httptool.Policy{Hint: "see managed.mcp"}, ConnectTimeout: 5 * time.Second})
	t.Cleanup(p.Close)
	err := p.CheckURL(url)
	require.ErrorIs(t, err, httptool.ErrBlocked)
	require.Contains(t, err.Error(), "see managed.mcp")
	require.ErrorIs(t, p.CheckURL("http://localhost:9/mcp"), httptool.ErrBlocked)
	require.NoError(t, p.CheckURL("https://mcp.example.com/mcp"), "names are checked when dialed")

	_, err = p.Tools(t.Context(), "t1", url)
	require.ErrorIs(t, err, httptool.ErrBlocked, "the dial is guarded too")
	require.Zero(t, sessions.Load())
	require.Nil(t, p.Known("t1", url), "a failed connection is not pooled")

	open := newPool(t, PoolConfig{Policy: httptool.Policy{AllowPrivate: true}})
	t.Cleanup(open.Close)
	require.NoError(t, open.CheckURL(url))
	require.Contains(t, names(t, open, url), "echo")
}

// A server that does not answer fails within ConnectTimeout; one that
// refuses connections fails at once; neither is pooled.
func TestPoolUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	p := newPool(t, PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, ConnectTimeout: 300 * time.Millisecond})
	t.Cleanup(p.Close)
	start := time.Now()
	_, err = p.Tools(t.Context(), "t1", "http://"+ln.Addr().String()+"/mcp")
	require.Error(t, err)
	require.Contains(t, err.Error(), ln.Addr().String())
	require.Less(t, time.Since(start), 5*time.Second)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	require.NoError(t, closed.Close())
	_, err = p.Tools(t.Context(), "t1", "http://"+addr+"/mcp")
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
}

// A full pool closes its least recently used server; Close closes all and
// refuses more.
func TestPoolEvictsAndCloses(t *testing.T) {
	u1, s1 := countingServer(t)
	u2, _ := countingServer(t)
	p := newPool(t, PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, MaxServers: 1, ConnectTimeout: 5 * time.Second})
	names(t, p, u1)
	names(t, p, u2)
	require.Nil(t, p.Known("t1", u1), "evicted")
	require.NotNil(t, p.Known("t1", u2))
	names(t, p, u1)
	require.Equal(t, int32(2), s1.Load(), "reconnected after eviction")
	p.Close()
	_, err := p.Tools(t.Context(), "t1", u2)
	require.True(t, errors.Is(err, ErrPoolClosed), "%v", err)
}

// recordingServer is a streamable-HTTP MCP server on 127.0.0.1 that keeps
// the Authorization and X-Static headers of every request, and answers 503
// to every request while down is set.
type recordingServer struct {
	URL  string
	host string // host:port
	down atomic.Bool

	mu      sync.Mutex
	headers []http.Header
}

func (r *recordingServer) seen() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.headers)
}

func startRecording(t *testing.T, path string) *recordingServer {
	t.Helper()
	rs := &recordingServer{}
	srv := testServer(false)
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.headers = append(rs.headers, r.Header.Clone())
		rs.mu.Unlock()
		if rs.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	rs.URL, rs.host = ts.URL+path, strings.TrimPrefix(ts.URL, "http://")
	return rs
}

func callTool(t *testing.T, ts []tool.Tool, name, input string) (string, error) {
	t.Helper()
	for _, x := range ts {
		if x.Spec().Name == name {
			return x.Call(t.Context(), json.RawMessage(input))
		}
	}
	t.Fatalf("no tool %s", name)
	return "", nil
}

// The operator's credentials reach the servers they apply to on every
// request, a rotated secret at once; they reach no other server, not a
// path beside theirs, and not the host a server redirects to.
func TestPoolCredentials(t *testing.T) {
	srv := startRecording(t, "/mcp")
	beside := srv.URL + "x" // .../mcpx: not under .../mcp
	other := startRecording(t, "/mcp")
	// A server under the credential's URL that redirects every request
	// to the other host.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no credentials", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	secrets := tool.NewSecrets(map[string]string{"tok": "tok-v1"})
	p := newPool(t, PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, ConnectTimeout: 5 * time.Second, Secrets: secrets,
		Credentials: []Credential{
			{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer {{secret:tok}}", "X-Static": "plain"}},
			{URL: redirect.URL + "/", Headers: map[string]string{"Authorization": "Bearer redirect-only"}},
		}})
	t.Cleanup(p.Close)

	ts, err := p.Tools(t.Context(), "t1", srv.URL)
	require.NoError(t, err)
	out, err := callTool(t, ts, "echo", `{"text":"hi"}`)
	require.NoError(t, err)
	require.Equal(t, "hi", out)
	secrets.Rotate("tok", "tok-v2", time.Now(), time.Minute)
	_, err = callTool(t, ts, "echo", `{"text":"again"}`)
	require.NoError(t, err)
	seen := srv.seen()
	require.GreaterOrEqual(t, len(seen), 4, "initialize, initialized, tools/list, calls")
	for i, h := range seen {
		want := "Bearer tok-v1"
		if i == len(seen)-1 {
			want = "Bearer tok-v2"
		}
		require.Equal(t, want, h.Get("Authorization"), "request %d", i)
		require.Equal(t, "plain", h.Get("X-Static"))
	}

	// Beside the credential's path: nothing.
	n := len(srv.seen())
	_, err = p.Tools(t.Context(), "t1", beside)
	require.NoError(t, err)
	require.Greater(t, len(srv.seen()), n)
	for _, h := range srv.seen()[n:] {
		require.Empty(t, h.Get("Authorization"))
		require.Empty(t, h.Get("X-Static"))
	}

	// Redirected to another host: the server there gets none.
	ts, err = p.Tools(t.Context(), "t1", redirect.URL+"/mcp")
	require.NoError(t, err)
	_, err = callTool(t, ts, "echo", `{"text":"redirected"}`)
	require.NoError(t, err)
	require.NotEmpty(t, other.seen(), "the redirect was followed")
	for _, h := range other.seen() {
		require.Empty(t, h.Get("Authorization"), "credentials stay with their URL")
	}
}

// redirector is a server that refuses a request without Authorization and
// redirects every other to target.
func redirector(t *testing.T, target string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no credentials", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// Credentials restricted to tenants reach the server only for those
// tenants' runs (two tenants may have their own for the same URL), each
// over a connection of its own; other tenants get the unrestricted
// credential below, if any. A redirect from a tenant's connection gets
// only that tenant's credentials; one from a shared connection only
// unrestricted ones.
func TestPoolTenantCredentials(t *testing.T) {
	srv := startRecording(t, "/mcp")
	other := startRecording(t, "/mcp")
	bound := redirector(t, other.URL)  // under a credential of tenant a only
	shared := redirector(t, other.URL) // under an unrestricted credential
	p := newPool(t, PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, ConnectTimeout: 5 * time.Second,
		Credentials: []Credential{
			{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer team-a"}, Tenants: []string{"a"}},
			{URL: srv.URL + "/", Headers: map[string]string{"Authorization": "Bearer team-b"}, Tenants: []string{"b", "b2"}},
			{URL: "http://" + srv.host, Headers: map[string]string{"X-Shared": "every tenant"}},
			{URL: other.URL, Headers: map[string]string{"Authorization": "Bearer other-b"}, Tenants: []string{"b"}},
			{URL: bound, Headers: map[string]string{"Authorization": "Bearer bound-a"}, Tenants: []string{"a"}},
			{URL: shared, Headers: map[string]string{"Authorization": "Bearer shared"}},
		}})
	t.Cleanup(p.Close)

	// use lists srv's tools as tenant, calls one, and returns the headers
	// srv saw meanwhile.
	use := func(tenant string) []http.Header {
		t.Helper()
		n := len(srv.seen())
		ts, err := p.Tools(t.Context(), tenant, srv.URL)
		require.NoError(t, err)
		out, err := callTool(t, ts, "echo", `{"text":"`+tenant+`"}`)
		require.NoError(t, err)
		require.Equal(t, tenant, out)
		return srv.seen()[n:]
	}
	for tenant, want := range map[string]string{"a": "Bearer team-a", "b": "Bearer team-b", "b2": "Bearer team-b", "c": ""} {
		seen := use(tenant)
		require.NotEmpty(t, seen)
		for _, h := range seen {
			require.Equal(t, want, h.Get("Authorization"), "tenant %s", tenant)
			if want == "" {
				require.Equal(t, "every tenant", h.Get("X-Shared"), "the longest credential tenant %s may use", tenant)
			} else {
				require.Empty(t, h.Get("X-Shared"), "one credential's headers, the longest's")
			}
		}
	}
	p.mu.Lock()
	require.Len(t, p.servers, 4, "a connection per tenant where credentials are restricted")
	p.mu.Unlock()
	require.Nil(t, p.Known("d", srv.URL), "tenant d has no connection yet")
	require.Contains(t, p.Known("a", srv.URL), "echo")
	use("a")
	p.mu.Lock()
	require.Len(t, p.servers, 4, "tenant a's connection is reused")
	p.mu.Unlock()

	// Another tenant does not get a's credentials: the server refuses it.
	_, err := p.Tools(t.Context(), "b", bound+"/mcp")
	require.Error(t, err)
	// Tenant a's connection, redirected to other: b's credential there
	// is not a's.
	ts, err := p.Tools(t.Context(), "a", bound+"/mcp")
	require.NoError(t, err)
	_, err = callTool(t, ts, "echo", `{"text":"redirected"}`)
	require.NoError(t, err)
	require.NotEmpty(t, other.seen(), "the redirect was followed")
	// A shared connection (of tenant b's run), redirected to other: b's
	// credential there is not the connection's.
	ts, err = p.Tools(t.Context(), "b", shared+"/mcp")
	require.NoError(t, err)
	_, err = callTool(t, ts, "echo", `{"text":"redirected"}`)
	require.NoError(t, err)
	for _, h := range other.seen() {
		require.Empty(t, h.Get("Authorization"))
	}
	// Tenant b's own connection to other gets its credential.
	n := len(other.seen())
	_, err = p.Tools(t.Context(), "b", other.URL)
	require.NoError(t, err)
	for _, h := range other.seen()[n:] {
		require.Equal(t, "Bearer other-b", h.Get("Authorization"))
	}
}

// Which credential applies to a URL: same scheme, host and port (the
// default one or none), the credential's path or below on "/" boundaries,
// the longest path first; never through dot segments.
func TestCredentialMatching(t *testing.T) {
	p := newPool(t, PoolConfig{Secrets: tool.NewSecrets(map[string]string{"k": "v"}), Credentials: []Credential{
		{URL: "https://a.example", Headers: map[string]string{"X-Root": "1"}},
		{URL: "https://a.example/mcp/", Headers: map[string]string{"X-Mcp": "1"}},
		{URL: "https://a.example/mcp/special", Headers: map[string]string{"X-Special": "{{secret:k}}"}},
		{URL: "http://b.example:8080/v1", Headers: map[string]string{"X-B": "1"}},
	}})
	t.Cleanup(p.Close)
	cases := map[string]string{ // URL → the credential's URL ("" none)
		"https://a.example":                    "https://a.example",
		"https://a.example/":                   "https://a.example",
		"https://A.Example:443/other":          "https://a.example",
		"https://a.example/mcp":                "https://a.example/mcp/",
		"https://a.example/mcp/x?q=1":          "https://a.example/mcp/",
		"https://a.example/mcpx":               "https://a.example",
		"https://a.example/mcp/special":        "https://a.example/mcp/special",
		"https://a.example/mcp/special/deeper": "https://a.example/mcp/special",
		"https://a.example/mcp/specialx":       "https://a.example/mcp/",
		"https://a.example/mcp/../admin":       "",
		"https://a.example/mcp/%2E%2e/admin":   "",
		"http://a.example/mcp":                 "",
		"https://a.example:8443/mcp":           "",
		"https://a.example.evil.com/mcp":       "",
		"https://evil.com/https://a.example":   "",
		"http://b.example:8080/v1/x":           "http://b.example:8080/v1",
		"http://b.example/v1":                  "",
		"http://b.example:8080/v10":            "",
	}
	for raw, want := range cases {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		got := ""
		if c := p.credentialFor(u, "t1"); c != nil {
			got = c.url
		}
		require.Equal(t, want, got, raw)
	}

	for _, bad := range []struct {
		c    Credential
		want string
	}{
		{Credential{URL: "mcp.example.com/x", Headers: map[string]string{"A": "b"}}, "[0].url: want an absolute"},
		{Credential{URL: "https://u:p@a.example", Headers: map[string]string{"A": "b"}}, "[0].url: no user info"},
		{Credential{URL: "https://a.example/x?k=1", Headers: map[string]string{"A": "b"}}, "[0].url: no user info"},
		{Credential{URL: "https://a.example/%2e%2e/x", Headers: map[string]string{"A": "b"}}, "[0].url: no . or .."},
		{Credential{URL: "https://a.example/x"}, "[0].headers: at least one"},
		{Credential{URL: "https://a.example/x", Headers: map[string]string{"A": "{{secret:nope}}"}}, "[0].headers.A: {{secret:nope}}"},
		{Credential{URL: "https://a.example/x", Headers: map[string]string{"A": "s3cr3t {{oops"}}, "[0].headers.A: malformed"},
	} {
		_, err := NewPool(PoolConfig{Credentials: []Credential{bad.c}})
		require.ErrorContains(t, err, bad.want)
		require.NotContains(t, err.Error(), "s3cr3t", "a header value is never quoted")
	}
	_, err := NewPool(PoolConfig{Credentials: []Credential{
		{URL: "https://a.example/x/", Headers: map[string]string{"A": "b"}},
		{URL: "https://A.example:443/x", Headers: map[string]string{"A": "c"}}}})
	require.ErrorContains(t, err, "[1].url: the same URL as https://a.example/x/")
	// The same URL for tenants: only disjoint sets, both named.
	for _, ts := range [][2][]string{{{"a"}, nil}, {nil, {"a"}}, {{"a", "b"}, {"c", "b"}}} {
		_, err = NewPool(PoolConfig{Credentials: []Credential{
			{URL: "https://a.example/x", Headers: map[string]string{"A": "b"}, Tenants: ts[0]},
			{URL: "https://a.example/x/", Headers: map[string]string{"A": "c"}, Tenants: ts[1]}}})
		require.ErrorContains(t, err, "[1].url: the same URL as https://a.example/x", "%v", ts)
	}
	_, err = NewPool(PoolConfig{Credentials: []Credential{
		{URL: "https://a.example/x", Headers: map[string]string{"A": "b"}, Tenants: []string{"a", ""}}}})
	require.ErrorContains(t, err, "[0].tenants[1]: empty")

	// Of the credentials covering a URL, the longest the tenant may use;
	// a restricted one for no unbound connection ("").
	p = newPool(t, PoolConfig{Credentials: []Credential{
		{URL: "https://a.example", Headers: map[string]string{"X": "1"}},
		{URL: "https://a.example/mcp", Headers: map[string]string{"X": "1"}, Tenants: []string{"a"}},
		{URL: "https://a.example/mcp/", Headers: map[string]string{"X": "1"}, Tenants: []string{"b"}},
		{URL: "https://a.example/mcp/deep", Headers: map[string]string{"X": "1"}, Tenants: []string{"b"}},
	}})
	t.Cleanup(p.Close)
	for _, c := range []struct{ url, tenant, want string }{
		{"https://a.example/mcp/x", "a", "https://a.example/mcp"},
		{"https://a.example/mcp/x", "b", "https://a.example/mcp/"},
		{"https://a.example/mcp/deep/x", "a", "https://a.example/mcp"},
		{"https://a.example/mcp/deep/x", "b", "https://a.example/mcp/deep"},
		{"https://a.example/mcp/x", "c", "https://a.example"},
		{"https://a.example/mcp/x", "", "https://a.example"},
	} {
		u, err := url.Parse(c.url)
		require.NoError(t, err)
		require.Equal(t, c.want, p.credentialFor(u, c.tenant).url, "%s as %q", c.url, c.tenant)
	}
	require.True(t, p.bindsTenant("https://a.example/mcp"))
	require.False(t, p.bindsTenant("https://a.example/other"))
}

// The hosts with a label (and breaker) of their own are bounded: those of
// credentials, then the first MaxServers others; later ones are "other",
// without a breaker.
func TestPoolHostLabels(t *testing.T) {
	p := newPool(t, PoolConfig{MaxServers: 2, Credentials: []Credential{{URL: "https://cred.example/mcp", Headers: map[string]string{"A": "b"}}}})
	t.Cleanup(p.Close)
	label := func(raw string) string { return p.serverLabel(raw) }
	require.Equal(t, "one.example", label("https://ONE.example:443/mcp?x=secret-query"))
	require.Equal(t, "two.example:8443", label("https://two.example:8443/a/b"))
	require.Equal(t, "other", label("https://three.example/mcp"))
	require.Equal(t, "one.example", label("https://one.example/elsewhere"), "a host keeps its label")
	require.Equal(t, "cred.example", label("https://cred.example/x"), "credentials' hosts are not counted")
	require.Equal(t, "mcp-url:one.example", p.breakerName("one.example"))
	require.Empty(t, p.breakerName("other"))
}

// metricValue reads a counter of reg by its labels (0 when absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// A server that stops answering (503): its host's breaker counts the
// failed call and reconnections and opens; then a call fails at once with
// the breaker's error (no request), the pooled server offers its tools at
// once, and a server not pooled on that host fails at once. Calls and
// connections are counted by host.
func TestPoolBreaker(t *testing.T) {
	srv := startRecording(t, "/mcp")
	reg := prometheus.NewRegistry()
	set := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 2, OpenTimeout: time.Minute}})
	p := newPool(t, PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, ConnectTimeout: 5 * time.Second,
		Breakers: set, Metrics: tool.NewMetrics(reg)})
	t.Cleanup(p.Close)
	b := set.Get("mcp-url:" + srv.host)

	ts, err := p.Tools(t.Context(), "t1", srv.URL)
	require.NoError(t, err)
	_, err = callTool(t, ts, "echo", `{"text":"up"}`)
	require.NoError(t, err)
	_, err = callTool(t, ts, "fail", `{"text":"tool error"}`)
	require.Equal(t, tool.KindToolError, tool.Outcome(err), "an answer: the breaker counts a success")
	require.Equal(t, breaker.StateClosed, b.State())

	srv.down.Store(true)
	_, err = callTool(t, ts, "echo", `{"text":"down"}`)
	require.Equal(t, tool.KindUnavailable, tool.Outcome(err), "%v", err)
	// The supervisor's reconnection is the second failure.
	require.Eventually(t, func() bool { return b.State() == breaker.StateOpen }, 10*time.Second, 20*time.Millisecond)

	n := len(srv.seen())
	start := time.Now()
	_, err = callTool(t, ts, "echo", `{"text":"open"}`)
	require.Equal(t, tool.KindCircuitOpen, tool.Outcome(err), "%v", err)
	require.Contains(t, err.Error(), "tool echo is unavailable: mcp-url:"+srv.host+" failed repeatedly")
	ts, err = p.Tools(t.Context(), "t1", srv.URL)
	require.NoError(t, err, "pooled: its last tools, at once")
	require.Contains(t, toolNames(ts), "echo")
	_, err = p.Tools(t.Context(), "t1", "http://"+srv.host+"/elsewhere")
	_, open := breaker.AsOpen(err)
	require.True(t, open, "%v", err)
	require.Contains(t, err.Error(), "http://"+srv.host+"/elsewhere")
	require.Less(t, time.Since(start), 2*time.Second, "no waiting for the server")
	require.Len(t, srv.seen(), n, "nothing was sent while the breaker is open")

	host := map[string]string{"server": srv.host}
	with := func(outcome string) map[string]string {
		return map[string]string{"server": srv.host, "outcome": outcome}
	}
	require.Equal(t, 1.0, metricValue(t, reg, "agentd_mcp_url_calls_total", with("ok")))
	require.Equal(t, 1.0, metricValue(t, reg, "agentd_mcp_url_calls_total", with("tool_error")))
	require.Equal(t, 1.0, metricValue(t, reg, "agentd_mcp_url_calls_total", with("unavailable")))
	require.Equal(t, 1.0, metricValue(t, reg, "agentd_mcp_url_calls_total", with("circuit_open")))
	require.Equal(t, 4.0, metricValue(t, reg, "agentd_mcp_url_call_duration_seconds", host))
	require.Equal(t, 1.0, metricValue(t, reg, "agentd_mcp_url_connects_total", with("ok")))
	require.Equal(t, 1.0, metricValue(t, reg, "agentd_mcp_url_connects_total", with("circuit_open")))
}

func toolNames(ts []tool.Tool) []string {
	var out []string
	for _, x := range ts {
		out = append(out, x.Spec().Name)
	}
	return out
}
