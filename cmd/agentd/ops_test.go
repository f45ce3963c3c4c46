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
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	msg := fmt.Sprintf("ops chat %03d: what time is it? use the clock", i)
	body, _ := json.Marshal(map[string]any{"agent": "demo", "message": msg, "stream": stream})
	resp, err := client.Post(base+"/v1/chat", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("chat %d: %w", i, err)
	}
	defer resp.Body.Close()
	if !stream {
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("chat %d: read: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("chat %d: %d %s", i, resp.StatusCode, raw)
		}
		var a struct {
			Steps int    `json:"steps"`
			Text  string `json:"text"`
		}
		if err := json.Unmarshal(raw, &a); err != nil || a.Steps != 2 || a.Text == "" {
			return fmt.Errorf("chat %d: incomplete answer %s (%v)", i, raw, err)
		}
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("stream %d: %d %s", i, resp.StatusCode, raw)
	}
	var types []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "event:") {
			types = append(types, strings.TrimSpace(line[6:]))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("stream %d: read after events %v: %w", i, types, err)
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
			"serve", "-config", cfg, "-role", roleAll)
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
