package server_test

// Abuse detection: a key whose request rate jumps past the multiple of its
// baseline is throttled (429 abuse_throttled) while other keys keep
// working; the alert reaches the webhook; the operator lifts the throttle.

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/auth"
)

const testAdminToken = "admin-token-for-tests"

func withAbuse(d *abuse.Detector) bundleOption {
	return func(b *bundleConfig) { b.abuse, b.adminToken = d, testAdminToken }
}

// fakeClock is the detector's time, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestAbuseThrottlesTheJumpingKey(t *testing.T) {
	t.Parallel()
	alerts := make(chan abuse.Alert, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var a abuse.Alert
		if err != nil || json.Unmarshal(body, &a) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		alerts <- a
	}))
	t.Cleanup(hook.Close)

	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	metrics := abuse.NewMetrics(reg)
	d := abuse.New(abuse.Config{Multiple: 10, MinRequests: 1, ThrottleFor: 10 * time.Minute,
		WebhookURL: hook.URL, Metrics: metrics, Log: slog.New(slog.NewJSONHandler(logs, nil)), Now: clock.Now})
	t.Cleanup(d.Close)
	b := setup(t, withAuth(), withAbuse(d))
	k1 := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	k2 := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	admin := map[string]string{"Authorization": "Bearer " + testAdminToken}

	// Ten minutes of k1 at 2 requests a minute: its baseline. k2 is used
	// the same way.
	for range 10 {
		for _, k := range []testKey{k1, k2} {
			for range 2 {
				require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", k.bearer()).Status)
			}
		}
		clock.Add(time.Minute)
	}
	// Then k1 jumps: at the start of a window the previous one's 2 still
	// count, so with 10 × 2 = 20 the 19th request of the burst (21) is the
	// first refused.
	for i := range 18 {
		resp := b.do(t, http.MethodGet, "/v1/agents", "", k1.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "request %d: %s", i, resp.Body)
	}
	resp := b.do(t, http.MethodGet, "/v1/agents", "", k1.bearer())
	e := requireError(t, resp, http.StatusTooManyRequests, "abuse_throttled")
	require.Contains(t, e.Error.Message, "this API key is throttled")
	require.Equal(t, "600", resp.Header.Get("Retry-After"))
	// Refused on every route, chat included, until the throttle ends.
	clock.Add(time.Minute)
	resp = b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), k1.bearer())
	requireError(t, resp, http.StatusTooManyRequests, "abuse_throttled")
	require.Equal(t, "540", resp.Header.Get("Retry-After"))

	// Another key of the same tenant keeps working.
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", k2.bearer()).Status)

	// The alert: webhook, metrics, one log line with the key id, never the
	// key.
	select {
	case a := <-alerts:
		require.Equal(t, "abuse.flagged", a.Event)
		require.Equal(t, k1.ID, a.KeyID)
		require.Equal(t, "acme", a.Tenant)
		require.Equal(t, abuse.SignalRequests, a.Signal)
		require.InDelta(t, 2, a.Baseline, 1e-9)
	case <-time.After(10 * time.Second):
		t.Fatal("no alert reached the webhook")
	}
	require.Equal(t, 1.0, gaugeOrCounter(t, reg, "agentd_abuse_flagged_total", abuse.SignalRequests))
	require.Equal(t, 1.0, gaugeOrCounter(t, reg, "agentd_abuse_throttled_keys", ""))
	out := logs.String()
	require.Contains(t, out, `"key_id":"`+k1.ID+`"`)
	require.Contains(t, out, `"level":"WARN"`)
	require.NotContains(t, out, k1.Token)

	// The admin API lists and lifts it; a tenant's key cannot.
	requireUnauthorized(t, b.do(t, http.MethodGet, "/admin/abuse", "", k1.bearer()))
	resp = b.do(t, http.MethodGet, "/admin/abuse", "", admin)
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	var list struct{ Throttled []abuse.Throttle }
	require.NoError(t, json.Unmarshal(resp.Body, &list))
	require.Len(t, list.Throttled, 1)
	require.Equal(t, k1.ID, list.Throttled[0].Subject)
	require.Equal(t, "acme", list.Throttled[0].Tenant)

	requireUnauthorized(t, b.do(t, http.MethodDelete, "/admin/abuse/"+k1.ID, "", k1.bearer()))
	require.Equal(t, http.StatusOK, b.do(t, http.MethodDelete, "/admin/abuse/"+k1.ID, "", admin).Status)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", k1.bearer()).Status)
	requireError(t, b.do(t, http.MethodDelete, "/admin/abuse/"+k1.ID, "", admin), http.StatusNotFound, "not_found")
	require.Equal(t, 0.0, gaugeOrCounter(t, reg, "agentd_abuse_throttled_keys", ""))
}

// TestAbuseAuthNone: without authentication the tenant is watched.
func TestAbuseAuthNone(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := abuse.New(abuse.Config{Multiple: 2, MinRequests: 2, Now: clock.Now})
	b := setup(t, withAbuse(d))
	for range 4 {
		require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", nil).Status)
	}
	resp := b.do(t, http.MethodGet, "/v1/agents", "", nil)
	e := requireError(t, resp, http.StatusTooManyRequests, "abuse_throttled")
	require.Contains(t, e.Error.Message, "this tenant is throttled")
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.Equal(t, int(abuse.DefaultThrottleFor/time.Second), retry)
	// Probes are never throttled.
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/livez", "", nil).Status)
	admin := map[string]string{"Authorization": "Bearer " + testAdminToken}
	require.Equal(t, http.StatusOK, b.do(t, http.MethodDelete, "/admin/abuse/tenant:default", "", admin).Status)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", nil).Status)
}

// gaugeOrCounter reads the value of metric name (with signal label value,
// when not "") from reg.
func gaugeOrCounter(t *testing.T, reg *prometheus.Registry, name, signal string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if signal != "" && !hasLabel(m, "signal", signal) {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s{signal=%q}", name, signal)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
