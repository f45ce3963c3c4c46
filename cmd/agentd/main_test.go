package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the goroutines of a running serve.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCmd runs the CLI with args and a clean environment (plus environ).
func runCmd(t *testing.T, environ []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	err = run(t.Context(), args, &out, &errOut, environ)
	return out.String(), errOut.String(), err
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	return path
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version"} {
		out, _, err := runCmd(t, nil, arg)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(out, "agentd "), out)
		require.Equal(t, "agentd "+buildVersion()+"\n", out)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	_, stderr, err := runCmd(t, nil, "frobnicate")
	require.ErrorIs(t, err, errUsage)
	require.ErrorContains(t, err, `unknown command "frobnicate"`)
	require.Contains(t, stderr, "Usage:")

	_, _, err = runCmd(t, nil)
	require.ErrorIs(t, err, errUsage)

	_, _, err = runCmd(t, nil, "config")
	require.ErrorIs(t, err, errUsage)
	_, _, err = runCmd(t, nil, "config", "lint")
	require.ErrorIs(t, err, errUsage)

	_, _, err = runCmd(t, nil, "config", "check", "-config", "x.yaml", "extra")
	require.ErrorIs(t, err, errUsage)
	_, _, err = runCmd(t, nil, "config", "check", "-nope")
	require.ErrorIs(t, err, errUsage)

	out, _, err := runCmd(t, nil, "help")
	require.NoError(t, err)
	require.Contains(t, out, "agentd serve")
}

func TestConfigCheckExample(t *testing.T) {
	t.Parallel()
	const secret = "sk-secret-x"
	env := []string{"ANTHROPIC_API_KEY=" + secret}
	out, stderr, err := runCmd(t, env, "config", "check", "-config", filepath.Join("..", "..", "examples", "agentd.yaml"))
	require.NoError(t, err, stderr)
	require.Contains(t, out, "config is valid")
	require.Contains(t, out, "name: demo")
	require.NotContains(t, out, secret)
	require.NotContains(t, stderr, secret)
	require.Contains(t, out, "[redacted]", "the key is there, masked")

	// -config defaults to $AGENTD_CONFIG.
	env = append(env, "AGENTD_CONFIG="+filepath.Join("..", "..", "examples", "agentd.yaml"))
	out, _, err = runCmd(t, env, "config", "check")
	require.NoError(t, err)
	require.Contains(t, out, "config is valid")
	require.NotContains(t, out, secret)
}

func TestConfigCheckInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml, want string
	}{
		{"max_steps", "agents:\n  - name: a\n    model: m\n    max_steps: -1\n", "agents[0].max_steps"},
		{"unknown tool", "agents:\n  - name: a\n    model: m\n    tools: [teleport]\n", "agents[0].tools[0]"},
		{"second unknown tool", "agents:\n  - name: a\n    model: m\n    tools: [clock]\n  - name: b\n    model: m\n    tools: [clock, nope]\n", "agents[1].tools[1]"},
		{"unknown key", "agents:\n  - name: a\n    model: m\nsrever:\n  addr: x\n", "srever"},
		{"no agents", "server:\n  addr: 127.0.0.1:1\n", "agents"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tc.yaml)
			out, _, err := runCmd(t, nil, "config", "check", "-config", path)
			require.Error(t, err)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, out, "config is valid")
		})
	}

	_, _, err := runCmd(t, nil, "config", "check", "-config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.Error(t, err)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	url := "sqlite://" + filepath.ToSlash(filepath.Join(dir, "m.db")) // absolute: sqlite:///...
	require.True(t, strings.HasPrefix(url, "sqlite:///"), url)
	path := writeConfig(t, "store:\n  url: "+url+"\nagents:\n  - name: a\n    model: m\n")
	for range 2 { // idempotent
		out, stderr, err := runCmd(t, nil, "migrate", "-config", path)
		require.NoError(t, err, stderr)
		require.Regexp(t, `^store sqlite:///\S+ is at schema version [1-9][0-9]*\b`, out)
		require.Contains(t, out, "m.db")
	}
	_, err := os.Stat(filepath.Join(dir, "m.db"))
	require.NoError(t, err)

	// The store URL can come from the environment too.
	env := []string{"AGENTD_STORE_URL=sqlite://" + filepath.ToSlash(filepath.Join(dir, "env.db"))}
	out, _, err := runCmd(t, env, "migrate", "-config", path)
	require.NoError(t, err)
	require.Contains(t, out, "env.db is at schema version")

	_, _, err = runCmd(t, []string{"AGENTD_STORE_URL=mysql://x/y"}, "migrate", "-config", path)
	require.Error(t, err)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// serveProc is one `agentd serve` running in a goroutine.
type serveProc struct {
	base   string
	cancel context.CancelFunc
	done   chan error
	stderr *syncBuffer
}

// startServe writes config (its server.addr, "ADDR", replaced by a free
// 127.0.0.1 port) to a new file, runs serve with it and waits until
// /readyz answers 200.
func startServe(t *testing.T, config string, environ []string) *serveProc {
	t.Helper()
	addr := freeAddr(t)
	require.Contains(t, config, "  addr: ADDR\n")
	configPath := writeConfig(t, strings.Replace(config, "  addr: ADDR\n", "  addr: "+addr+"\n", 1))
	ctx, cancel := context.WithCancel(context.Background())
	s := &serveProc{base: "http://" + addr, cancel: cancel, done: make(chan error, 1), stderr: &syncBuffer{}}
	go func() { s.done <- run(ctx, []string{"serve", "-config", configPath}, io.Discard, s.stderr, environ) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			t.Fatalf("serve exited before ready: %v\n%s", err, s.stderr.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 20s:\n%s", s.stderr.String())
		}
	}
}

// stop cancels serve's context (what SIGTERM does in main) and waits.
func (s *serveProc) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		require.NoError(t, err, s.stderr.String())
		s.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not return after cancel:\n%s", s.stderr.String())
	}
}

