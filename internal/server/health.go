package server

import (
	"context"

	"github.com/agentd/agentd/internal/llm/resilience"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Pinger checks a dependency.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Health tracks readiness and the cached result of background dependency
// checks, so that probes never call a dependency themselves.
type Health struct {
	Store    Pinger
	Interval time.Duration // between checks; defaults to 5s
	Timeout  time.Duration // per check; defaults to 2s
	Version  string
	Log      *slog.Logger
	// Breakers reports the model circuit breakers (nil: none). An open
	// breaker makes health "degraded", never readiness false: fallbacks
	// may still answer.
	Breakers func() []resilience.BreakerStatus

	started time.Time
	ready   atomic.Bool

	mu        sync.RWMutex
	storeErr  string
	storeLat  time.Duration
	checkedAt time.Time
}

// SetReady flips readiness: true once start-up has really finished, false
// when draining.
func (h *Health) SetReady(v bool) { h.ready.Store(v) }

// Run checks dependencies every Interval until ctx is done.
func (h *Health) Run(ctx context.Context) error {
	if h.Interval <= 0 {
		h.Interval = 5 * time.Second
	}
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		h.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check runs the dependency checks once and caches their result.
func (h *Health) Check(ctx context.Context) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := h.Store.Ping(cctx)
	lat := time.Since(start)
	h.mu.Lock()
	prev := h.storeErr
	h.storeErr, h.storeLat, h.checkedAt = "", lat, time.Now()
	if err != nil {
		h.storeErr = err.Error()
	}
	h.mu.Unlock()
	if h.Log != nil && prev != h.storeErr && ctx.Err() == nil {
		if err != nil {
			h.Log.Error("store check failed", "err", err)
		} else if prev != "" {
			h.Log.Info("store check recovered")
		}
	}
}

// MarkStarted records the process start for uptime.
func (h *Health) MarkStarted(t time.Time) { h.started = t }

func (h *Health) storeOK() (ok bool, lastErr string, lat time.Duration, at time.Time) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.storeErr == "" && !h.checkedAt.IsZero(), h.storeErr, h.storeLat, h.checkedAt
}

func (s *Server) handleLivez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	h := s.health
	storeOK, lastErr, _, _ := h.storeOK()
	switch {
	case !h.ready.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": "starting or draining"})
	case !storeOK:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": "store unreachable: " + lastErr})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

type componentHealth struct {
	Status    string    `json:"status"`
	LatencyMS float64   `json:"latency_ms"`
	LastError string    `json:"last_error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	h := s.health
	storeOK, lastErr, lat, at := h.storeOK()
	st := componentHealth{Status: "ok", LatencyMS: float64(lat.Microseconds()) / 1000, LastError: lastErr, CheckedAt: at}
	overall, code := "ok", http.StatusOK
	components := map[string]any{"store": st}
	if h.Breakers != nil {
		breakers := h.Breakers()
		status := "ok"
		var open []string
		for _, b := range breakers {
			if b.State == "open" {
				open = append(open, b.Model)
			}
		}
		if len(open) > 0 {
			status, overall = "degraded", "degraded"
		}
		components["breakers"] = map[string]any{"status": status, "open": open, "models": breakers}
	}
	if !storeOK {
		st.Status, overall, code = "down", "down", http.StatusServiceUnavailable
		components["store"] = st
	}
	writeJSON(w, code, map[string]any{
		"status":         overall,
		"ready":          h.ready.Load(),
		"version":        h.Version,
		"uptime_seconds": int64(time.Since(h.started).Seconds()),
		"components":     components,
		"sse_streams":    s.sse.Load(),
	})
}
