package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
)

// testServer is a real agentd (internal/app) on a free port with its
// built-in simulator as Claude and a SQLite store in a temp dir.
type testServer struct {
	url string
	key string // an API key, with auth.mode keys
}

type serverOptions struct {
	simLatency time.Duration
	keys       bool // auth.mode keys, with one key of tenant "acme"
}

func startServer(t *testing.T, o serverOptions) *testServer {
	t.Helper()
	ts, stop, err := launch(t.TempDir(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, stop()) })
	return ts
}

// shared is one default server for the tests that need nothing of their
// own (a server takes seconds to start and stop under -race); TestMain
// stops it.
var shared struct {
	once sync.Once
	ts   *testServer
	stop func() error
	err  error
	dir  string
}

func sharedServer(t *testing.T) *testServer {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "agentd-cli-test"); shared.err == nil {
			shared.ts, shared.stop, shared.err = launch(shared.dir, serverOptions{})
		}
	})
	require.NoError(t, shared.err)
	return shared.ts
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		if err := shared.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop the shared agentd:", err)
			code = 1
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// launch starts agentd with its store in dir; stop drains and stops it.
func launch(dir string, o serverOptions) (*testServer, func() error, error) {
	mode := "none"
	if o.keys {
		mode = "keys"
	}
	yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 1ms # 0s would mean the default, 5s
store:
  url: sqlite://%s
auth:
  mode: %s
providers:
  anthropic:
    simulate: always
    sim_latency: %s
log:
  level: warn
agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [calculator, word_count]
`, filepath.ToSlash(filepath.Join(dir, "agentd.db")), mode, o.simLatency)
	path := filepath.Join(dir, "agentd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		return nil, nil, err
	}
	ts := &testServer{}
	ctx := context.Background()
	if o.keys {
		be, err := app.OpenBackend(ctx, cfg.Store.URL, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, nil, err
		}
		defer be.Close()
		if err := be.Store.Migrate(ctx); err != nil {
			return nil, nil, err
		}
		k, err := auth.CreateKey(ctx, be.Store, auth.CreateParams{Tenant: "acme", Scopes: []string{auth.ScopeChat, auth.ScopeRuns}})
		if err != nil {
			return nil, nil, err
		}
		ts.key = k.Token
	}
	a, err := app.New(ctx, cfg, app.Options{LogOutput: io.Discard, Version: "test"})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("agentd did not stop within 30s")
		}
	}
	ts.url = "http://" + a.Addr().String()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(ts.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return ts, stop, nil
			}
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, nil, fmt.Errorf("agentd at %s not ready within 15s", ts.url)
		}
	}
}

// result is what a client command printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

// cli runs `agentd ARGS...` (a client command) against the server with
// stdin and the extra environment entries.
func (ts *testServer) cli(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	environ := append([]string{"AGENTD_URL=" + ts.url}, env...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err := Main(ctx, args[0], args[1:], IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Environ: environ})
	return result{out.String(), errOut.String(), err}
}

func (ts *testServer) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(ts.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, path)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// jsonEvents parses -o json event lines.
func jsonEvents(t *testing.T, out string) []jsonLine {
	t.Helper()
	var evs []jsonLine
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var ev jsonLine
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		evs = append(evs, ev)
	}
	return evs
}

// Chat from a pipe: every line is a message, answers stream to stdout with
// the tool calls, the conversation id is printed, and -c continues it.
func TestChatFromStdin(t *testing.T) {
	t.Parallel()
	ts := sharedServer(t)
	r := ts.cli(t, "Hello there\n\nWhat is one plus one? Use the calculator.\n", nil, "chat", "demo")
	require.NoError(t, r.err, r.stderr)
	require.Contains(t, r.stdout, "Simulated answer to: Hello there")
	require.Contains(t, r.stdout, "\n  ⚙ calculator {\"a\":1,\"b\":1,\"op\":\"+\"}\n")
	require.Regexp(t, `\n  calculator → \(\d+ ms\) 2\n`, r.stdout)
	require.Contains(t, r.stdout, `Tool results: [calculator] => "2"`)
	require.NotRegexp(t, `(?m)^> `, r.stdout, "no prompt when stdin is not a terminal")
	var conv string
	_, err := fmt.Sscanf(r.stderr, "conversation %s", &conv)
	require.NoError(t, err, r.stderr)
	require.Contains(t, r.stderr, "agentd chat -c "+conv+" demo")

	var c struct {
		Messages []json.RawMessage `json:"messages"`
	}
	ts.getJSON(t, "/v1/conversations/"+conv, &c)
	require.Len(t, c.Messages, 6, "two turns: 2 + 4 messages (tool_use and tool_result)")

	r = ts.cli(t, "Thanks\n", nil, "chat", "-c", conv, "demo")
	require.NoError(t, r.err, r.stderr)
	require.Contains(t, r.stdout, "Simulated answer to: Thanks")
	require.Contains(t, r.stderr, "conversation "+conv)
	ts.getJSON(t, "/v1/conversations/"+conv, &c)
	require.Len(t, c.Messages, 8, "-c continued the same conversation")
}

// -o json prints every event of every turn as one JSON line, ids in order.
func TestChatJSONEvents(t *testing.T) {
	t.Parallel()
	ts := sharedServer(t)
	r := ts.cli(t, "How many words? Use word_count.\n", nil, "chat", "demo", "-o", "json")
	require.NoError(t, r.err, r.stderr)
	evs := jsonEvents(t, r.stdout)
	require.Equal(t, "start", evs[0].Event)
	require.Equal(t, "done", evs[len(evs)-1].Event)
	names := map[string]bool{}
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.ID)
		names[ev.Event] = true
	}
	require.True(t, names["text_delta"] && names["tool_use"] && names["tool_result"] && names["usage"], names)
}

// A failed turn from a pipe ends the session with the server's error.
func TestChatErrors(t *testing.T) {
	t.Parallel()
	ts := sharedServer(t)
	r := ts.cli(t, "hi\n", nil, "chat", "nobody")
	require.EqualError(t, r.err, `404 not_found: agent not found: "nobody"`)
	r = ts.cli(t, "hi\n", nil, "chat", "-c", "conv_missing", "demo")
	var ae *APIError
	require.ErrorAs(t, r.err, &ae)
	require.Equal(t, http.StatusNotFound, ae.Status)
	require.Contains(t, r.err.Error(), "conversation not found")
	r = ts.cli(t, "", nil, "chat")
	require.ErrorIs(t, r.err, ErrUsage)
}

func submit(t *testing.T, ts *testServer, args ...string) runBody {
	t.Helper()
	r := ts.cli(t, "", nil, append([]string{"runs", "submit", "-o", "json"}, args...)...)
	require.NoError(t, r.err, r.stderr)
	var rb runBody
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rb), r.stdout)
	require.NotEmpty(t, rb.ID)
	return rb
}

func waitStatus(t *testing.T, ts *testServer, id, status string) runBody {
	t.Helper()
	var rb runBody
	require.Eventually(t, func() bool {
		r := ts.cli(t, "", nil, "runs", "get", id, "-o", "json")
		require.NoError(t, r.err)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rb))
		return rb.Status == status
	}, 30*time.Second, 50*time.Millisecond, "run %s never became %s", id, status)
	return rb
}

// runs submit, get, list and cancel against a real server.
func TestRunsSubmitGetListCancel(t *testing.T) {
	t.Parallel()
	ts := sharedServer(t)
	rb := submit(t, ts, "-idempotency-key", "k-1", "demo", "Count", "these", "words.", "Use", "word_count.")
	require.Equal(t, "demo", rb.Agent)
	done := waitStatus(t, ts, rb.ID, "succeeded")
	require.Contains(t, outputText(done.Output), "word_count")

	r := ts.cli(t, "", nil, "runs", "get", rb.ID)
	require.NoError(t, r.err)
	require.Regexp(t, `(?m)^ID\s+`+rb.ID+`$`, r.stdout)
	require.Regexp(t, `(?m)^STATUS\s+succeeded$`, r.stdout)
	require.Regexp(t, `(?m)^MESSAGE\s+Count these words\. Use word_count\.$`, r.stdout)
	require.Regexp(t, `(?m)^OUTPUT\s+Tool results: \[word_count\]`, r.stdout)

	// The same Idempotency-Key returns the same run.
	r = ts.cli(t, "", nil, "runs", "submit", "-idempotency-key", "k-1", "demo", "Count these words. Use word_count.")
	require.NoError(t, r.err, r.stderr)
	require.Regexp(t, `(?m)^ID\s+`+rb.ID+`$`, r.stdout)
	require.Contains(t, r.stderr, "already existed")

	// The message from stdin.
	r = ts.cli(t, "Hello from stdin\n", nil, "runs", "submit", "demo")
	require.NoError(t, r.err, r.stderr)
	require.Regexp(t, `(?m)^MESSAGE\s+Hello from stdin$`, r.stdout)
	r = ts.cli(t, "", nil, "runs", "submit", "demo")
	require.EqualError(t, r.err, "400 invalid_request: message: required and must not be blank")

	r = ts.cli(t, "", nil, "runs", "list", "-status", "succeeded")
	require.NoError(t, r.err)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Regexp(t, `^ID\s+STATUS\s+AGENT\s+STEPS\s+TOKENS IN/OUT\s+COST_USD\s+CREATED$`, lines[0])
	require.Contains(t, r.stdout, rb.ID)
	require.Regexp(t, rb.ID+`\s+succeeded\s+demo\s+2\s+\d+/\d+\s+0\.\d+\s`, r.stdout)

	r = ts.cli(t, "", nil, "runs", "list", "-limit", "1", "-o", "json")
	require.NoError(t, r.err)
	var page struct {
		Runs       []runBody `json:"runs"`
		NextCursor string    `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
	require.Len(t, page.Runs, 1)
	require.NotEmpty(t, page.NextCursor)

	// Cancelling a finished run changes nothing.
	r = ts.cli(t, "", nil, "runs", "cancel", rb.ID, "-o", "json")
	require.NoError(t, r.err)
	var after runBody
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &after))
	require.Equal(t, "succeeded", after.Status)

	r = ts.cli(t, "", nil, "runs", "get", "run_nope")
	require.EqualError(t, r.err, "404 not_found: run not found")
	r = ts.cli(t, "", nil, "runs", "tail", "run_nope")
	require.EqualError(t, r.err, "404 not_found: run not found", "a missing run is not retried")
	r = ts.cli(t, "", nil, "runs", "cancel", "run_nope")
	require.EqualError(t, r.err, "404 not_found: run not found")
	r = ts.cli(t, "", nil, "runs", "list", "-status", "bogus")
	require.ErrorContains(t, r.err, "400 invalid_request: status: must be one of")
}

