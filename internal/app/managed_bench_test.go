package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// The latency of a turn's first signs of life, through the Managed Agents
// face and through /v1/runs, on one agentd (SQLite, in-process simulator,
// 127.0.0.1): from the request that starts the turn (a user.message sent
// to a new session; POST /v1/runs) to
//
//   - running: session.status_running on the session's stream; the run's
//     start event on GET /v1/runs/{id}/events;
//   - first delta: the first event_delta (agent.message preview) on the
//     session's stream (opened with event_deltas[]=agent.message); the
//     first text_delta of the run.
//
// b.N turns start at AGENTD_BENCH_RATE per second (default 20), each on
// its own session (the session is created, and its stream opened, before
// the clock starts). Reported: p50 and p99 of both, and of the time until
// the request that starts the turn answered (accepted), in ms. docs/benchmarks.md
// has the numbers and the command:
//
//	go test -run '^$' -bench 'TurnLatency' -benchtime 400x ./internal/app/

const benchAgents = `agents:
  - name: demo
    model: claude-sonnet-4-5
worker:
  concurrency: 64
  poll_interval: 50ms
`

func benchRate(b *testing.B) time.Duration {
	rate := 20.0
	if s := os.Getenv("AGENTD_BENCH_RATE"); s != "" {
		var err error
		rate, err = strconv.ParseFloat(s, 64)
		require.NoError(b, err)
	}
	return time.Duration(float64(time.Second) / rate)
}

// turnTimes are one turn's two latencies.
type turnTimes struct{ running, delta, accepted time.Duration }

// face names a face's events: the turn runs, its first text delta, its
// end (any of ends).
type face struct {
	name, running, delta string
	ends                 []string
}

var (
	managedFace = face{name: "session", running: "session.status_running", delta: "event_delta", ends: []string{"session.status_idle"}}
	runsFace    = face{name: "run", running: "start", delta: "text_delta", ends: []string{"done", "error"}}
)

// see records in tt when an event of type typ came (since start); done
// at the turn's end, with an error if it ended before it ran and sent a
// delta.
func (f face) see(tt *turnTimes, start time.Time, id, typ string) (done bool, err error) {
	switch {
	case typ == f.running:
		if tt.running == 0 {
			tt.running = time.Since(start)
		}
	case typ == f.delta:
		if tt.delta == 0 {
			tt.delta = time.Since(start)
		}
	case slices.Contains(f.ends, typ):
		if tt.running == 0 || tt.delta == 0 {
			return true, fmt.Errorf("%s %s: ended before it ran and a delta (%+v)", f.name, id, *tt)
		}
		return true, nil
	}
	return false, nil
}

// benchBackend is the store the turn-latency benchmarks run on:
// AGENTD_BENCH_BACKEND (sqlite, the default, or postgres, on
// AGENTD_TEST_POSTGRES_URL).
func benchBackend() string {
	if s := os.Getenv("AGENTD_BENCH_BACKEND"); s != "" {
		return s
	}
	return "sqlite"
}

// startBench starts the benchmarks' server on benchBackend, its store in
// the default configuration (on PostgreSQL: agentd's default pool size,
// not the tests' smaller one).
func startBench(b *testing.B) *managedBundle {
	if benchBackend() == "postgres" {
		return startManagedOn(b, pgtest.Schema(b, pgtest.BaseURL(b), 0), benchAgents)
	}
	return startManagedWith(b, benchBackend(), benchAgents)
}

// timedTurn is one face's turn, as the benchmarks time it.
type timedTurn struct {
	name string // its metrics' prefix ("": none)
	turn func(ctx context.Context) (turnTimes, error)
}

// paced runs b.N turns at the bench rate and reports the percentiles.
func paced(b *testing.B, turn func(ctx context.Context) (turnTimes, error)) {
	pacedFaces(b, timedTurn{turn: turn})
}

