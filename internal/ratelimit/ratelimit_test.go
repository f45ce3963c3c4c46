package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/ratelimit"
	"github.com/agentd/agentd/internal/redis"
	"github.com/agentd/agentd/internal/redis/redistest"
)

// value reads a counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// allowed counts how many of n requests pass.
func allowed(l *ratelimit.Limiter, n int, tenant, key string) int {
	ok := 0
	for range n {
		if l.AllowRequest(context.Background(), tenant, key).Allowed {
			ok++
		}
	}
	return ok
}

func TestLocalRefill(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := ratelimit.NewMetrics(prometheus.NewRegistry())
	l := ratelimit.New(ratelimit.Config{Key: ratelimit.Limits{RequestsPerMinute: 60}, Now: clk.Now, Metrics: m})
	ctx := context.Background()

	// A full bucket: a burst of one minute's worth.
	d := l.AllowRequest(ctx, "acme", "k1")
	require.True(t, d.Allowed)
	require.Equal(t, ratelimit.Decision{Allowed: true, Scope: "key", Kind: "requests", Limit: 60, Remaining: 59, Reset: time.Second}, d)
	require.Equal(t, 59, allowed(l, 100, "acme", "k1"))

	d = l.AllowRequest(ctx, "acme", "k1")
	require.False(t, d.Allowed)
	require.Equal(t, time.Second, d.RetryAfter) // 1 per second
	require.Equal(t, int64(0), d.Remaining)
	require.Equal(t, time.Minute, d.Reset)
	require.Equal(t, 42.0, value(m.Rejected.WithLabelValues("key", "requests")))

	// Another key has its own bucket; no key (auth off) has none here.
	require.Equal(t, 60, allowed(l, 61, "acme", "k2"))
	require.Equal(t, 10, allowed(l, 10, "acme", ""))

	// Refill at 1/s: half a second is not yet a request, 1.5s is one.
	clk.Add(500 * time.Millisecond)
	d = l.AllowRequest(ctx, "acme", "k1")
	require.False(t, d.Allowed)
	require.Equal(t, 500*time.Millisecond, d.RetryAfter)
	require.Equal(t, int64(1), ratelimit.Seconds(d.RetryAfter))
	clk.Add(time.Second)
	require.Equal(t, 1, allowed(l, 5, "acme", "k1"))
	// Never more than capacity, however long it waited.
	clk.Add(time.Hour)
	require.Equal(t, 60, allowed(l, 100, "acme", "k1"))
}

func TestKeyAndTenantAllOrNothing(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := ratelimit.New(ratelimit.Config{
		Key:     ratelimit.Limits{RequestsPerMinute: 3},
		Tenant:  ratelimit.Limits{RequestsPerMinute: 5},
		Tenants: map[string]ratelimit.Limits{"big": {RequestsPerMinute: 100}, "free": {}},
		Now:     clk.Now,
	})
	ctx := context.Background()
	require.Equal(t, 3, allowed(l, 10, "acme", "k1"))
	// The tenant has 2 left: k1's refusals took nothing from it.
	d := l.AllowRequest(ctx, "acme", "k2")
	require.True(t, d.Allowed)
	require.Equal(t, "tenant", d.Scope) // the bucket with the least left
	require.Equal(t, int64(1), d.Remaining)
	require.True(t, l.AllowRequest(ctx, "acme", "k2").Allowed)
	d = l.AllowRequest(ctx, "acme", "k3")
	require.False(t, d.Allowed)
	require.Equal(t, "tenant", d.Scope)
	require.Equal(t, int64(5), d.Limit)
	require.Equal(t, 12*time.Second, d.RetryAfter)

	// Overrides replace the tenant limits whole ("free": none).
	require.Equal(t, 3, allowed(l, 10, "big", "b1"))
	require.Equal(t, 9, allowed(l, 9, "big", ""))
	require.Equal(t, 50, allowed(l, 50, "free", ""))
}

