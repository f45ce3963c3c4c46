package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/store"
)

// Pinger checks a dependency.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Health holds readiness and the cached results of background dependency
// checks: probes only read them, so a probe never calls a dependency, never
// opens a connection and answers in microseconds.
//
//   - /livez fails only when the process is wedged: the watchdog goroutine
//     has not ticked for WedgedAfter.
//   - /readyz is false while starting or draining, when the system-of-record
//     store is unreachable, or while the memory guard sheds work.
//   - /healthz reports every component: ok, degraded or down. A dead
//     optional dependency (Redis) or an open breaker degrades; it never
//     makes the instance unready.
type Health struct {
	Store    Pinger
	Interval time.Duration // between checks; defaults to 5s
	Timeout  time.Duration // per check; defaults to 2s
	Version  string
	Log      *slog.Logger
	// Redis is optional (nil: not configured); down means degraded.
	Redis Pinger
	// Queue reports queue depth and age (nil: no queue).
	Queue func(ctx context.Context) (store.QueueStats, error)
	// OnQueueStats receives each queue sample (metrics).
	OnQueueStats func(store.QueueStats)
	// Breakers reports every circuit breaker (nil: none): models, tools,
	// MCP servers, webhook hosts, Redis, the store. An open breaker makes
	// health "degraded" (fallbacks may still answer); an open "store"
	// breaker also makes the instance unready.
	Breakers func() []breaker.Status
	// Keys reports the model API keys (nil: none).
	Keys func() []resilience.KeyStatus
	// Memory is the memory guard (nil: none).
	Memory *admission.MemoryGuard
	// InFlight reports admitted work by limit (nil: none).
	InFlight func() map[string]int
	// WedgedAfter is how long the watchdog may miss ticks before /livez
	// fails. Defaults to 10s.
	WedgedAfter time.Duration

	started  time.Time
	ready    atomic.Bool
	draining atomic.Bool
	tick     atomic.Int64 // unix nanos of the watchdog's last tick

	mu     sync.RWMutex
	store  check
	redis  check
	queue  check
	qstats store.QueueStats
}

// check is the cached result of one dependency check.
type check struct {
	err       string
	latency   time.Duration
	checkedAt time.Time
}

func (c check) ok() bool { return c.err == "" && !c.checkedAt.IsZero() }

// SetReady flips readiness: true once start-up has really finished.
func (h *Health) SetReady(v bool) { h.ready.Store(v) }

// SetDraining marks the instance as draining: readiness goes false for good.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Draining reports whether a drain began.
func (h *Health) Draining() bool { return h.draining.Load() }

// MarkStarted records the process start for uptime.
func (h *Health) MarkStarted(t time.Time) {
	h.started = t
	h.tick.Store(time.Now().UnixNano())
}

