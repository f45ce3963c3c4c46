package main

// Operations tests (issue 6, "It must show"):
//
//   - TestOpsRollingReplacementUnderLoad: two agentd processes on one
//     PostgreSQL schema behind a readiness-aware proxy, steady load (sync
//     chats, streaming chats, async runs), one instance SIGTERMed mid-load
//     and a replacement started: no client request fails, no run is lost,
//     the drained process exits 0.
//   - TestOpsOverload: one instance driven past its in-flight limit and its
//     memory high-water mark: 503 + Retry-After + JSON error for the excess,
//     the admitted requests succeed, readiness follows the memory guard and
//     recovers, /livez answers 200 throughout.
//
//	AGENTD_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -race -run TestOps -v ./cmd/agentd/

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
)

// readyProxy is a small load balancer: round-robin over the backends whose
// GET /readyz answered 200 at the last poll (every pollEvery). A backend
// that refuses a connection is marked not ready and the request goes to the
// next one (nothing was sent, so that is safe for any method). Any other
// upstream error is answered 502: the client sees it as a failure.
type readyProxy struct {
	tr        *http.Transport
	pollEvery time.Duration

	mu       sync.Mutex
	backends []*proxyBackend
	next     int
}

type proxyBackend struct {
	name   string
	base   string
	ready  atomic.Bool
	served atomic.Int64 // requests answered by this backend
}

func newReadyProxy(t *testing.T) (*readyProxy, *httptest.Server) {
	t.Helper()
	p := &readyProxy{
		tr:        &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true},
		pollEvery: 100 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.poll(ctx)
	}()
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		p.tr.CloseIdleConnections()
	})
	return p, srv
}

// add registers a backend (not ready until a poll says so).
func (p *readyProxy) add(name, base string) *proxyBackend {
	b := &proxyBackend{name: name, base: base}
	p.mu.Lock()
	p.backends = append(p.backends, b)
	p.mu.Unlock()
	return b
}

func (p *readyProxy) poll(ctx context.Context) {
	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	t := time.NewTicker(p.pollEvery)
	defer t.Stop()
	for {
		p.mu.Lock()
		bs := append([]*proxyBackend(nil), p.backends...)
		p.mu.Unlock()
		for _, b := range bs {
			resp, err := client.Get(b.base + "/readyz")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ready.Store(ok)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pick returns the next ready backend not in skip, or nil.
func (p *readyProxy) pick(skip map[*proxyBackend]bool) *proxyBackend {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range len(p.backends) {
		b := p.backends[p.next%len(p.backends)]
		p.next++
		if b.ready.Load() && !skip[b] {
			return b
		}
	}
	return nil
}

func (p *readyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "proxy: read body: "+err.Error(), http.StatusBadGateway)
		return
	}
	skip := map[*proxyBackend]bool{}
	for {
		b := p.pick(skip)
		if b == nil {
			http.Error(w, "proxy: no ready backend", http.StatusServiceUnavailable)
			return
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, b.base+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := p.tr.RoundTrip(out)
		if errors.Is(err, syscall.ECONNREFUSED) {
			b.ready.Store(false)
			skip[b] = true
			continue
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("proxy: %s: %v", b.name, err), http.StatusBadGateway)
			return
		}
		b.served.Add(1)
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		// Flush as bytes arrive: event streams pass through live.
		buf := make([]byte, 32<<10)
		for {
			n, rerr := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
			if rerr != nil {
				if rerr != io.EOF {
					// Cut the client's response too: a truncated
					// answer must not look complete.
					panic(http.ErrAbortHandler)
				}
				return
			}
		}
	}
}

// opsChat posts one chat through base and checks the answer is complete:
// 200, two steps (the clock tool, then the answer), a text. With stream,
// the event stream must end with its done event and carry no error event.
func opsChat(client *http.Client, base string, i int, stream bool) error {
	status, _, raw, err := postChat(client, base, i, stream)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("chat %d (stream %v): %d %s", i, stream, status, raw)
	}
	return checkAnswer(i, stream, raw)
}

