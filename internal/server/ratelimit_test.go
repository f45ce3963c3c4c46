package server_test

// Rate limits per API key and tenant: 429 with Retry-After and the
// X-RateLimit-* headers.

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/ratelimit"
)

func withRateLimit(cfg ratelimit.Config) bundleOption {
	return func(b *bundleConfig) { b.rateLimit = ratelimit.New(cfg) }
}

func requireRateHeaders(t *testing.T, resp response, limit, remaining int) {
	t.Helper()
	require.Equal(t, strconv.Itoa(limit), resp.Header.Get("X-RateLimit-Limit"))
	require.Equal(t, strconv.Itoa(remaining), resp.Header.Get("X-RateLimit-Remaining"))
	reset, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Reset"))
	require.NoError(t, err)
	require.Positive(t, reset) // > 60s for a token bucket in debt
}

func TestRateLimitRequests(t *testing.T) {
	t.Parallel()
	m := ratelimit.NewMetrics(prometheus.NewRegistry())
	b := setup(t, withAuth(), withRateLimit(ratelimit.Config{
		Key: ratelimit.Limits{RequestsPerMinute: 3}, Tenant: ratelimit.Limits{RequestsPerMinute: 5}, Metrics: m,
	}))
	k1 := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	k2 := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	other := newTestKey(t, b.Store, "globex", auth.ScopeChat)

	for i := range 3 {
		resp := b.do(t, http.MethodGet, "/v1/agents", "", k1.bearer())
		require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
		requireRateHeaders(t, resp, 3, 2-i) // the key's bucket has the least left
	}
	resp := b.do(t, http.MethodGet, "/v1/agents", "", k1.bearer())
	e := requireError(t, resp, http.StatusTooManyRequests, "rate_limited")
	require.Contains(t, e.Error.Message, "key requests per minute (3)")
	require.Equal(t, "20", resp.Header.Get("Retry-After")) // 3/min: one per 20s
	requireRateHeaders(t, resp, 3, 0)
	require.Equal(t, "60", resp.Header.Get("X-RateLimit-Reset"))

	// The tenant's 5: k1's refusal took none of them.
	for range 2 {
		require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", k2.bearer()).Status)
	}
	resp = b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{"agent": demoAgent, "message": "hi"}), k2.bearer())
	e = requireError(t, resp, http.StatusTooManyRequests, "rate_limited")
	require.Contains(t, e.Error.Message, "tenant requests per minute (5)")
	require.Equal(t, "12", resp.Header.Get("Retry-After"))
	requireRateHeaders(t, resp, 5, 0)

	// Another tenant, probes and metrics are not limited by acme's use.
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/agents", "", other.bearer()).Status)
	for range 10 {
		resp := b.do(t, http.MethodGet, "/livez", "", k1.bearer())
		require.Equal(t, http.StatusOK, resp.Status)
		require.Empty(t, resp.Header.Get("X-RateLimit-Limit"))
	}
	// Authentication comes first: a bad key is 401, not counted.
	requireUnauthorized(t, b.do(t, http.MethodGet, "/v1/agents", "", map[string]string{"Authorization": "Bearer agd_nope"}))

	require.Equal(t, 1.0, counterValue(t, m.Rejected.WithLabelValues("key", "requests")))
	require.Equal(t, 1.0, counterValue(t, m.Rejected.WithLabelValues("tenant", "requests")))
}

// TestRateLimitAuthNone: without authentication the tenant "default" is
// limited; there are no key limits.
func TestRateLimitAuthNone(t *testing.T) {
	t.Parallel()
	b := setup(t, withRateLimit(ratelimit.Config{
		Key: ratelimit.Limits{RequestsPerMinute: 1}, Tenant: ratelimit.Limits{RequestsPerMinute: 2},
	}))
	for i := range 2 {
		resp := b.do(t, http.MethodGet, "/v1/agents", "", nil)
		require.Equal(t, http.StatusOK, resp.Status)
		requireRateHeaders(t, resp, 2, 1-i)
	}
	resp := b.do(t, http.MethodGet, "/v1/agents", "", nil)
	requireError(t, resp, http.StatusTooManyRequests, "rate_limited")
	require.Equal(t, "30", resp.Header.Get("Retry-After"))
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/livez", "", nil).Status)
}

// TestRateLimitTokens: a chat whose tokens spent the budget makes the next
// model call wait: 429 before the call is made.
func TestRateLimitTokens(t *testing.T) {
	t.Parallel()
	m := ratelimit.NewMetrics(prometheus.NewRegistry())
	b := setup(t, withAuth(), withRateLimit(ratelimit.Config{
		Key: ratelimit.Limits{TokensPerMinute: 10}, Metrics: m,
	}))
	k := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	chat := mustJSON(t, map[string]any{"agent": otherAgent, "message": "hello there"})
	resp := b.do(t, http.MethodPost, "/v1/chat", chat, k.bearer())
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Empty(t, resp.Header.Get("X-RateLimit-Limit"), "no request limits set")

	resp = b.do(t, http.MethodPost, "/v1/chat", chat, k.bearer())
	e := requireError(t, resp, http.StatusTooManyRequests, "rate_limited")
	require.Contains(t, e.Error.Message, "key tokens per minute (10)")
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, retry)
	requireRateHeaders(t, resp, 10, 0)
	require.Equal(t, 1.0, counterValue(t, m.Rejected.WithLabelValues("key", "tokens")))

	// Another key of the tenant has its own budget.
	k2 := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodPost, "/v1/chat", chat, k2.bearer()).Status)
}

func counterValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