// pacedFaces runs b.N turns at the bench rate, the faces taking turns
// (one after the other, on one server at the same time, so that both meet
// the same store stalls), and reports each face's percentiles.
func pacedFaces(b *testing.B, faces ...timedTurn) {
	every := benchRate(b)
	var (
		mu    sync.Mutex
		times = make([][]turnTimes, len(faces))
		wg    sync.WaitGroup
		errs  = make(chan error, b.N)
	)
	b.ResetTimer()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		f := i % len(faces)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tt, err := faces[f].turn(ctx)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			times[f] = append(times[f], tt)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for f, face := range faces {
		if len(times[f]) == 0 {
			continue // b.N smaller than the faces
		}
		pct := func(get func(turnTimes) time.Duration, p float64) float64 {
			d := make([]time.Duration, len(times[f]))
			for i, t := range times[f] {
				d[i] = get(t)
			}
			slices.Sort(d)
			i := int(float64(len(d)-1) * p)
			return float64(d[i].Microseconds()) / 1000
		}
		prefix := face.name
		if prefix != "" {
			prefix += "_"
		}
		run := func(t turnTimes) time.Duration { return t.running }
		delta := func(t turnTimes) time.Duration { return t.delta }
		acc := func(t turnTimes) time.Duration { return t.accepted }
		b.ReportMetric(pct(run, 0.50), prefix+"p50_running_ms")
		b.ReportMetric(pct(run, 0.99), prefix+"p99_running_ms")
		b.ReportMetric(pct(delta, 0.50), prefix+"p50_delta_ms")
		b.ReportMetric(pct(delta, 0.99), prefix+"p99_delta_ms")
		b.ReportMetric(pct(acc, 0.50), prefix+"p50_accepted_ms")
		b.ReportMetric(pct(acc, 0.99), prefix+"p99_accepted_ms")
	}
	b.ReportMetric(float64(time.Second)/float64(every), "turns/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkManagedTurnLatency drives the face with the official SDK
// client; AGENTD_BENCH_MANAGED_CLIENT=raw drives the same requests with
// plain HTTP and a line scanner, the kind of client BenchmarkRunTurnLatency
// uses, so that the two faces' figures differ by the server's work only
// (the SDK's decoding of every frame runs in this process, on the same
// cores as the server).
func BenchmarkManagedTurnLatency(b *testing.B) {
	mb := startBench(b)
	c := mb.Client
	ctx := b.Context()
	env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "bench"})
	require.NoError(b, err)
	if os.Getenv("AGENTD_BENCH_MANAGED_CLIENT") == "raw" {
		paced(b, rawManagedTurn(mb, env.ID))
		return
	}
	paced(b, func(ctx context.Context) (turnTimes, error) {
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}, EnvironmentID: env.ID})
		if err != nil {
			return turnTimes{}, err
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream := c.Beta.Sessions.Events.StreamEvents(sctx, sess.ID, anthropic.BetaSessionEventStreamParams{
			EventDeltas: []anthropic.BetaManagedAgentsDeltaType{anthropic.BetaManagedAgentsDeltaTypeAgentMessage}})
		defer stream.Close()
		start := time.Now()
		if _, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, say("hello there")); err != nil {
			return turnTimes{}, err
		}
		tt := turnTimes{accepted: time.Since(start)}
		for stream.Next() {
			if done, err := managedFace.see(&tt, start, sess.ID, stream.Current().Type); done {
				return tt, err
			}
		}
		return tt, fmt.Errorf("session %s: stream ended: %w", sess.ID, stream.Err())
	})
}

// rawDo is a plain HTTP client of mb, with the headers both faces take.
func rawDo(mb *managedBundle) func(ctx context.Context, method, path, body string) (*http.Response, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	return func(ctx context.Context, method, path, body string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, mb.URL+path, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+mb.Key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("anthropic-beta", "managed-agents-2026-04-01")
		return client.Do(req)
	}
}