// RunWatchdog ticks every second until ctx ends; /livez fails when the ticks
// stop (a wedged scheduler, a deadlock starving the runtime).
func (h *Health) RunWatchdog(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.tick.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// storeRecheck is the check interval while the store is unreachable: the
// instance is ready again within it of the store's return, not within
// Interval (agentd chaos r3-postgres measured up to 5 s of refusals through
// the load balancer after PostgreSQL was back).
const storeRecheck = 500 * time.Millisecond

// Run checks dependencies every Interval (every storeRecheck while the
// store is unreachable) until ctx is done.
func (h *Health) Run(ctx context.Context) error {
	if h.Interval <= 0 {
		h.Interval = 5 * time.Second
	}
	t := time.NewTimer(h.Interval)
	defer t.Stop()
	for {
		h.Check(ctx)
		wait := h.Interval
		h.mu.RLock()
		if h.store.err != "" {
			wait = min(wait, storeRecheck)
		}
		h.mu.RUnlock()
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check runs the dependency checks once, concurrently, and caches them.
func (h *Health) Check(ctx context.Context) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var wg sync.WaitGroup
	run := func(name string, dst *check, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			err := fn(cctx)
			c := check{latency: time.Since(start), checkedAt: time.Now()}
			if err != nil {
				c.err = err.Error()
			}
			h.mu.Lock()
			prev := *dst
			*dst = c
			h.mu.Unlock()
			if h.Log != nil && ctx.Err() == nil && prev.err != c.err {
				if c.err != "" {
					h.Log.Error("dependency check failed", "component", name, "err", c.err)
				} else if !prev.checkedAt.IsZero() {
					h.Log.Info("dependency check recovered", "component", name)
				}
			}
		}()
	}
	run("store", &h.store, h.Store.Ping)
	if h.Redis != nil {
		run("redis", &h.redis, h.Redis.Ping)
	}
	if h.Queue != nil {
		run("queue", &h.queue, func(ctx context.Context) error {
			st, err := h.Queue(ctx)
			if err == nil {
				h.mu.Lock()
				h.qstats = st
				h.mu.Unlock()
				if h.OnQueueStats != nil {
					h.OnQueueStats(st)
				}
			}
			return err
		})
	}
	wg.Wait()
}

func (h *Health) wedged() bool {
	limit := h.WedgedAfter
	if limit <= 0 {
		limit = 10 * time.Second
	}
	return time.Since(time.Unix(0, h.tick.Load())) > limit
}

// notReady returns why the instance is not ready, or "".
func (h *Health) notReady() string {
	h.mu.RLock()
	st := h.store
	h.mu.RUnlock()
	switch {
	case h.draining.Load():
		return "draining"
	case !h.ready.Load():
		return "starting"
	case !st.ok():
		if st.err == "" {
			return "store not checked yet"
		}
		return "store unreachable: " + st.err
	case h.Memory.Shedding():
		return "memory above the high-water mark"
	case h.storeBreakerOpen():
		return "store circuit breaker open"
	}
	return ""
}

// storeBreakerOpen reports whether the store's breaker refuses calls.
func (h *Health) storeBreakerOpen() bool {
	if h.Breakers == nil {
		return false
	}
	for _, b := range h.Breakers() {
		if b.Dependency == breaker.Store {
			return b.State == breaker.StateOpen
		}
	}
	return false
}

func (s *Server) handleLivez(w http.ResponseWriter, _ *http.Request) {
	if s.health.wedged() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "wedged", "reason": "the watchdog stopped ticking"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if reason := s.health.notReady(); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ComponentHealth is a checked dependency (store, Redis).
type ComponentHealth struct {
	Status    string    `json:"status"`
	LatencyMS float64   `json:"latency_ms"`
	LastError string    `json:"last_error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

func checked(c check, down string) ComponentHealth {
	status := "ok"
	if !c.ok() {
		status = down
	}
	return ComponentHealth{Status: status, LatencyMS: float64(c.latency.Microseconds()) / 1000, LastError: c.err, CheckedAt: c.checkedAt}
}

// HealthReport is what /healthz answers: the overall status and every
// component. The operator console renders the same value.
type HealthReport struct {
	// Status is the worst component: "ok", "degraded", or "down" (the
	// store only; /healthz answers 503 then).
	Status        string           `json:"status"`
	Ready         bool             `json:"ready"`
	Draining      bool             `json:"draining"`
	Version       string           `json:"version"`
	UptimeSeconds int64            `json:"uptime_seconds"`
	Components    HealthComponents `json:"components"`
	SSEStreams    int64            `json:"sse_streams"`
	InFlight      map[string]int   `json:"in_flight,omitempty"`
}

// HealthComponents are the components of a HealthReport; nil ones are not
// configured.
type HealthComponents struct {
	Store    ComponentHealth  `json:"store"`
	Redis    *ComponentHealth `json:"redis,omitempty"`
	Queue    *QueueHealth     `json:"queue,omitempty"`
	Breakers *BreakersHealth  `json:"breakers,omitempty"`
	Keys     *KeysHealth      `json:"keys,omitempty"`
	Memory   *MemoryHealth    `json:"memory,omitempty"`
}

// QueueHealth is the queue component.
type QueueHealth struct {
	Status           string         `json:"status"`
	LastError        string         `json:"last_error"`
	CheckedAt        time.Time      `json:"checked_at"`
	Depth            int            `json:"depth"`
	DepthByAgent     map[string]int `json:"depth_by_agent"`
	OldestAgeSeconds float64        `json:"oldest_age_seconds"`
	Running          int            `json:"running"`
}

// BreakersHealth is the circuit breakers component: every dependency's
// breaker (model:NAME, tool:NAME, mcp:NAME, mcp-url:HOST, webhook:HOST, redis,
// store).
type BreakersHealth struct {
	Status   string           `json:"status"`
	Open     []string         `json:"open"`
	Breakers []breaker.Status `json:"breakers"`
}

// KeysHealth is the model API key pool component. Pool (each key by its
// fingerprint) is for the console; /healthz shows the counts only.
type KeysHealth struct {
	Status string                 `json:"status"`
	Usable int                    `json:"usable"`
	Total  int                    `json:"total"`
	Pool   []resilience.KeyStatus `json:"-"`
}

// MemoryHealth is the memory guard component.
type MemoryHealth struct {
	Status     string `json:"status"`
	UsedBytes  uint64 `json:"used_bytes"`
	LimitBytes uint64 `json:"limit_bytes"`
	Shedding   bool   `json:"shedding"`
}

// Report computes the health report from the cached checks (it never calls
// a dependency); sse is the number of open event streams.
func (h *Health) Report(sse int64) HealthReport {
	h.mu.RLock()
	stc, rc, qc, qs := h.store, h.redis, h.queue, h.qstats
	h.mu.RUnlock()
	overall := "ok"
	degrade := func() {
		if overall == "ok" {
			overall = "degraded"
		}
	}
	var c HealthComponents
	c.Store = checked(stc, "down")
	if h.Redis != nil {
		rh := checked(rc, "degraded")
		if rh.Status != "ok" {
			degrade()
		}
		c.Redis = &rh
	}
	if h.Queue != nil {
		qh := checked(qc, "degraded")
		if qh.Status != "ok" {
			degrade()
		}
		depth := 0
		for _, n := range qs.Depth {
			depth += n
		}
		oldest := 0.0
		if !qs.OldestQueuedAt.IsZero() {
			oldest = time.Since(qs.OldestQueuedAt).Seconds()
		}
		c.Queue = &QueueHealth{Status: qh.Status, LastError: qh.LastError, CheckedAt: qh.CheckedAt,
			Depth: depth, DepthByAgent: qs.Depth, OldestAgeSeconds: oldest, Running: qs.Running}
	}
	if h.Breakers != nil {
		breakers := h.Breakers()
		status := "ok"
		open := []string{}
		for _, b := range breakers {
			if b.State == breaker.StateOpen {
				open = append(open, b.Dependency)
			}
		}
		if len(open) > 0 {
			status = "degraded"
			degrade()
		}
		c.Breakers = &BreakersHealth{Status: status, Open: open, Breakers: breakers}
	}
	if h.Keys != nil {
		keys := h.Keys()
		usable := 0
		for _, k := range keys {
			if k.State != "bad" {
				usable++
			}
		}
		status := "ok"
		switch {
		case usable == 0:
			status = "down"
			degrade()
		case usable < len(keys):
			status = "degraded"
			degrade()
		}
		c.Keys = &KeysHealth{Status: status, Usable: usable, Total: len(keys), Pool: keys}
	}
	if h.Memory != nil {
		used, limit := h.Memory.Usage()
		status := "ok"
		if h.Memory.Shedding() {
			status = "degraded"
			degrade()
		}
		c.Memory = &MemoryHealth{Status: status, UsedBytes: used, LimitBytes: limit, Shedding: h.Memory.Shedding()}
	}
	if c.Store.Status != "ok" {
		overall = "down"
	}
	rep := HealthReport{
		Status: overall, Ready: h.notReady() == "", Draining: h.draining.Load(), Version: h.Version,
		UptimeSeconds: int64(time.Since(h.started).Seconds()), Components: c, SSEStreams: sse,
	}
	if h.InFlight != nil {
		rep.InFlight = h.InFlight()
	}
	return rep
}

// HealthReport is the report /healthz answers.
func (s *Server) HealthReport() HealthReport { return s.health.Report(s.sse.Load()) }

// handleHealthz reports every component. The status is the worst of them
// ("down" only for the store: 503), degraded otherwise (200).
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	rep := s.HealthReport()
	code := http.StatusOK
	if rep.Status == "down" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rep)
}