// postChat posts chat i (a unique message that takes the clock tool) and
// reads the whole answer.
func postChat(client *http.Client, base string, i int, stream bool) (int, http.Header, []byte, error) {
	msg := fmt.Sprintf("ops chat %03d: what time is it? use the clock", i)
	body, _ := json.Marshal(map[string]any{"agent": "demo", "message": msg, "stream": stream})
	resp, err := client.Post(base+"/v1/chat", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("chat %d (stream %v): %w", i, stream, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("chat %d (stream %v): read after %q: %w", i, stream, raw, err)
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// checkAnswer checks the body of a 200 chat answer is complete.
func checkAnswer(i int, stream bool, raw []byte) error {
	if !stream {
		var a struct {
			Steps int    `json:"steps"`
			Text  string `json:"text"`
		}
		if err := json.Unmarshal(raw, &a); err != nil || a.Steps != 2 || a.Text == "" {
			return fmt.Errorf("chat %d: incomplete answer %s (%v)", i, raw, err)
		}
		return nil
	}
	var types []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "event:") {
			types = append(types, strings.TrimSpace(line[6:]))
		}
	}
	if len(types) == 0 || types[len(types)-1] != "done" {
		return fmt.Errorf("stream %d: does not end with done: %v", i, types)
	}
	for _, typ := range types {
		if typ == "error" {
			return fmt.Errorf("stream %d: error event: %v", i, types)
		}
	}
	return nil
}

// opsWaitRun polls a run through base until it is terminal.
func opsWaitRun(client *http.Client, base, id string, within time.Duration) (runBody, error) {
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(base + "/v1/runs/" + id)
		if err != nil {
			return runBody{}, fmt.Errorf("poll run %s: %w", id, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return runBody{}, fmt.Errorf("poll run %s: read: %w", id, err)
		}
		if resp.StatusCode != http.StatusOK {
			return runBody{}, fmt.Errorf("poll run %s: %d %s", id, resp.StatusCode, raw)
		}
		var r runBody
		if err := json.Unmarshal(raw, &r); err != nil {
			return runBody{}, fmt.Errorf("poll run %s: %s: %w", id, raw, err)
		}
		if r.terminal() {
			return r, nil
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("run %s not terminal after %s: %+v", id, within, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestOpsRollingReplacementUnderLoad(t *testing.T) {
	pgBase := os.Getenv("AGENTD_TEST_POSTGRES_URL")
	if pgBase == "" {
		t.Skip("AGENTD_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	if testing.Short() {
		t.Skip("starts processes and takes ~20s")
	}
	t0 := time.Now()
	dir := t.TempDir()
	bin := buildAgentd(t, dir)
	storeURL := pgSchema(t, pgBase) // cleanup registered first: runs last
	sim := startSim(t, dir, bin, "-latency", "300ms", "-jitter", "200ms")
	cfg := clusterConfig(t, dir, storeURL, sim.base)
	// drain_delay: the proxy polls readiness every 100ms, so 1s is ample
	// for it to stop routing to a draining instance before its listener
	// closes.
	start := func(name string) *proc {
		addr := clusterFreeAddr(t)
		return startProc(t, dir, name, addr, bin,
			[]string{"AGENTD_SERVER_ADDR=" + addr, "AGENTD_SERVER_DRAIN_DELAY=1s", "AGENTD_SERVER_DRAIN_TIMEOUT=15s"},
			"serve", "-config", cfg, "-role", app.RoleAll)
	}
	a := start("a")
	a.waitHTTP(t, "/readyz", 60*time.Second) // a migrates the schema first
	b := start("b")
	b.waitHTTP(t, "/readyz", 60*time.Second)
	proxy, front := newReadyProxy(t)
	pa, pb := proxy.add("a", a.base), proxy.add("b", b.base)
	require.Eventually(t, func() bool { return pa.ready.Load() && pb.ready.Load() }, 10*time.Second, 10*time.Millisecond)
	t.Logf("two instances ready behind the proxy after %s", time.Since(t0).Round(time.Millisecond))

	// Steady load for loadFor: chat clients (every third chat streams)
	// and run clients (submit, then poll the run to its end).
	const (
		loadFor     = 9 * time.Second
		chatClients = 6
		runClients  = 3
	)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	loadCtx, stopLoad := context.WithTimeout(context.Background(), loadFor)
	defer stopLoad()
	var (
		mu        sync.Mutex
		failures  []string
		chatsOK   atomic.Int64
		streamsOK atomic.Int64
		runIDs    []string
		runsOK    atomic.Int64
		seq       atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf("%s: %v", time.Since(t0).Round(time.Millisecond), err))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for c := range chatClients {
		wg.Go(func() {
			for k := 0; loadCtx.Err() == nil; k++ {
				i := int(seq.Add(1))
				stream := (c+k)%3 == 0
				if err := opsChat(client, front.URL, i, stream); err != nil {
					fail(err)
				} else if stream {
					streamsOK.Add(1)
				} else {
					chatsOK.Add(1)
				}
			}
		})
	}
	var runSeq atomic.Int64
	for range runClients {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				// Indexes into runIDs follow clusterMessage(i), for
				// checkRuns.
				mu.Lock()
				i := len(runIDs)
				runIDs = append(runIDs, "")
				mu.Unlock()
				runSeq.Add(1)
				id, err := submitRun(front.URL, clusterMessage(i))
				if err != nil {
					fail(err)
					mu.Lock()
					runIDs[i] = "failed submit"
					mu.Unlock()
					continue
				}
				mu.Lock()
				runIDs[i] = id
				mu.Unlock()
				r, err := opsWaitRun(client, front.URL, id, 60*time.Second)
				switch {
				case err != nil:
					fail(err)
				case r.Status != "succeeded":
					fail(fmt.Errorf("run %s ended %s: %s", id, r.Status, r.Error))
				default:
					runsOK.Add(1)
				}
			}
		})
	}

	// Mid-load: once instance a is busy (a chat or run in flight, a model
	// call made), start the replacement c and SIGTERM a.
	time.Sleep(3 * time.Second)
	require.Positive(t, llmCalls(a), "instance a made no model call before its drain")
	c := start("c")
	servedBefore := pa.served.Load()
	killedAt := time.Now()
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	t.Logf("SIGTERM to a (pid %d) %s into the load; a had answered %d proxied requests",
		a.cmd.Process.Pid, time.Since(t0).Round(time.Millisecond), servedBefore)
	pc := proxy.add("c", c.base)
	c.waitHTTP(t, "/readyz", 30*time.Second)
	t.Logf("replacement c ready %s after the SIGTERM", time.Since(killedAt).Round(time.Millisecond))

	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("a did not exit within 30s of SIGTERM\n%s", tailFile(a.logPath, 40))
	}
	require.NoError(t, a.err, "the drained instance must exit 0\n%s", tailFile(a.logPath, 40))
	exitedAfter := time.Since(killedAt)

	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, failures, "failed client requests")

	// Every run succeeded exactly once: checkRuns also reads each run's
	// events and conversation and the sim's ledger (no checkpointed model
	// call repeated).
	final := waitAllTerminal(t, b.base, runIDs, 60*time.Second)
	resumed := checkRuns(t, b.base, sim, runIDs, final)
	require.Equal(t, int64(len(runIDs)), runsOK.Load())

	require.Positive(t, pc.served.Load(), "the replacement took traffic")
	require.Positive(t, pb.served.Load())
	require.Contains(t, tailFile(a.logPath, 200), "agentd stopped")
	t.Logf("RESULT rolling replacement: chats=%d streams=%d runs=%d (resumed %d) failures=0; proxied a=%d b=%d c=%d; "+
		"SIGTERM->a exited 0 in %s; test wall %s",
		chatsOK.Load(), streamsOK.Load(), len(runIDs), resumed, pa.served.Load(), pb.served.Load(), pc.served.Load(),
		exitedAfter.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

// checkOverloaded checks a 503 of admission control: Retry-After in whole
// seconds, the JSON error body of type overloaded; the message contains
// want.
func checkOverloaded(status int, hdr http.Header, raw []byte, want string) error {
	if status != http.StatusServiceUnavailable {
		return fmt.Errorf("want 503, got %d %s", status, raw)
	}
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 {
		return fmt.Errorf("503 without a Retry-After of whole seconds: %q", hdr.Get("Retry-After"))
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("503 with Content-Type %q: %s", ct, raw)
	}
	var body struct {
		Error struct {
			Type      string `json:"type"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.Error.Type != "overloaded" || body.Error.RequestID == "" ||
		!strings.Contains(body.Error.Message, want) {
		return fmt.Errorf("503 body %s: want an overloaded error mentioning %q (%v)", raw, want, err)
	}
	return nil
}

var rejectedLine = regexp.MustCompile(`^agentd_admission_rejected_total\{limit="([^"]+)",reason="([^"]+)"\} (\S+)$`)

// admissionRejected reads agentd_admission_rejected_total by
// "limit/reason" from base's /metrics.
func admissionRejected(t *testing.T, base string) map[string]int {
	t.Helper()
	resp, err := clusterHTTP.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]int{}
	for _, line := range strings.Split(string(raw), "\n") {
		if m := rejectedLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[3], 64)
			require.NoError(t, err, line)
			out[m[1]+"/"+m[2]] = int(v)
		}
	}
	return out
}

// memoryHealth reads the memory component of base's /healthz.
func memoryHealth(t *testing.T, base string) (used, limit uint64, shedding bool) {
	t.Helper()
	resp, err := clusterHTTP.Get(base + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Components struct {
			Memory struct {
				Used     uint64 `json:"used_bytes"`
				Limit    uint64 `json:"limit_bytes"`
				Shedding bool   `json:"shedding"`
			} `json:"memory"`
		} `json:"components"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	m := body.Components.Memory
	return m.Used, m.Limit, m.Shedding
}

// readyzStatus returns the status of GET base/readyz (0 on error).
func readyzStatus(base string) int {
	resp, err := clusterHTTP.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// stalledUpload is a POST /v1/chat whose body (a message of size bytes) is
// sent but for its last bytes: the server holds what it read of it, and
// the request holds that memory until finish sends the rest.
type stalledUpload struct {
	conn net.Conn
	rest []byte
}

func startStalledUpload(t *testing.T, addr string, size int) *stalledUpload {
	t.Helper()
	const prefix, suffix = `{"agent":"demo","message":"`, `"}`
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = fmt.Fprintf(conn, "POST /v1/chat HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		addr, len(prefix)+size+len(suffix), prefix)
	require.NoError(t, err)
	const held = 1024
	_, err = conn.Write(bytes.Repeat([]byte("x"), size-held))
	require.NoError(t, err)
	return &stalledUpload{conn: conn, rest: append(bytes.Repeat([]byte("x"), held), suffix...)}
}

// finish sends the rest of the body and reads the answer.
func (u *stalledUpload) finish() (int, http.Header, []byte, error) {
	defer u.conn.Close()
	if _, err := u.conn.Write(u.rest); err != nil {
		return 0, nil, nil, err
	}
	_ = u.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(u.conn), nil)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, err
}

// TestOpsOverload drives one instance (a child process, GOMEMLIMIT=256MiB)
// over its chat limit and then over its memory high-water mark, probing
// /livez every 50ms throughout.
func TestOpsOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and takes ~20s")
	}
	t0 := time.Now()
	dir := t.TempDir()
	bin := buildAgentd(t, dir)
	sim := startSim(t, dir, bin, "-latency", "1s")
	const (
		memLimit  = 256 << 20
		highWater = 0.3
		lowWater  = 0.15
	)
	cfgPath := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_timeout: 5s
  drain_delay: 0s
  max_body_bytes: 33554432
store:
  url: %q
admission:
  max_chats: 2
  chat_queue: 2
  queue_timeout: 500ms
  memory_high_water: %g
  memory_low_water: %g
providers:
  anthropic:
    base_url: %s
    api_key: k
    simulate: never
auth:
  mode: none
log:
  level: info
  format: json
agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [clock]
`, "sqlite://"+filepath.ToSlash(filepath.Join(dir, "agentd.db")), highWater, lowWater, sim.base)), 0o600))
	addr := clusterFreeAddr(t)
	p := startProc(t, dir, "overloaded", addr, bin,
		[]string{"AGENTD_SERVER_ADDR=" + addr, fmt.Sprintf("GOMEMLIMIT=%d", memLimit)},
		"serve", "-config", cfgPath)
	p.waitHTTP(t, "/readyz", 60*time.Second)

	// /livez every 50ms until the end: every probe must answer 200.
	var (
		probes     atomic.Int64
		probeMu    sync.Mutex
		probeFails []string
	)
	probeCtx, stopProbes := context.WithCancel(context.Background())
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		pc := &http.Client{Timeout: 2 * time.Second}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			resp, err := pc.Get(p.base + "/livez")
			probes.Add(1)
			switch {
			case err != nil:
				probeMu.Lock()
				probeFails = append(probeFails, fmt.Sprintf("%s: %v", time.Since(t0).Round(time.Millisecond), err))
				probeMu.Unlock()
			default:
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					probeMu.Lock()
					probeFails = append(probeFails, fmt.Sprintf("%s: %d", time.Since(t0).Round(time.Millisecond), resp.StatusCode))
					probeMu.Unlock()
				}
			}
			select {
			case <-probeCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() {
		stopProbes()
		<-probesDone
	}()
	client := &http.Client{Timeout: 30 * time.Second}

	// 1. Over the in-flight limit: 8 chats at once (2 of them streams)
	// against 2 slots and 2 places in the queue. An admitted chat takes
	// two model calls of 1s, longer than the queue's 500ms: exactly 2 are
	// admitted and answered in full; the other 6 get 503 at once (queue
	// full) or after 500ms (queue timeout).
	const burst = 8
	type outcome struct {
		status int
		err    error
	}
	outcomes := make([]outcome, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			stream := i%4 == 0
			status, hdr, raw, err := postChat(client, p.base, i, stream)
			switch {
			case err != nil:
			case status == http.StatusOK:
				err = checkAnswer(i, stream, raw)
			default:
				err = checkOverloaded(status, hdr, raw, "chat")
			}
			outcomes[i] = outcome{status, err}
		})
	}
	wg.Wait()
	admitted := 0
	for i, o := range outcomes {
		require.NoError(t, o.err, "chat %d", i)
		if o.status == http.StatusOK {
			admitted++
		}
	}
	require.Equal(t, 2, admitted, "max_chats: 2; outcomes %v", outcomes)
	rej := admissionRejected(t, p.base)
	require.Equal(t, burst-2, rej["chat/queue_full"]+rej["chat/queue_timeout"], "rejections counted: %v", rej)
	require.Positive(t, rej["chat/queue_timeout"], "two chats waited in the queue: %v", rej)
	require.Equal(t, http.StatusOK, readyzStatus(p.base), "a full chat queue does not make the instance unready")
	require.NoError(t, opsChat(client, p.base, 100, false), "after the burst a chat is admitted")
	t.Logf("in-flight limit: %d admitted, %d refused with 503 (%v), %s into the test",
		admitted, burst-admitted, rej, time.Since(t0).Round(time.Millisecond))

	// 2. Over the memory high-water mark: normal operation is below the
	// low-water mark; large uploads held open (8 x 12 MiB, read by the
	// server as they arrive) take it over the high-water mark.
	used, limit, shedding := memoryHealth(t, p.base)
	require.EqualValues(t, memLimit, limit, "the guard found GOMEMLIMIT")
	require.False(t, shedding)
	require.Less(t, float64(used), lowWater*float64(limit), "normal operation is below the low-water mark")
	const uploads, uploadSize = 8, 12 << 20
	ups := make([]*stalledUpload, uploads)
	for i := range ups {
		ups[i] = startStalledUpload(t, addr, uploadSize)
	}
	pushedAt := time.Now()
	deadline := pushedAt.Add(10 * time.Second)
	for readyzStatus(p.base) != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			used, _, _ := memoryHealth(t, p.base)
			t.Fatalf("/readyz still 200 10s after the uploads; memory used %d MiB of %d MiB", used>>20, limit>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
	shedAfter := time.Since(pushedAt)
	used, _, shedding = memoryHealth(t, p.base)
	require.True(t, shedding)
	require.GreaterOrEqual(t, float64(used), highWater*float64(limit))
	t.Logf("memory guard shedding %s after the uploads: %d MiB used of %d MiB", shedAfter.Round(time.Millisecond), used>>20, limit>>20)

	// New work is shed: a chat, a stream, a run submission.
	status, hdr, raw, err := postChat(client, p.base, 200, false)
	require.NoError(t, err)
	require.NoError(t, checkOverloaded(status, hdr, raw, "memory"))
	status, hdr, raw, err = postChat(client, p.base, 201, true)
	require.NoError(t, err)
	require.NoError(t, checkOverloaded(status, hdr, raw, "memory"))
	resp, err := client.Post(p.base+"/v1/runs", "application/json", strings.NewReader(`{"agent":"demo","message":"shed me"}`))
	require.NoError(t, err)
	raw, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.NoError(t, checkOverloaded(resp.StatusCode, resp.Header, raw, "memory"))

	// The uploads complete: their chats are new work, shed too. Then
	// their memory is garbage: the instance recovers below the low-water
	// mark and is ready again.
	for i, u := range ups {
		status, hdr, raw, err := u.finish()
		require.NoError(t, err, "upload %d", i)
		require.NoError(t, checkOverloaded(status, hdr, raw, "memory"), "upload %d", i)
	}
	releasedAt := time.Now()
	deadline = releasedAt.Add(10 * time.Second)
	for readyzStatus(p.base) != http.StatusOK {
		if time.Now().After(deadline) {
			used, _, _ := memoryHealth(t, p.base)
			t.Fatalf("/readyz not 200 10s after the uploads ended; memory used %d MiB of %d MiB (low-water mark %d MiB)",
				used>>20, limit>>20, uint64(lowWater*float64(limit))>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recoveredAfter := time.Since(releasedAt)
	used, _, shedding = memoryHealth(t, p.base)
	require.False(t, shedding)
	require.NoError(t, opsChat(client, p.base, 300, false), "recovered: chats are admitted")
	require.NoError(t, opsChat(client, p.base, 301, true), "recovered: streams are admitted")
	rej = admissionRejected(t, p.base)
	require.GreaterOrEqual(t, rej["chat/memory"], 2+uploads, "%v", rej)
	require.GreaterOrEqual(t, rej["submit/memory"], 1, "%v", rej)
	t.Logf("recovered %s after the uploads ended: %d MiB used", recoveredAfter.Round(time.Millisecond), used>>20)

	// /livez answered 200 to every probe; the instance drains and exits 0.
	stopProbes()
	<-probesDone
	probeMu.Lock()
	require.Empty(t, probeFails, "/livez probes that were not 200")
	probeMu.Unlock()
	elapsed := time.Since(t0)
	require.Greater(t, probes.Load(), int64(20), "probes ran")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
	require.NoError(t, p.err)
	t.Logf("RESULT overload: in-flight burst %d (2 admitted); memory shed after %s, recovered %s after release; "+
		"/livez %d probes all 200; rejections %v; test wall %s",
		burst, shedAfter.Round(time.Millisecond), recoveredAfter.Round(time.Millisecond), probes.Load(), rej, elapsed.Round(time.Millisecond))
}
