package abuse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// clock is a settable time for the detector.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// steady sends perMinute requests of key in each of minutes whole minutes,
// spread over each minute, and requires every one to pass. The clock ends
// at the start of the minute after.
func steady(t *testing.T, d *abuse.Detector, c *clock, tenant, key string, perMinute, minutes int) {
	t.Helper()
	start := c.Now()
	for m := range minutes {
		for i := range perMinute {
			c.Set(start.Add(time.Duration(m)*time.Minute + time.Duration(i)*time.Minute/time.Duration(perMinute)))
			dec := d.Allow(t.Context(), tenant, key)
			require.True(t, dec.Allowed, "minute %d request %d: %+v", m, i, dec.Throttle)
		}
	}
	c.Set(start.Add(time.Duration(minutes) * time.Minute))
}

// burst sends requests of key at the current time until one is refused and
// returns how many passed (at most limit).
func burst(t *testing.T, d *abuse.Detector, tenant, key string, limit int) (passed int, refused abuse.Decision) {
	t.Helper()
	for range limit {
		dec := d.Allow(t.Context(), tenant, key)
		if !dec.Allowed {
			return passed, dec
		}
		passed++
	}
	return passed, abuse.Decision{Allowed: true}
}

func TestJumpPastBaselineFlags(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := abuse.NewMetrics(prometheus.NewRegistry())
	d := abuse.New(abuse.Config{Multiple: 10, MinRequests: 5, Metrics: m, Now: c.Now})
	steady(t, d, c, "acme", "key_a", 22, 30) // baseline: 22 per minute
	require.Zero(t, value(t, m.Flagged.WithLabelValues(abuse.SignalRequests)))

	// A quarter into a window the previous one still counts 3/4 of its 22:
	// 16.5. The threshold is 10 × 22 = 220, so the 204th request (220.5)
	// is the first refused.
	c.Add(15 * time.Second)
	passed, dec := burst(t, d, "acme", "key_a", 1000)
	require.Equal(t, 203, passed)
	require.False(t, dec.Allowed)
	th := dec.Throttle
	require.Equal(t, "key_a", th.Subject)
	require.Equal(t, "key_a", th.KeyID)
	require.Equal(t, "acme", th.Tenant)
	require.Equal(t, abuse.SignalRequests, th.Signal)
	require.InDelta(t, 22, th.Baseline, 1e-9)
	require.InDelta(t, 220, th.Threshold, 1e-9)
	require.InDelta(t, 220.5, th.Rate, 1e-9)
	require.Equal(t, c.Now().Add(abuse.DefaultThrottleFor), th.Until)
	require.Equal(t, abuse.DefaultThrottleFor, dec.RetryAfter)

	// Throttled: refused, and counted once.
	c.Add(time.Minute)
	dec = d.Allow(t.Context(), "acme", "key_a")
	require.False(t, dec.Allowed)
	require.Equal(t, abuse.DefaultThrottleFor-time.Minute, dec.RetryAfter)
	require.Equal(t, 1.0, value(t, m.Flagged.WithLabelValues(abuse.SignalRequests)))
	require.Equal(t, 2, count(m.Flagged), "a series per signal, no key label")
	require.Equal(t, []abuse.Throttle{th}, d.Throttled())

	// Another key of the same tenant, and another tenant, are not affected.
	require.True(t, d.Allow(t.Context(), "acme", "key_b").Allowed)
	require.True(t, d.Allow(t.Context(), "globex", "key_c").Allowed)
}

func TestSteadyTrafficIsNotFlagged(t *testing.T) {
	t.Parallel()
	c := newClock()
	d := abuse.New(abuse.Config{Multiple: 5, MinRequests: 10, Now: c.Now})
	// Three hours at 40 per minute, with a busy hour at 120 per minute
	// in the middle (3 × the baseline: growth, not a jump past 5 ×).
	steady(t, d, c, "acme", "key_a", 40, 60)
	steady(t, d, c, "acme", "key_a", 120, 60)
	steady(t, d, c, "acme", "key_a", 40, 60)
	// Bursty within minutes but steady per minute: all 40 at once.
	for range 30 {
		passed, _ := burst(t, d, "acme", "key_a", 40)
		require.Equal(t, 40, passed)
		c.Add(time.Minute)
	}
	require.Empty(t, d.Throttled())
}

