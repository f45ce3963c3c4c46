package admission

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestTenantLimiterCapsEachTenantAlone(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	l := &TenantLimiter{Default: 2, Overrides: map[string]int{"big": 3, "free": 0},
		Metrics: NewMetrics(reg), Log: &BurstLog{Log: log, Interval: time.Hour}}

	a1, err := l.Acquire("acme", "chat")
	require.NoError(t, err)
	a2, err := l.Acquire("acme", "stream")
	require.NoError(t, err)
	require.Equal(t, 2, l.InFlight("acme"))

	// acme is at its cap: refused at once, with a retry hint.
	for range 3 {
		_, err = l.Acquire("acme", "chat")
		rej, ok := AsRejected(err)
		require.True(t, ok, "got %v", err)
		require.Equal(t, ReasonTenant, rej.Reason)
		require.Equal(t, time.Second, rej.RetryAfter)
		require.Contains(t, rej.Error(), `tenant "acme" has 2 chats and streams in flight`)
	}
	// Others are not: their own cap, an override, no cap.
	g1, err := l.Acquire("globex", "chat")
	require.NoError(t, err)
	for range 3 {
		_, err := l.Acquire("big", "chat")
		require.NoError(t, err)
	}
	_, err = l.Acquire("big", "chat")
	require.Error(t, err)
	for range 10 {
		_, err := l.Acquire("free", "chat")
		require.NoError(t, err)
	}

	// acme recovers when one of its requests ends; release is idempotent.
	a1()
	a1()
	require.Equal(t, 1, l.InFlight("acme"))
	a3, err := l.Acquire("acme", "chat")
	require.NoError(t, err)
	a2()
	a3()
	g1()
	require.Zero(t, l.InFlight("acme"))
	l.mu.Lock()
	require.NotContains(t, l.counts, "acme", "idle tenants leave the map")
	l.mu.Unlock()

	require.Equal(t, map[string]float64{"chat/" + ReasonTenant: 4}, rejected(t, reg))
	logMu.Lock()
	defer logMu.Unlock()
	// One line per burst, naming the tenant (the summary of the burst
	// counts refusals per limit, reason and tenant).
	require.Equal(t, 1, strings.Count(logs.String(), "admission control is refusing requests"), logs.String())
	require.Contains(t, logs.String(), "tenant=acme")
}

func TestTenantLimiterNilAndZeroAdmitAll(t *testing.T) {
	t.Parallel()
	var nilLimiter *TenantLimiter
	r, err := nilLimiter.Acquire("acme", "chat")
	require.NoError(t, err)
	r()
	var zero TenantLimiter
	for range 100 {
		_, err := zero.Acquire("acme", "chat")
		require.NoError(t, err)
	}
	require.Zero(t, zero.InFlight("acme"), "uncapped tenants are not counted")
}

func TestTenantLimiterNeverExceedsCap(t *testing.T) {
	t.Parallel()
	l := &TenantLimiter{Default: 3}
	var mu sync.Mutex
	cur, peak, admitted := 0, 0, 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			r, err := l.Acquire("acme", "chat")
			if err != nil {
				return
			}
			mu.Lock()
			cur++
			admitted++
			peak = max(peak, cur)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			cur--
			mu.Unlock()
			r()
		})
	}
	wg.Wait()
	require.LessOrEqual(t, peak, 3)
	require.Positive(t, admitted)
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
