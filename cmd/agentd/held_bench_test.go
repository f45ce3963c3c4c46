package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/loadgen"
)

// BenchmarkHeldStreamingChats measures what a streaming chat that waits
// for its model costs agentd in memory: the real binary (`agentd serve` on
// SQLite, HTTP/2 to the model as in docs/benchmarks.md) and `agentd sim`
// holding every model call, as child processes; this process opens the
// chats. While all of them are held it reads agentd's runtime statistics
// (/debug/pprof/heap?debug=1) and RSS, then the live heap after a forced
// GC; at the end the peak RSS (VmHWM). Every metric is per chat, over the
// idle process:
//
//	stack-B/chat      goroutine stacks (the handler's depth decides most)
//	live-heap-B/chat  heap still in use after a GC
//	rss-held-B/chat   RSS while held, before the GC
//	rss-peak-B/chat   peak RSS of the whole run (answers included)
//	goroutines/chat
//
// One run whatever b.N. Environment: AGENTD_BENCH_HELD_CHATS (default
// 1000), AGENTD_BENCH_HOLD (the sim's latency, default 10s),
// AGENTD_BENCH_HELD_PROFILE (a directory: the heap profile and the
// goroutines while the chats are held are written there),
// AGENTD_BENCH_HELD_CLIENT (the chats' protocol to agentd: http1, the
// default, a connection per chat; or h2c, HTTP/2 streams sharing a few
// connections). agentd's model calls always use h2c to the sim. The 10,000-chat
// figures in docs/benchmarks.md come from `agentd load -concurrent`; this
// benchmark is the repeatable check of the same quantities.
func BenchmarkHeldStreamingChats(b *testing.B) {
	n := envInt(b, "AGENTD_BENCH_HELD_CHATS", 1000)
	hold := envDuration(b, "AGENTD_BENCH_HOLD", 10*time.Second)
	ramp := hold / 4

	dir := b.TempDir()
	bin := buildAgentd(b, dir)
	sim := startSim(b, dir, bin, "-latency", hold.String())
	cfg := fmt.Sprintf(`server: {addr: 127.0.0.1:0, admin_token: adm}
auth: {mode: none}
store: {url: %q}
providers:
  anthropic:
    base_url: %s
    api_key: k
    simulate: never
    h2c: true
    concurrency: {max_in_flight: -1}
admission: {max_chats: %d, max_streams: %d}
log: {level: warn}
agents: [{name: demo, model: claude-sonnet-4-5, timeout: 2m}]
`, "sqlite://"+filepath.Join(dir, "agentd.db"), sim.base, 2*n, 2*n)
	cfgPath := filepath.Join(dir, "held.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	srv := startServeProc(b, dir, "serve", bin, cfgPath, "all")
	pid := srv.cmd.Process.Pid

	tr := &http.Transport{MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}
	switch proto := os.Getenv("AGENTD_BENCH_HELD_CLIENT"); proto {
	case "", "http1":
	case "h2c":
		// The chats as streams of a few HTTP/2 connections (250
		// streams each, the server's default), not a connection each.
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	default:
		b.Fatalf("AGENTD_BENCH_HELD_CLIENT: want http1 or h2c, got %q", proto)
	}
	client := &http.Client{Transport: tr}
	defer client.CloseIdleConnections()
	// Warm up (first-use costs: statements, caches) before the baseline.
	for i := range 5 {
		if err := heldChat(b.Context(), client, srv.base, i); err != nil {
			b.Fatal(err)
		}
	}
	idle := readRuntimeStats(b, srv.base, pid, true)

	b.ResetTimer()
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(ramp * time.Duration(i) / time.Duration(n))))
		wg.Go(func() {
			if err := heldChat(b.Context(), client, srv.base, i); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	// All opened by ramp; the first is answered at hold.
	time.Sleep(time.Until(start.Add(ramp + (hold-ramp)/3)))
	held := readRuntimeStats(b, srv.base, pid, false)
	live := readRuntimeStats(b, srv.base, pid, true)
	if dir := os.Getenv("AGENTD_BENCH_HELD_PROFILE"); dir != "" {
		// What the held chats are made of: the live heap (after the GC
		// above) and the goroutines, for go tool pprof.
		for name, url := range map[string]string{
			"heap.pb.gz":    srv.base + "/debug/pprof/heap",
			"goroutine.txt": srv.base + "/debug/pprof/goroutine?debug=1",
		} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(adminGet(b, url)), 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	if since := time.Since(start); since >= hold {
		b.Fatalf("the snapshots took until %v, after the first answers (%v): raise AGENTD_BENCH_HOLD", since, hold)
	}
	wg.Wait()
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d chats failed; first: %v", f, n, firstErr.Load())
	}
	peak := procStatusKB(b, pid, "VmHWM")

	per := func(v, base uint64) float64 { return (float64(v) - float64(base)) / float64(n) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(per(held.stack, idle.stack), "stack-B/chat")
	b.ReportMetric(per(live.heapAlloc, idle.heapAlloc), "live-heap-B/chat")
	b.ReportMetric(per(held.rss, idle.rss), "rss-held-B/chat")
	b.ReportMetric(per(peak, idle.rss), "rss-peak-B/chat")
	b.ReportMetric(per(uint64(held.goroutines), uint64(idle.goroutines)), "goroutines/chat")
	b.Logf("%d chats held %v: idle RSS %d KB, held RSS %d KB, peak RSS %d KB, stacks %d KB, live heap %d KB",
		n, hold, idle.rss>>10, held.rss>>10, peak>>10, held.stack>>10, live.heapAlloc>>10)
}

// heldChat is one streaming chat, read to its end; an error event or a
// stream without done is an error.
func heldChat(ctx context.Context, client *http.Client, base string, i int) error {
	body := fmt.Sprintf(`{"agent":"demo","message":"held chat %d","stream":true}`, i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("chat %d: %s: %s", i, resp.Status, raw)
	}
	done := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		switch line := sc.Bytes(); {
		case bytes.Equal(line, []byte("event: error")):
			return fmt.Errorf("chat %d: error event", i)
		case bytes.Equal(line, []byte("event: done")):
			done = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("chat %d: %w", i, err)
	}
	if !done {
		return fmt.Errorf("chat %d: stream ended without done", i)
	}
	return nil
}

type runtimeStats struct {
	rss, stack, heapAlloc uint64
	goroutines            int
}

var memStatLine = regexp.MustCompile(`(?m)^# (Stack|HeapAlloc) = (\d+)`)

// readRuntimeStats reads agentd's memory statistics; with gc, after a
// forced collection (the live heap).
func readRuntimeStats(tb testing.TB, base string, pid int, gc bool) runtimeStats {
	tb.Helper()
	url := base + "/debug/pprof/heap?debug=1"
	if gc {
		url += "&gc=1"
	}
	var st runtimeStats
	for _, m := range memStatLine.FindAllStringSubmatch(adminGet(tb, url), -1) {
		v, _ := strconv.ParseUint(m[2], 10, 64)
		switch m[1] {
		case "Stack":
			st.stack = v
		case "HeapAlloc":
			st.heapAlloc = v
		}
	}
	if st.stack == 0 || st.heapAlloc == 0 {
		tb.Fatalf("no Stack/HeapAlloc in %s", url)
	}
	first, _, _ := strings.Cut(adminGet(tb, base+"/debug/pprof/goroutine?debug=1"), "\n")
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &st.goroutines); err != nil {
		tb.Fatalf("goroutine profile: %q: %v", first, err)
	}
	st.rss = procStatusKB(tb, pid, "VmRSS")
	return st
}

func adminGet(tb testing.TB, url string) string {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer adm")
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(raw)
}

// procStatusKB returns a "kB" field of /proc/PID/status, in bytes.
func procStatusKB(tb testing.TB, pid int, field string) uint64 {
	tb.Helper()
	v, err := loadgen.ProcStatus(pid, field)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		tb.Fatalf("%s: %q: %v", field, v, err)
	}
	return kb << 10
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s: want a positive integer, got %q", name, v)
	}
	return n
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("%s: want a positive duration, got %q", name, v)
	}
	return d
}