func TestFloorProtectsQuietKey(t *testing.T) {
	t.Parallel()
	c := newClock()
	d := abuse.New(abuse.Config{Multiple: 10, MinRequests: 10, Now: c.Now})
	// A quiet key: one request every ten minutes for two hours.
	for range 12 {
		require.True(t, d.Allow(t.Context(), "acme", "key_quiet").Allowed)
		c.Add(10 * time.Minute)
	}
	// Its first real use, 60 in a minute, is 600 × its baseline but below
	// 10 × the floor of 10: not flagged.
	passed, _ := burst(t, d, "acme", "key_quiet", 60)
	require.Equal(t, 60, passed)
	require.Empty(t, d.Throttled())

	// A new key is held to the floor too: 100 pass, the 101st is refused.
	passed, dec := burst(t, d, "acme", "key_new", 1000)
	require.Equal(t, 100, passed)
	require.False(t, dec.Allowed)
	require.Zero(t, dec.Throttle.Baseline)
	require.InDelta(t, 100, dec.Throttle.Threshold, 1e-9)
}

func TestThrottleExpires(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := abuse.NewMetrics(prometheus.NewRegistry())
	d := abuse.New(abuse.Config{MinRequests: 1, ThrottleFor: 10 * time.Minute, Metrics: m, Now: c.Now})
	steady(t, d, c, "acme", "key_a", 5, 20)
	passed, dec := burst(t, d, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	require.Less(t, passed, 60)
	require.Equal(t, 1.0, value(t, m.ThrottledKeys))

	c.Add(10*time.Minute - time.Second)
	dec = d.Allow(t.Context(), "acme", "key_a")
	require.False(t, dec.Allowed)
	require.Equal(t, time.Second, dec.RetryAfter)

	c.Add(time.Second)
	require.True(t, d.Allow(t.Context(), "acme", "key_a").Allowed)
	require.Empty(t, d.Throttled())
	require.Zero(t, value(t, m.ThrottledKeys))
	// The burst did not become the baseline: its usual rate passes, and
	// the same burst is flagged again.
	c.Add(time.Minute)
	steady(t, d, c, "acme", "key_a", 5, 5)
	again, dec := burst(t, d, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	require.InDelta(t, passed, again, 1)
}

func TestLift(t *testing.T) {
	t.Parallel()
	c := newClock()
	d := abuse.New(abuse.Config{Now: c.Now})
	_, dec := burst(t, d, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	require.False(t, d.Lift(t.Context(), "key_b"), "not throttled")
	require.False(t, d.Lift(t.Context(), ""))

	require.True(t, d.Lift(t.Context(), "key_a"))
	require.Empty(t, d.Throttled())
	require.True(t, d.Allow(t.Context(), "acme", "key_a").Allowed, "lifted at once, not re-flagged by the old burst")
	require.False(t, d.Lift(t.Context(), "key_a"), "already lifted")

	// A tenant-level subject (authentication off: no key).
	_, dec = burst(t, d, "default", "", 1000)
	require.False(t, dec.Allowed)
	require.Equal(t, "tenant:default", dec.Throttle.Subject)
	require.Empty(t, dec.Throttle.KeyID)
	require.True(t, d.Lift(t.Context(), "tenant:default"))
	require.True(t, d.Allow(t.Context(), "default", "").Allowed)
}

// usageSink records the rows it is given.
type usageSink struct {
	mu   sync.Mutex
	rows []store.UsageRecord
	err  error
}

func (s *usageSink) AppendUsage(_ context.Context, r store.UsageRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, r)
	return s.err
}

func TestSpendSignal(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := abuse.NewMetrics(prometheus.NewRegistry())
	d := abuse.New(abuse.Config{Multiple: 10, MinSpendUSD: 0.05, Metrics: m, Now: c.Now})
	sink := &usageSink{}
	rec := &abuse.Recorder{Next: sink, Detector: d}
	ctx := t.Context()

	// $0.30 a minute (three calls of $0.10) for an hour.
	for range 60 {
		for range 3 {
			require.NoError(t, rec.AppendUsage(ctx, store.UsageRecord{Tenant: "acme", Key: "key_a", CostUSD: money.FromUSD(0.10)}))
			c.Add(20 * time.Second)
		}
	}
	require.Empty(t, d.Throttled())
	// Requests do not trip it (a handful a minute, floor 10).
	require.True(t, d.Allow(ctx, "acme", "key_a").Allowed)

	// $3.10 in a minute: more than 10 × $0.30 (the previous window counts
	// fully at its very start, so $3.10 in this one is certain).
	var flagged bool
	for i := range 40 {
		require.NoError(t, rec.AppendUsage(ctx, store.UsageRecord{Tenant: "acme", Key: "key_a", CostUSD: money.FromUSD(0.10)}))
		if len(d.Throttled()) > 0 {
			flagged = true
			require.Greater(t, i, 20, "flagged too early")
			break
		}
	}
	require.True(t, flagged)
	th := d.Throttled()[0]
	require.Equal(t, abuse.SignalSpend, th.Signal)
	require.Equal(t, "key_a", th.KeyID)
	require.InDelta(t, 0.30, th.Baseline, 1e-9)
	require.Equal(t, 1.0, value(t, m.Flagged.WithLabelValues(abuse.SignalSpend)))
	require.Zero(t, value(t, m.Flagged.WithLabelValues(abuse.SignalRequests)))
	// The key's requests are refused now; every row was still stored.
	require.False(t, d.Allow(ctx, "acme", "key_a").Allowed)
	require.True(t, d.Allow(ctx, "acme", "key_b").Allowed)
	sink.mu.Lock()
	require.Greater(t, len(sink.rows), 180)
	sink.mu.Unlock()

	// The store's error is passed on; the spend is counted anyway.
	sink.err = errors.New("disk full")
	require.ErrorContains(t, rec.AppendUsage(ctx, store.UsageRecord{Tenant: "acme", CostUSD: money.FromUSD(0.01)}), "disk full")
}

// TestTenantSpendThrottlesItsKeys: spend without a key (queued runs) is
// the tenant's; flagged, it throttles every key of the tenant.
func TestTenantSpendThrottlesItsKeys(t *testing.T) {
	t.Parallel()
	c := newClock()
	d := abuse.New(abuse.Config{MinSpendUSD: 0.05, Now: c.Now})
	d.ObserveSpend(t.Context(), "acme", "", 0.49)
	require.Empty(t, d.Throttled())
	d.ObserveSpend(t.Context(), "acme", "", 0.02)
	require.Len(t, d.Throttled(), 1)
	dec := d.Allow(t.Context(), "acme", "key_a")
	require.False(t, dec.Allowed)
	require.Equal(t, "tenant:acme", dec.Throttle.Subject)
	require.True(t, d.Allow(t.Context(), "globex", "key_g").Allowed)
}

func TestAlertWebhookAndLog(t *testing.T) {
	t.Parallel()
	got := make(chan abuse.Alert, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a abuse.Alert
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &a) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- a
	}))
	defer hook.Close()
	c := newClock()
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	d := abuse.New(abuse.Config{WebhookURL: hook.URL + "/hook?token=s3cret", Log: log, Now: c.Now})
	_, dec := burst(t, d, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	d.Close()
	select {
	case a := <-got:
		require.Equal(t, "abuse.flagged", a.Event)
		require.Equal(t, "key_a", a.KeyID)
		require.Equal(t, "acme", a.Tenant)
		require.Equal(t, abuse.SignalRequests, a.Signal)
		require.Equal(t, dec.Throttle.Until.UTC(), a.Until.UTC())
	default:
		t.Fatal("no webhook")
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	require.Equal(t, 1, strings.Count(out, `"level":"WARN"`), out)
	require.Contains(t, out, `"key_id":"key_a"`)
	require.Contains(t, out, `"tenant":"acme"`)

	// A failing webhook is logged without its URL (it may carry a token),
	// and never blocks.
	var failLogs bytes.Buffer
	d = abuse.New(abuse.Config{WebhookURL: "http://127.0.0.1:1/hook?token=s3cret",
		Log: slog.New(slog.NewJSONHandler(&lockedWriter{w: &failLogs, mu: &logMu}, nil)), Now: c.Now})
	_, dec = burst(t, d, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	d.Close()
	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, failLogs.String(), "alert webhook failed")
	require.NotContains(t, failLogs.String(), "s3cret")
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNilDetector(t *testing.T) {
	t.Parallel()
	var d *abuse.Detector
	require.True(t, d.Allow(t.Context(), "acme", "key_a").Allowed)
	d.ObserveSpend(t.Context(), "acme", "key_a", 100)
	require.Empty(t, d.Throttled())
	require.False(t, d.Lift(t.Context(), "key_a"))
	d.Close()
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// count is the number of series c has.
func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// TestIdleDecays: the baseline counts empty windows, so a key that was
// busy and went quiet for hours is back to the floor.
func TestIdleDecays(t *testing.T) {
	t.Parallel()
	c := newClock()
	d := abuse.New(abuse.Config{Multiple: 10, MinRequests: 10, Now: c.Now})
	steady(t, d, c, "acme", "key_a", 30, 60) // baseline 30: threshold 300
	c.Add(2 * time.Hour)
	passed, dec := burst(t, d, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	require.Equal(t, 100, passed, "threshold back at 10 × the floor")
	// Two hours of empty windows leave a baseline of about 2.7.
	require.Greater(t, dec.Throttle.Baseline, 1.0)
	require.Less(t, dec.Throttle.Baseline, 5.0)
}