func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbURL := "sqlite://" + filepath.ToSlash(filepath.Join(dir, "agentd.db"))
	config := fmt.Sprintf(`server:
  addr: ADDR
  drain_timeout: 10s
store:
  url: %s
providers:
  anthropic:
    api_key: ${env:ANTHROPIC_API_KEY}
    simulate: always
auth:
  mode: none
log:
  level: debug  # the config is logged: the secret must not be
  format: json
agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [calculator, word_count]
`, dbURL)
	const secret = "sk-secret-serve"
	environ := []string{"ANTHROPIC_API_KEY=" + secret}

	s := startServe(t, config, environ)
	resp, err := http.Post(s.base+"/v1/chat", "application/json",
		strings.NewReader(`{"agent":"demo","message":"What is 3 times 4? Use the calculator."}`))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	var answer struct {
		ConversationID string `json:"conversation_id"`
		Steps          int    `json:"steps"`
		Text           string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(body, &answer))
	require.NotEmpty(t, answer.ConversationID)
	require.Equal(t, 2, answer.Steps)

	before := getJSON(t, s.base+"/v1/conversations/"+answer.ConversationID)
	require.Len(t, before["messages"], 4)

	agents := getJSON(t, s.base+"/v1/agents")
	require.Len(t, agents["agents"], 1)

	// The chat's two model calls are in the usage ledger within the usage
	// writer's flush interval (rows are written in batches).
	usageRequests := func(base string) float64 {
		total, _ := getJSON(t, base+"/v1/usage")["total"].(map[string]any)
		n, _ := total["requests"].(float64)
		return n
	}
	require.Eventually(t, func() bool { return usageRequests(s.base) == 2 }, 5*time.Second, 10*time.Millisecond)

	s.stop(t)
	logs := s.stderr.String()
	require.Contains(t, logs, "agentd stopped")
	require.Contains(t, logs, "SIMULATED MODEL")
	require.NotContains(t, logs, secret)
	_, err = http.Get(s.base + "/livez")
	require.Error(t, err, "the listener is closed")

	// A second process on the same store file sees the conversation.
	s2 := startServe(t, config, environ)
	after := getJSON(t, s2.base+"/v1/conversations/"+answer.ConversationID)
	require.Equal(t, before, after)
	require.Equal(t, 2.0, usageRequests(s2.base), "usage rows survive a restart")
	s2.stop(t)
}

// TestServeDrainsInFlight: a request in flight when the signal arrives
// finishes before serve returns.
func TestServeDrainsInFlight(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := fmt.Sprintf(`server:
  addr: ADDR
  drain_timeout: 20s
store:
  url: sqlite://%s
providers:
  anthropic:
    simulate: always
    sim_latency: 2s
auth:
  mode: none
log:
  level: info
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(dir, "agentd.db")))
	s := startServe(t, config, nil)

	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post(s.base+"/v1/chat", "application/json", strings.NewReader(`{"agent":"demo","message":"hi"}`))
		if err != nil {
			got <- result{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- result{status: resp.StatusCode, err: err}
	}()
	// Wait until the request is in flight: the HTTP access log is written
	// when it ends, so watch the in-flight gauge instead.
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.base + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// The /metrics request itself counts one.
		return strings.Contains(string(b), "\nagentd_http_requests_in_flight 2\n")
	}, 10*time.Second, 5*time.Millisecond)

	s.stop(t)
	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status)
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	var v map[string]any
	require.NoError(t, json.Unmarshal(body, &v))
	return v
}