func TestTokens(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := ratelimit.New(ratelimit.Config{Tenant: ratelimit.Limits{TokensPerMinute: 600}, Now: clk.Now})
	ctx := context.Background()
	require.NoError(t, l.AllowTokens(ctx, "acme", "k1"))
	// A call may overshoot: the bucket goes below zero.
	l.AddTokens(ctx, "acme", "k1", 1000)
	err := l.AllowTokens(ctx, "acme", "k1")
	e, ok := ratelimit.AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "tenant", e.Scope)
	require.Equal(t, "tokens", e.Kind)
	// 401 tokens at 10/s until one is there.
	require.Equal(t, 40100*time.Millisecond, e.RetryAfter)
	require.Contains(t, err.Error(), "rate limit exceeded: tenant tokens per minute (600); retry in 41s")
	clk.Add(40 * time.Second)
	require.Error(t, l.AllowTokens(ctx, "acme", "k1"))
	clk.Add(200 * time.Millisecond)
	require.NoError(t, l.AllowTokens(ctx, "acme", "k1"))
	// Requests are not limited here.
	require.Equal(t, 1000, allowed(l, 1000, "acme", "k1"))

	var nilL *ratelimit.Limiter
	require.True(t, nilL.AllowRequest(ctx, "a", "b").Allowed)
	require.NoError(t, nilL.AllowTokens(ctx, "a", "b"))
	nilL.AddTokens(ctx, "a", "b", 5)
}

func openRedis(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c, err := redis.Open(srv.URL(), redis.Options{Timeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestClusterWide: two instances sharing a Redis share one budget; with
// Redis killed each limits on its own, and after it is back they share
// again.
func TestClusterWide(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clk := newClock()
	newInstance := func(m *ratelimit.Metrics) *ratelimit.Limiter {
		return ratelimit.New(ratelimit.Config{
			Key: ratelimit.Limits{RequestsPerMinute: 10, TokensPerMinute: 1000}, Tenant: ratelimit.Limits{RequestsPerMinute: 15},
			Redis: openRedis(t, srv).Raw(), CoolDown: 20 * time.Millisecond, Now: clk.Now, Metrics: m,
		})
	}
	ma := ratelimit.NewMetrics(prometheus.NewRegistry())
	a, b := newInstance(ma), newInstance(nil)
	ctx := context.Background()

	require.Equal(t, 6, allowed(a, 6, "acme", "k1"))
	require.Equal(t, 4, allowed(b, 10, "acme", "k1")) // the key's 10 are spent
	require.Equal(t, 5, allowed(b, 10, "acme", "k2")) // the tenant's 15 are
	require.Equal(t, 0, allowed(a, 3, "acme", "k3"))
	d := a.AllowRequest(ctx, "acme", "k3")
	require.False(t, d.Allowed)
	require.Equal(t, "tenant", d.Scope)
	require.Equal(t, 4*time.Second, d.RetryAfter) // 15/min: one per 4s
	clk.Add(4 * time.Second)
	require.Equal(t, 1, allowed(b, 3, "acme", "k3"))

	// Tokens: debited on one instance, seen by the other.
	require.NoError(t, b.AllowTokens(ctx, "acme", "k1"))
	a.AddTokens(ctx, "acme", "k1", 1500)
	_, limited := ratelimit.AsError(b.AllowTokens(ctx, "acme", "k1"))
	require.True(t, limited)
	require.Zero(t, value(ma.Fallback))

	// Redis down: each instance limits with its own buckets.
	srv.Stop()
	require.Equal(t, 10, allowed(a, 20, "other", "x1"))
	require.Equal(t, 10, allowed(b, 20, "other", "x1"))
	require.Positive(t, value(ma.Fallback))

	// Back: shared again (the restarted Redis is empty) once the cool-down
	// has passed.
	srv.Restart()
	mb := ratelimit.NewMetrics(prometheus.NewRegistry())
	b = newInstance(mb) // a new instance, to count its fallbacks
	require.Eventually(t, func() bool {
		clk.Add(50 * time.Millisecond) // past the cool-down
		fa, fb := value(ma.Fallback), value(mb.Fallback)
		a.AllowRequest(ctx, "probe", "")
		b.AllowRequest(ctx, "probe", "")
		return fa == value(ma.Fallback) && fb == value(mb.Fallback)
	}, 5*time.Second, 20*time.Millisecond)
	before := value(ma.Fallback)
	require.Equal(t, 7, allowed(a, 7, "fresh", "y1"))
	require.Equal(t, 3, allowed(b, 10, "fresh", "y1"))
	require.Equal(t, before, value(ma.Fallback), "no fallback once Redis is back")
}