// Cancelling a running run stops it: it ends canceled, and tail reports
// the run's error event with a non-zero result.
func TestRunsCancelRunning(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{simLatency: 3 * time.Second})
	rb := submit(t, ts, "demo", "Slow one")
	waitStatus(t, ts, rb.ID, "running")
	r := ts.cli(t, "", nil, "runs", "cancel", rb.ID)
	require.NoError(t, r.err, r.stderr)
	require.Regexp(t, `(?m)^ID\s+`+rb.ID+`$`, r.stdout)
	waitStatus(t, ts, rb.ID, "canceled")
	r = ts.cli(t, "", nil, "runs", "tail", rb.ID)
	var re *RunError
	require.ErrorAs(t, r.err, &re)
	require.Equal(t, "canceled", re.Type)
}

// cutProxy forwards TCP connections to target; the i-th connection
// (0-based, i < len(cuts)) is closed right after the response bytes up to
// the end of cuts[i] were forwarded: in the middle of an event.
type cutProxy struct {
	ln     net.Listener
	target string
	cuts   []string

	mu       sync.Mutex
	requests []string // each connection's request head
}

func startCutProxy(t *testing.T, target string, cuts ...string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target, cuts: cuts}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(i, c)
		}
	}()
	return p
}

func (p *cutProxy) serve(i int, client net.Conn) {
	defer client.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		buf := make([]byte, 4096)
		n, _ := client.Read(buf) // the request head: a GET fits
		p.mu.Lock()
		p.requests = append(p.requests, string(buf[:n]))
		p.mu.Unlock()
		_, _ = up.Write(buf[:n])
		_, _ = io.Copy(up, client)
	}()
	if i >= len(p.cuts) {
		_, _ = io.Copy(client, up)
		return
	}
	var seen []byte
	buf := make([]byte, 4096)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			start := len(seen)
			seen = append(seen, buf[:n]...)
			if k := bytes.Index(seen, []byte(p.cuts[i])); k >= 0 {
				end := k + len(p.cuts[i])
				if end > start {
					_, _ = client.Write(seen[start:end])
				}
				return // cut: both connections close
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) heads() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// runs tail survives connections cut in the middle of an event: it
// resumes with Last-Event-ID and prints every event of the run exactly
// once, in order, the same as the server stored.
func TestRunsTailResumesAfterDisconnect(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{simLatency: 150 * time.Millisecond})
	rb := submit(t, ts, "demo", "What is one plus one? Use the calculator.")
	proxy := startCutProxy(t, strings.TrimPrefix(ts.url, "http://"),
		"event: text_delta\ndata: {\"step\":1", // connection 1: cut inside the first text delta
		"event: tool_result\ndata: {",          // connection 2: inside the tool result
	)
	var out, errOut bytes.Buffer
	err := Main(t.Context(), "runs", []string{"tail", "-o", "json", rb.ID},
		IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Environ: []string{"AGENTD_URL=http://" + proxy.ln.Addr().String()}})
	require.NoError(t, err, errOut.String())
	require.Equal(t, 2, strings.Count(errOut.String(), "connection lost"), errOut.String())

	got := jsonEvents(t, out.String())
	for i, ev := range got {
		require.Equal(t, int64(i+1), ev.ID, "no event missing or repeated")
	}
	require.Equal(t, "done", got[len(got)-1].Event)

	// What the server stored, read directly.
	resp, err := http.Get(ts.url + "/v1/runs/" + rb.ID + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	var stored []jsonLine
	rd := newSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		stored = append(stored, jsonLine{ID: ev.ID, Event: ev.Name, Data: ev.Data})
	}
	require.Len(t, got, len(stored))
	for i := range stored {
		require.Equal(t, stored[i].Event, got[i].Event)
		require.JSONEq(t, string(stored[i].Data), string(got[i].Data))
	}

	heads := proxy.heads()
	require.Len(t, heads, 3)
	require.NotContains(t, heads[0], "Last-Event-Id")
	lastID := func(head string) int {
		var n int
		for l := range strings.SplitSeq(head, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Last-Event-Id: "); ok {
				_, err := fmt.Sscan(v, &n)
				require.NoError(t, err)
			}
		}
		return n
	}
	first, second := lastID(heads[1]), lastID(heads[2])
	require.Positive(t, first, heads[1])
	require.Greater(t, second, first)
	require.Equal(t, "text_delta", stored[first].Event, "the first cut was inside event %d", first+1)
	require.Equal(t, "tool_result", stored[second].Event, "the second cut was inside event %d", second+1)
}

