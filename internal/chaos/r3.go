package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// load sends chats (POST /v1/chat, plain text: one model call) at a fixed
// rate and records each answer's status and time. It is the kit's own
// open-loop client (what `agentd load` does), so that every answer can be
// placed against the fault's timeline.
type load struct {
	base string
	rate float64
	runs bool // submit runs (POST /v1/runs) instead of chats

	mu      sync.Mutex
	results []result
	n       atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

type result struct {
	n       int64     // the request's number (its message names it)
	start   time.Time // when it was sent
	at      time.Time // when the answer (or the error) came
	status  int       // 0: transport error
	latency time.Duration
	err     string
	runID   string // runs: the accepted run
	server  string // the server HAProxy chose (its X-Agentd-Server header), when it says
}

func startLoad(base string, rate float64, runs bool) *load {
	l := &load{base: base, rate: rate, runs: runs, stop: make(chan struct{}), done: make(chan struct{})}
	go l.loop()
	return l
}

func (l *load) loop() {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	tk := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
	defer tk.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tk.C:
		}
		i := l.n.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := l.chat(i)
			r.n = i
			l.record(r)
		}()
	}
}

func (l *load) chat(i int64) result {
	if l.runs {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code, id, err := submitRun(ctx, l.base, fmt.Sprintf("chaos-load-%d", i), fmt.Sprintf("chaos load run %d: hello", i))
		r := result{start: start, at: time.Now(), status: code, latency: time.Since(start), runID: id}
		if err != nil {
			r.err = err.Error()
		}
		return r
	}
	body, _ := json.Marshal(map[string]string{"agent": "demo", "message": chatMessage(i)})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.base+"/v1/chat", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return result{start: start, at: time.Now(), latency: time.Since(start), err: err.Error()}
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := result{start: start, at: time.Now(), status: resp.StatusCode, latency: time.Since(start), server: resp.Header.Get(serverHeader)}
	if resp.StatusCode != http.StatusOK {
		r.err = string(bytes.TrimSpace(raw))
	}
	return r
}

// chatMessage is chat i's message (unique: the sim's ledger is keyed by it).
func chatMessage(i int64) string { return fmt.Sprintf("chaos chat %d: hello", i) }

func (l *load) record(r result) {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// Stop stops sending and waits for the answers in flight.
func (l *load) Stop() []result {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results
}

// healthSample is one GET /healthz.
type healthSample struct {
	at     time.Time
	code   int
	status string
	redis  string
}

// watchHealth polls url every 250 ms until stop is closed.
func watchHealth(url string, stop <-chan struct{}) <-chan []healthSample {
	out := make(chan []healthSample, 1)
	go func() {
		var s []healthSample
		for {
			select {
			case <-stop:
				out <- s
				return
			case <-time.After(250 * time.Millisecond):
			}
			h := healthSample{at: time.Now()}
			resp, err := client.Get(url)
			if err == nil {
				var body struct {
					Status     string `json:"status"`
					Components struct {
						Redis struct {
							Status string `json:"status"`
						} `json:"redis"`
					} `json:"components"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				h.code, h.status, h.redis = resp.StatusCode, body.Status, body.Components.Redis.Status
			}
			s = append(s, h)
		}
	}()
	return out
}

// R3RedisConfig is the Redis outage scenario.
type R3RedisConfig struct {
	Rate    float64
	Before  time.Duration
	Outage  time.Duration
	After   time.Duration
	Latency time.Duration
}

func (c *R3RedisConfig) flags(fs *flag.FlagSet) {
	fs.Float64Var(&c.Rate, "rate", 20, "chats per second")
	fs.DurationVar(&c.Before, "before", 5*time.Second, "load before the outage")
	fs.DurationVar(&c.Outage, "outage", 30*time.Second, "how long Redis is stopped")
	fs.DurationVar(&c.After, "after", 10*time.Second, "load after Redis is back")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "the simulated model's latency")
}

// RunR3Redis stops Redis (SIGTERM) under chat load, starts it again, and
// checks: no 5xx at all, /healthz degraded during the outage (after its
// first check interval) and ok after.
func RunR3Redis(ctx context.Context, e *Env, cfg R3RedisConfig) error {
	t0 := time.Now()
	redis, err := e.StartRedis(ctx)
	if err != nil {
		return err
	}
	c, err := e.startCluster(ctx, 1, cfg.Latency, fmt.Sprintf("redis://127.0.0.1:%d/0", redis.Port))
	if err != nil {
		return err
	}
	e.Logf("R3-redis: cluster up in %s (Redis :%d, PostgreSQL :%d, HAProxy :%d)", time.Since(t0).Round(time.Millisecond), redis.Port, c.pg.Port, c.lb.Port)
	stopH := make(chan struct{})
	health := watchHealth(c.api.Base()+"/healthz", stopH)
	l := startLoad(c.lb.Base(), cfg.Rate, false)
	if err := sleep(ctx, cfg.Before); err != nil {
		return err
	}
	down := time.Now()
	redis.Signal(syscall.SIGTERM)
	e.Logf("R3-redis: Redis stopped")
	if err := sleep(ctx, cfg.Outage); err != nil {
		return err
	}
	if err := redis.Start(); err != nil {
		return err
	}
	up := time.Now()
	e.Logf("R3-redis: Redis started again")
	if err := sleep(ctx, cfg.After); err != nil {
		return err
	}
	results := l.Stop()
	close(stopH)
	samples := <-health

	var total, fivexx, other, during int
	for _, r := range results {
		total++
		if r.at.After(down) && r.at.Before(up) {
			during++
		}
		switch {
		case r.status >= 500 || r.status == 0:
			fivexx++
			if fivexx <= 3 {
				e.Logf("R3-redis: chat answered %d %s", r.status, r.err)
			}
		case r.status != http.StatusOK:
			other++
		}
	}
	// /healthz: degraded within 7 s of the stop (its checks run every 5 s,
	// each bounded by the Redis timeout, and are polled every 250 ms) and
	// until the restart; ok again after the restart (first ok after up).
	degradedAt, okAgain := time.Duration(-1), time.Duration(-1)
	notDegradedDuring := 0
	for _, s := range samples {
		switch {
		case s.at.After(down) && s.at.Before(up):
			if s.status == "degraded" && s.redis != "ok" && degradedAt < 0 {
				degradedAt = s.at.Sub(down)
			}
			if s.at.After(down.Add(7*time.Second)) && s.status != "degraded" {
				notDegradedDuring++
			}
		case s.at.After(up):
			if s.status == "ok" && okAgain < 0 {
				okAgain = s.at.Sub(up)
			}
		}
	}
	last := healthSample{}
	if len(samples) > 0 {
		last = samples[len(samples)-1]
	}
	ok := fivexx == 0 && other == 0 && degradedAt >= 0 && notDegradedDuring == 0 && okAgain >= 0 && last.status == "ok"
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(e.Out, "R3-redis %s chats=%d (during outage %d) 5xx_or_transport=%d other_non_200=%d outage=%s "+
		"healthz_degraded_after=%s healthz_not_degraded_samples_during=%d healthz_ok_after_restart=%s healthz_last=%s wall=%s\n",
		verdict, total, during, fivexx, other, cfg.Outage, degradedAt.Round(time.Millisecond), notDegradedDuring,
		okAgain.Round(time.Millisecond), last.status, time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}
