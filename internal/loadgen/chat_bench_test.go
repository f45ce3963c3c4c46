package loadgen_test

// Benchmarks of agentd's per-request overhead: the whole stack in one
// process over real loopback HTTP — the Claude API simulator (zero latency,
// no faults) as an httptest server, agentd's API server with the chat
// service, the agent loop, a real SQLite store in b.TempDir() and the
// Anthropic SDK client pointed at the simulator.
//
// Each benchmark compares a request to the simulator directly with the same
// work through agentd; the difference is what agentd adds. See
// docs/benchmarks.md for commands, numbers and how to read them.
//
// Environment:
//
//	AGENTD_BENCH_RATE      fixed-rate benchmarks: requests per second (default 50)
//	AGENTD_BENCH_DURATION  fixed-rate benchmarks: measured duration (default 5s)
//	AGENTD_BENCH_WARMUP    fixed-rate benchmarks: unmeasured warmup (default 1s)

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/loadgen"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store/sqlite"
)

const (
	benchAgent   = "bench"
	benchModel   = "claude-sonnet-4-5"
	benchSimKey  = "sim-key"
	benchMessage = "Hello there, please answer this benchmark question."
)

var (
	// directBody is a minimal non-stream Messages API request.
	directBody = []byte(`{"model":"` + benchModel + `","max_tokens":1024,` +
		`"messages":[{"role":"user","content":"` + benchMessage + `"}]}`)
	// directStreamBody is the request agentd itself sends upstream for a
	// one-step chat (agentd always streams from the model).
	directStreamBody = []byte(`{"model":"` + benchModel + `","max_tokens":1024,"stream":true,` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"` + benchMessage + `"}]}]}`)
	chatBody       = []byte(`{"agent":"` + benchAgent + `","message":"` + benchMessage + `"}`)
	chatStreamBody = []byte(`{"agent":"` + benchAgent + `","message":"` + benchMessage + `","stream":true}`)
)

// stack is agentd and its upstream, in process.
type stack struct {
	sim    *httptest.Server
	agentd *httptest.Server
	// client is the load client's keep-alive HTTP client.
	client *http.Client
}

func newStack(tb testing.TB) *stack {
	tb.Helper()
	ctx := context.Background()
	simSrv := httptest.NewServer(sim.New(sim.Config{APIKey: benchSimKey}, nil))
	tb.Cleanup(simSrv.Close)

	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "agentd.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}

	// As `agentd serve` runs: JSON logs at info (one access-log line per
	// request), written to io.Discard so the formatting cost is counted
	// but not the terminal's; Prometheus metrics on.
	log, err := observe.NewLogger(io.Discard, "json", "info")
	if err != nil {
		tb.Fatal(err)
	}
	metrics := observe.NewMetrics("bench")
	// As serve.go builds it: the SDK's default HTTP client.
	model := anthropic.New(anthropic.Config{BaseURL: simSrv.URL, APIKey: benchSimKey, RequestTimeout: time.Minute})
	loop := &run.Loop{Model: model, Store: st, Log: log, Metrics: metrics}
	agents := map[string]*run.ChatAgent{benchAgent: {
		Agent: run.Agent{Name: benchAgent, Model: benchModel, MaxSteps: 8, MaxTokens: 1024, Timeout: time.Minute},
	}}
	svc := &run.Service{Loop: loop, Store: st, Agents: agents, Log: log, Metrics: metrics}
	api := server.New(server.Config{
		Chat: svc, Conversations: st, Metrics: metrics, Log: log, MaxBodyBytes: 1 << 20,
		Agents: []server.AgentInfo{{Name: benchAgent, Model: benchModel, Tools: []server.ToolInfo{}}},
	})
	agentdSrv := httptest.NewServer(api)
	tb.Cleanup(agentdSrv.Close)

	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	tb.Cleanup(tr.CloseIdleConnections)
	return &stack{sim: simSrv, agentd: agentdSrv, client: &http.Client{Transport: tr}}
}

// target is one kind of request the benchmarks send.
type target struct {
	name string
	url  string
	body []byte
	// firstEvent, if set, is the SSE event line whose arrival is the
	// "first token" of a stream.
	firstEvent []byte
	// key is sent as x-api-key when set.
	key string
}

func (s *stack) directTarget() target {
	return target{name: "direct", url: s.sim.URL + "/v1/messages", body: directBody, key: benchSimKey}
}

func (s *stack) directStreamTarget() target {
	return target{name: "direct-stream", url: s.sim.URL + "/v1/messages", body: directStreamBody, key: benchSimKey,
		firstEvent: []byte("event: content_block_delta")}
}

func (s *stack) agentdTarget() target {
	return target{name: "agentd", url: s.agentd.URL + "/v1/chat", body: chatBody}
}

func (s *stack) agentdStreamTarget() target {
	return target{name: "agentd-stream", url: s.agentd.URL + "/v1/chat", body: chatStreamBody,
		firstEvent: []byte("event: text_delta")}
}

var errorEvent = []byte("event: error")

// do sends one request and reads the whole answer. For a stream it
// returns when the first event arrived (zero if none or not a stream).
func (s *stack) do(ctx context.Context, t target) (first time.Time, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return first, err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.key != "" {
		req.Header.Set("X-Api-Key", t.key)
		req.Header.Set("Anthropic-Version", "2023-06-01")
	}
	res, err := s.client.Do(req)
	if err != nil {
		return first, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return first, fmt.Errorf("%s: %s: %s", t.name, res.Status, body)
	}
	if t.firstEvent == nil {
		_, err = io.Copy(io.Discard, res.Body)
		return first, err
	}
	br := bufio.NewReader(res.Body)
	for {
		line, err := br.ReadSlice('\n')
		if first.IsZero() && bytes.HasPrefix(line, t.firstEvent) {
			first = time.Now()
		}
		if bytes.HasPrefix(line, errorEvent) {
			return first, fmt.Errorf("%s: error event in stream", t.name)
		}
		if errors.Is(err, io.EOF) {
			if first.IsZero() {
				return first, fmt.Errorf("%s: stream ended without %s", t.name, t.firstEvent)
			}
			return first, nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return first, err
		}
	}
}

func (s *stack) mustDo(b *testing.B, t target) {
	if _, err := s.do(context.Background(), t); err != nil {
		b.Fatal(err)
	}
}

// warm opens connections and pays first-use costs (prepared statements,
// SDK and JSON caches) before measuring.
func (s *stack) warm(b *testing.B) {
	for range 20 {
		s.mustDo(b, s.directTarget())
		s.mustDo(b, s.directStreamTarget())
		s.mustDo(b, s.agentdTarget())
		s.mustDo(b, s.agentdStreamTarget())
	}
}

// mallocs returns the number of heap allocations of n requests to t.
func (s *stack) mallocs(b *testing.B, t target, n int) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		s.mustDo(b, t)
	}
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// BenchmarkChatDirectSim: sequential non-stream requests straight to the
// simulator — the floor (HTTP client + loopback + simulator).
func BenchmarkChatDirectSim(b *testing.B) {
	s := newStack(b)
	s.warm(b)
	t := s.directTarget()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.mustDo(b, t)
	}
}

// BenchmarkChatDirectSimStream: sequential stream requests straight to the
// simulator, the call agentd makes upstream for each chat.
func BenchmarkChatDirectSimStream(b *testing.B) {
	s := newStack(b)
	s.warm(b)
	t := s.directStreamTarget()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.mustDo(b, t)
	}
}

// BenchmarkChatThroughAgentd: sequential one-step POST /v1/chat requests,
// each starting a new conversation.
//
// allocs/op counts every allocation in the process: the load client, the
// agentd server, agentd's SDK client and the simulator. agentd-allocs/req
// estimates agentd's own share: the Mallocs delta (runtime.MemStats) of the
// b.N chat requests minus the delta of b.N direct stream requests to the
// simulator, which is the upstream call a chat makes (load client + the
// simulator's work). What remains is agentd's server, loop, store and SDK
// client work. direct-allocs/req is the subtracted baseline.
func BenchmarkChatThroughAgentd(b *testing.B) {
	s := newStack(b)
	s.warm(b)
	t := s.agentdTarget()
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		s.mustDo(b, t)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	through := after.Mallocs - before.Mallocs
	direct := s.mallocs(b, s.directStreamTarget(), b.N)
	b.ReportMetric(float64(direct)/float64(b.N), "direct-allocs/req")
	b.ReportMetric((float64(through)-float64(direct))/float64(b.N), "agentd-allocs/req")
}

// benchConfig is the fixed-rate load, from the environment.
func benchConfig(b *testing.B) loadgen.Config {
	cfg := loadgen.Config{Rate: 50, Duration: 5 * time.Second, Warmup: time.Second, MaxInFlight: 512, Timeout: 30 * time.Second}
	if v := os.Getenv("AGENTD_BENCH_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("AGENTD_BENCH_RATE: %v", err)
		}
		cfg.Rate = r
	}
	for name, dst := range map[string]*time.Duration{"AGENTD_BENCH_DURATION": &cfg.Duration, "AGENTD_BENCH_WARMUP": &cfg.Warmup} {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			*dst = d
		}
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	return cfg
}

// fixedRate runs cfg against t and returns the result and, for a stream,
// the time-to-first-event percentiles (from the scheduled start).
func (s *stack) fixedRate(b *testing.B, cfg loadgen.Config, t target) (loadgen.Result, loadgen.Percentiles) {
	var ttft loadgen.Samples
	res, err := loadgen.Run(context.Background(), cfg, func(ctx context.Context) error {
		first, err := s.do(ctx, t)
		if err == nil && !first.IsZero() && !loadgen.IsWarmup(ctx) {
			if at, ok := loadgen.Scheduled(ctx); ok {
				ttft.Add(first.Sub(at))
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%-13s %v", t.name, res)
	if res.Errors > 0 || res.Dropped > 0 {
		b.Errorf("%s: %d errors, %d dropped (first error: %v)", t.name, res.Errors, res.Dropped, res.FirstErr)
	}
	tp := ttft.Percentiles()
	if t.firstEvent != nil {
		b.Logf("%-13s time to first event %v", t.name, tp)
	}
	return res, tp
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runFixedRate runs the load once (b.N is ignored: one run is the
// measurement) against direct, then through agentd, one after the other so
// the two never compete for the CPUs.
func runFixedRate(b *testing.B, direct, through func(*stack) target) {
	cfg := benchConfig(b)
	s := newStack(b)
	s.warm(b)
	b.ResetTimer()
	d, dFirst := s.fixedRate(b, cfg, direct(s))
	a, aFirst := s.fixedRate(b, cfg, through(s))
	b.StopTimer()
	b.ReportMetric(0, "ns/op") // meaningless here: one run whatever b.N
	b.ReportMetric(ms(d.Latency.P50), "direct-p50-ms")
	b.ReportMetric(ms(d.Latency.P99), "direct-p99-ms")
	b.ReportMetric(ms(a.Latency.P50), "agentd-p50-ms")
	b.ReportMetric(ms(a.Latency.P99), "agentd-p99-ms")
	b.ReportMetric(ms(a.Latency.P50-d.Latency.P50), "added-p50-ms")
	b.ReportMetric(ms(a.Latency.P99-d.Latency.P99), "added-p99-ms")
	b.ReportMetric(a.Rate, "agentd-req/s")
	if dFirst.N > 0 && aFirst.N > 0 {
		b.ReportMetric(ms(dFirst.P50), "direct-ttft-p50-ms")
		b.ReportMetric(ms(aFirst.P50), "agentd-ttft-p50-ms")
		b.ReportMetric(ms(aFirst.P50-dFirst.P50), "added-ttft-p50-ms")
		b.ReportMetric(ms(aFirst.P99-dFirst.P99), "added-ttft-p99-ms")
	}
}

// BenchmarkChatFixedRate: open-loop fixed-rate load (AGENTD_BENCH_RATE for
// AGENTD_BENCH_DURATION), non-stream, straight to the simulator and then
// through agentd; added-* is agentd minus direct at the same percentile.
func BenchmarkChatFixedRate(b *testing.B) {
	runFixedRate(b, (*stack).directTarget, (*stack).agentdTarget)
}

// BenchmarkChatFixedRateStream: as BenchmarkChatFixedRate with streams on
// both sides (stream:true to agentd, SSE events); *-ttft-* is the time from
// the scheduled start to the first text event (content_block_delta from
// the simulator, text_delta from agentd), the other latencies run to the
// end of the stream.
func BenchmarkChatFixedRateStream(b *testing.B) {
	runFixedRate(b, (*stack).directStreamTarget, (*stack).agentdStreamTarget)
}