// rawManagedTurn is one managed turn as BenchmarkManagedTurnLatency
// times it, through plain HTTP: a session created and its stream opened
// before the clock starts, then a user.message sent.
func rawManagedTurn(mb *managedBundle, envID string) func(ctx context.Context) (turnTimes, error) {
	do := rawDo(mb)
	return func(ctx context.Context) (turnTimes, error) {
		resp, err := do(ctx, http.MethodPost, "/v1/sessions", `{"agent":"demo","environment_id":"`+envID+`"}`)
		if err != nil {
			return turnTimes{}, err
		}
		var sess struct {
			ID string `json:"id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&sess)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return turnTimes{}, fmt.Errorf("POST /v1/sessions: %d %v", resp.StatusCode, err)
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := do(sctx, http.MethodGet, "/v1/sessions/"+sess.ID+"/events/stream?event_deltas[]=agent.message", "")
		if err != nil {
			return turnTimes{}, err
		}
		defer stream.Body.Close()
		if stream.StatusCode != http.StatusOK {
			return turnTimes{}, fmt.Errorf("GET the stream of %s: %d", sess.ID, stream.StatusCode)
		}
		start := time.Now()
		resp, err = do(ctx, http.MethodPost, "/v1/sessions/"+sess.ID+"/events",
			`{"events":[{"type":"user.message","content":[{"type":"text","text":"hello there"}]}]}`)
		if err != nil {
			return turnTimes{}, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return turnTimes{}, fmt.Errorf("send to %s: %d", sess.ID, resp.StatusCode)
		}
		tt := turnTimes{accepted: time.Since(start)}
		sc := bufio.NewScanner(stream.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			if done, err := managedFace.see(&tt, start, sess.ID, strings.TrimPrefix(sc.Text(), "event: ")); done {
				return tt, err
			}
		}
		return tt, fmt.Errorf("session %s: stream ended: %v", sess.ID, sc.Err())
	}
}

func BenchmarkRunTurnLatency(b *testing.B) {
	paced(b, rawRunTurn(startBench(b)))
}

// BenchmarkTurnLatencyFaces alternates the two faces' turns on one server
// at AGENTD_BENCH_RATE turns per second in all: a managed turn (the raw
// client), then a /v1/runs turn, and so on. Both meet the same store
// stalls (a WAL checkpoint, a GC), so the difference of their
// percentiles is what the managed face adds; run one after the other, the
// two benchmarks above also differ by what each run happened to meet.
func BenchmarkTurnLatencyFaces(b *testing.B) {
	mb := startBench(b)
	env, err := mb.Client.Beta.Environments.New(b.Context(), anthropic.BetaEnvironmentNewParams{Name: "bench"})
	require.NoError(b, err)
	pacedFaces(b, timedTurn{"managed", rawManagedTurn(mb, env.ID)}, timedTurn{"runs", rawRunTurn(mb)})
}

// rawRunTurn is one /v1/runs turn as the benchmarks time it: the run
// submitted, then its events followed.
func rawRunTurn(mb *managedBundle) func(ctx context.Context) (turnTimes, error) {
	do := rawDo(mb)
	return func(ctx context.Context) (turnTimes, error) {
		start := time.Now()
		resp, err := do(ctx, http.MethodPost, "/v1/runs", `{"agent":"demo","message":"hello there"}`)
		if err != nil {
			return turnTimes{}, err
		}
		var r struct {
			ID string `json:"id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		accepted := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
			return turnTimes{}, fmt.Errorf("POST /v1/runs: %d %v", resp.StatusCode, err)
		}
		resp, err = do(ctx, http.MethodGet, "/v1/runs/"+r.ID+"/events", "")
		if err != nil {
			return turnTimes{}, err
		}
		defer resp.Body.Close()
		tt := turnTimes{accepted: accepted}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if done, err := runsFace.see(&tt, start, r.ID, strings.TrimPrefix(sc.Text(), "event: ")); done {
				return tt, err
			}
		}
		return tt, fmt.Errorf("run %s: stream ended: %v", r.ID, sc.Err())
	}
}
