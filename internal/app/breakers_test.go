package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/redis/redistest"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// startApp builds an App from yaml (in a temp dir) and runs it until the
// test ends.
func startApp(t testing.TB, yaml string) *App {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	a, err := New(t.Context(), cfg, Options{LogOutput: &syncLog{}, Version: "test"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	waitReady(t, a)
	return a
}

type answer struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

func call(t *testing.T, method, url, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start)}
}

// breakerOf returns the state of dependency dep on /healthz.
func breakerOf(t *testing.T, base, dep string) (state, overall string) {
	t.Helper()
	a := call(t, "GET", base+"/healthz", "")
	var h struct {
		Status     string `json:"status"`
		Components struct {
			Breakers struct {
				Breakers []struct {
					Dependency string `json:"dependency"`
					State      string `json:"state"`
				} `json:"breakers"`
			} `json:"breakers"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &h), a.body)
	for _, b := range h.Components.Breakers.Breakers {
		if b.Dependency == dep {
			return b.State, h.Status
		}
	}
	return "", h.Status
}

// A stopped PostgreSQL: once the store's breaker opens, API requests fail
// at once with 503 store_unavailable and Retry-After, readiness is false,
// /healthz and the metric show the open breaker; when the database is back,
// a probe closes it and the API serves again.
func TestStoreBreakerStoppedPostgres(t *testing.T) {
	pg := pgtest.StartInstance(t)
	a := startApp(t, fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "%s"}
auth: {mode: none}
breakers:
  overrides:
    store: {consecutive_failures: 3, open_timeout: 4s, half_open_probes: 1}
agents:
  - name: demo
    model: claude-sonnet-4-5
`, pg.URL()))
	base := "http://" + a.Addr().String()
	chat := `{"agent":"demo","message":"hello"}`
	require.Equal(t, http.StatusOK, call(t, "POST", base+"/v1/chat", chat).status)
	state, _ := breakerOf(t, base, "store")
	require.Equal(t, "closed", state)

	pg.Stop()
	// A refused connection answers store_unavailable before the breaker
	// opens too: wait for the breaker itself, driving failures meanwhile.
	require.Eventually(t, func() bool {
		call(t, "POST", base+"/v1/chat", chat)
		state, _ := breakerOf(t, base, "store")
		return state == "open"
	}, 30*time.Second, 10*time.Millisecond, "the store's breaker opens")
	open := call(t, "POST", base+"/v1/chat", chat)
	require.Contains(t, open.body, "store_unavailable")
	require.Equal(t, http.StatusServiceUnavailable, open.status, open.body)
	ra, err := strconv.Atoi(open.header.Get("Retry-After"))
	require.NoError(t, err)
	require.True(t, ra >= 1 && ra <= 4, "Retry-After %d: the time left before probes", ra)

	// Fail fast: no connection attempt, no pool wait. Loose bound for a
	// loaded machine; BenchmarkStoreBreakerOpen measures it.
	open = call(t, "GET", base+"/v1/conversations/conv_missing", "")
	require.Equal(t, http.StatusServiceUnavailable, open.status, open.body)
	require.Contains(t, open.body, "store_unavailable")
	require.Less(t, open.took, time.Second)
	t.Logf("open store breaker: GET conversation answered %d in %s", open.status, open.took)
	require.Equal(t, http.StatusServiceUnavailable, call(t, "GET", base+"/readyz", "").status, "unready while the store's breaker is open")
	state, overall := breakerOf(t, base, "store")
	require.Equal(t, "open", state)
	require.NotEqual(t, "ok", overall)
	require.Contains(t, call(t, "GET", base+"/metrics", "").body, `agentd_breaker_state{dependency="store"} 2`)

	pg.Start()
	require.Eventually(t, func() bool {
		return call(t, "POST", base+"/v1/chat", chat).status == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "a half-open probe closes the breaker once PostgreSQL is back")
	require.Eventually(t, func() bool { return call(t, "GET", base+"/readyz", "").status == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	state, _ = breakerOf(t, base, "store")
	require.Equal(t, "closed", state)
}

// A stopped Redis: the breaker opens, the rate limiter and the cache fall
// back to local state at once, /healthz is degraded (never unready), and
// the API keeps answering.
func TestRedisBreakerStoppedRedis(t *testing.T) {
	rs := redistest.Start(t)
	a := startApp(t, fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "sqlite://%s"}
auth: {mode: none}
redis: {url: "%s", timeout: 500ms}
rate_limits:
  tenant: {requests_per_minute: 100000}
breakers:
  overrides:
    redis: {consecutive_failures: 2, open_timeout: 1m}
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db")), rs.URL()))
	base := "http://" + a.Addr().String()
	chat := `{"agent":"demo","message":"hello"}`
	require.Equal(t, http.StatusOK, call(t, "POST", base+"/v1/chat", chat).status)
	state, _ := breakerOf(t, base, "redis")
	require.Equal(t, "closed", state)

	rs.Stop()
	require.Eventually(t, func() bool {
		require.Equal(t, http.StatusOK, call(t, "POST", base+"/v1/chat", chat).status, "Redis is never needed to serve")
		state, _ := breakerOf(t, base, "redis")
		return state == "open"
	}, 30*time.Second, 10*time.Millisecond)
	// Open: each request takes the local rate limit at once, without the
	// 500 ms Redis timeout (loose bound; the chat itself is the simulator's).
	ans := call(t, "POST", base+"/v1/chat", chat)
	require.Equal(t, http.StatusOK, ans.status)
	require.Less(t, ans.took, 2*time.Second)
	_, overall := breakerOf(t, base, "redis")
	require.Equal(t, "degraded", overall)
	require.Equal(t, http.StatusOK, call(t, "GET", base+"/readyz", "").status, "Redis never makes the instance unready")
	require.Contains(t, call(t, "GET", base+"/metrics", "").body, `agentd_breaker_state{dependency="redis"} 2`)
}

// BenchmarkStoreBreakerOpen measures an API request while PostgreSQL is
// stopped (GET /v1/conversations/{id}), end to end over HTTP on loopback,
// against a PostgreSQL of the benchmark's own: "open" is answered by the
// store's open breaker (503 store_unavailable); "disabled", without a
// breaker, tries the database each time (connection refused: the fast way
// for a database to be down; a hung one would wait for the deadline).
func BenchmarkStoreBreakerOpen(b *testing.B) {
	for _, bc := range []struct{ name, store string }{
		{"open", "{consecutive_failures: 1, open_timeout: 1h}"},
		{"disabled", "{disabled: true}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pg := pgtest.StartInstance(b)
			dir := b.TempDir()
			path := filepath.Join(dir, "agentd.yaml")
			require.NoError(b, os.WriteFile(path, []byte(fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "%s"}
auth: {mode: none}
breakers:
  overrides:
    store: %s
agents:
  - name: demo
    model: claude-sonnet-4-5
`, pg.URL(), bc.store)), 0o600))
			cfg, err := config.Load(path, nil)
			require.NoError(b, err)
			a, err := New(b.Context(), cfg, Options{LogOutput: io.Discard, Version: "test"})
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- a.Run(ctx) }()
			defer func() { cancel(); <-errc }()
			waitReady(b, a)
			url := "http://" + a.Addr().String() + "/v1/conversations/conv_x"
			get := func() int {
				resp, err := http.Get(url)
				require.NoError(b, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			pg.Stop()
			want := http.StatusServiceUnavailable
			if bc.name == "disabled" {
				want = http.StatusInternalServerError
			}
			require.Eventually(b, func() bool { return get() == want }, 30*time.Second, 10*time.Millisecond)
			for b.Loop() {
				if st := get(); st != want {
					b.Fatalf("status %d, want %d", st, want)
				}
			}
		})
	}
}

// An HTTP tool on a closed port, through whole chats: after two failed
// calls its breaker opens and the next chat's tool_result, which the model
// reads, says at once that the tool is unavailable and when it is retried;
// /healthz and the metrics show tool:lookup open.
func TestToolBreakerThroughChats(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	a := startApp(t, fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "sqlite://%s"}
auth: {mode: none}
tools:
  http:
    - name: lookup
      description: Looks things up.
      url: "http://%s/lookup"
      allow_private: true
breakers:
  overrides:
    "tool:lookup": {consecutive_failures: 2, open_timeout: 1m}
agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [lookup]
`, filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db")), closed))
	base := "http://" + a.Addr().String()
	chat := `{"agent":"demo","message":"please lookup the weather"}`
	for range 2 {
		ans := call(t, "POST", base+"/v1/chat", chat)
		require.Equal(t, http.StatusOK, ans.status, ans.body)
		require.NotContains(t, ans.body, "is unavailable")
	}
	ans := call(t, "POST", base+"/v1/chat", chat)
	require.Equal(t, http.StatusOK, ans.status, ans.body)
	require.Contains(t, ans.body, "tool lookup is unavailable", "the model read the breaker's answer")
	require.Contains(t, ans.body, "try it again in")
	state, overall := breakerOf(t, base, "tool:lookup")
	require.Equal(t, "open", state)
	require.Equal(t, "degraded", overall)
	metrics := call(t, "GET", base+"/metrics", "").body
	require.Contains(t, metrics, `agentd_breaker_state{dependency="tool:lookup"} 2`)
	require.Contains(t, metrics, `outcome="circuit_open"`)
	require.Equal(t, http.StatusOK, call(t, "GET", base+"/readyz", "").status, "a tool never makes the instance unready")
}

// A run whose webhook receiver is a closed port: the failed delivery opens
// the breaker of that host (webhook:HOST), seen on /healthz; the queue
// retries the delivery later.
func TestWebhookBreakerClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	a := startApp(t, fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "sqlite://%s"}
auth: {mode: none}
worker: {poll_interval: 50ms}
breakers:
  overrides:
    "webhook:%s": {consecutive_failures: 1, open_timeout: 1m}
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db")), closed))
	base := "http://" + a.Addr().String()
	sub := call(t, "POST", base+"/v1/runs", `{"agent":"demo","message":"hi","webhook":"http://`+closed+`/hook"}`)
	require.Equal(t, http.StatusAccepted, sub.status, sub.body)
	require.Eventually(t, func() bool {
		state, _ := breakerOf(t, base, "webhook:"+closed)
		return state == "open"
	}, 30*time.Second, 50*time.Millisecond)
}