// The human view of tail: the text, the tool call and result, a summary.
func TestRunsTailHuman(t *testing.T) {
	t.Parallel()
	ts := sharedServer(t)
	r := ts.cli(t, "", nil, "runs", "submit", "-tail", "demo", "What is one plus one? Use the calculator.")
	require.NoError(t, r.err, r.stderr)
	require.Regexp(t, `(?m)^run run_\S+ · agent demo · model claude-sonnet-4-5 · conversation conv_\S+$`, r.stdout)
	require.Contains(t, r.stdout, "  ⚙ calculator {\"a\":1,\"b\":1,\"op\":\"+\"}\n")
	require.Regexp(t, `(?m)^done: end_turn · 2 steps · \d+ input / \d+ output tokens · \$0\.\d+$`, r.stdout)
}

// usage prints the tenant's totals as a table, or the server's JSON.
func TestUsage(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	r := ts.cli(t, "Hello\n", nil, "chat", "demo")
	require.NoError(t, r.err)
	require.Eventually(t, func() bool {
		r = ts.cli(t, "", nil, "usage")
		require.NoError(t, r.err)
		return strings.Contains(r.stdout, "demo")
	}, 10*time.Second, 50*time.Millisecond, "the usage row is written in the background")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Regexp(t, `^usage by agent, \S+ \S+ to \S+ \S+ \(UTC\)$`, lines[0])
	require.Regexp(t, `GROUP\s+REQUESTS\s+INPUT\s+OUTPUT\s+CACHE_WRITE\s+CACHE_READ\s+COST_USD`, lines[1])
	require.Regexp(t, `^\s*demo\s+1\s+\d+\s+\d+\s+0\s+0\s+0\.\d+\s*$`, lines[2])
	require.Regexp(t, `^\s*TOTAL\s+1\s+`, lines[3])

	r = ts.cli(t, "", nil, "usage", "-group-by", "model", "-o", "json")
	require.NoError(t, r.err)
	var body struct {
		GroupBy string        `json:"group_by"`
		Rows    []usageTotals `json:"rows"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &body))
	require.Equal(t, "model", body.GroupBy)
	require.Len(t, body.Rows, 1)
	require.Equal(t, "claude-sonnet-4-5", body.Rows[0].Group)

	r = ts.cli(t, "", nil, "usage", "-group-by", "planet")
	require.ErrorContains(t, r.err, "400 invalid_request: query parameter group_by must be one of")
	r = ts.cli(t, "", nil, "usage", "-o", "yaml")
	require.ErrorIs(t, r.err, ErrUsage)
}

// Errors say what happened: no server, no key, a wrong key.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{keys: true})

	r := ts.cli(t, "", nil, "runs", "list")
	require.EqualError(t, r.err, "401 unauthorized: an API key is required: Authorization: Bearer <key> or x-api-key: <key>; set AGENTD_API_KEY to a key of `agentd keys create`")
	r = ts.cli(t, "", []string{"AGENTD_API_KEY=agd_wrong"}, "usage")
	var ae *APIError
	require.ErrorAs(t, r.err, &ae)
	require.Equal(t, http.StatusUnauthorized, ae.Status)

	r = ts.cli(t, "hi\n", []string{"AGENTD_API_KEY=" + ts.key}, "chat", "demo")
	require.NoError(t, r.err, r.stderr)
	r = ts.cli(t, "", []string{"AGENTD_API_KEY=" + ts.key}, "runs", "list", "-o", "json")
	require.NoError(t, r.err)

	// Nothing listens on a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	for _, args := range [][]string{{"runs", "list"}, {"usage"}, {"runs", "tail", "run_x"}, {"chat", "demo"}} {
		r = ts.cli(t, "hi\n", nil, append(args, "-url", dead)...)
		var ue *UnreachableError
		require.ErrorAs(t, r.err, &ue, args)
		require.ErrorContains(t, r.err, "cannot reach agentd at "+dead+": dial tcp")
		require.ErrorContains(t, r.err, "connection refused (is it running? set -url or AGENTD_URL)")
	}
	r = ts.cli(t, "", nil, "runs", "get", "-url", "localhost:1", "x")
	require.ErrorIs(t, r.err, ErrUsage)
}
