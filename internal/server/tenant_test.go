package server_test

// Per-tenant concurrency caps (admission.TenantLimiter).

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/sim"
)

func withTenants(l *admission.TenantLimiter) bundleOption {
	return func(b *bundleConfig) { b.tenants = l }
}

// TestTenantConcurrencyCap: tenant acme at its cap is refused (429,
// Retry-After) while globex is served, and acme is served again once its
// chats have finished.
func TestTenantConcurrencyCap(t *testing.T) {
	t.Parallel()
	am := admission.NewMetrics(prometheus.NewRegistry())
	limiter := &admission.TenantLimiter{Default: 2, Metrics: am}
	b := setup(t, withAuth(), withTenants(limiter))
	acme := newTestKey(t, b.Store, "acme", auth.ScopeChat)
	globex := newTestKey(t, b.Store, "globex", auth.ScopeChat)
	chat := func(k testKey, stream bool) response {
		return b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, map[string]any{
			"agent": otherAgent, "message": "hello", "stream": stream}), k.bearer())
	}

	// Two chats of acme (a plain one and a stream) wait on a slow model.
	slow := b.setSim(sim.Config{Latency: 3 * time.Second})
	var wg sync.WaitGroup
	held := make([]response, 2)
	for i := range held {
		wg.Go(func() { held[i] = chat(acme, i == 1) })
	}
	require.Eventually(t, func() bool { return slow.Requests() == 2 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 2, limiter.InFlight("acme"))
	b.setSim(sim.Config{}) // later model calls answer at once

	for _, stream := range []bool{false, true} {
		resp := chat(acme, stream)
		e := requireError(t, resp, http.StatusTooManyRequests, "tenant_concurrency_limited")
		require.Contains(t, e.Error.Message, `tenant "acme"`)
		require.Equal(t, "1", resp.Header.Get("Retry-After"))
	}
	resp := chat(globex, false)
	require.Equal(t, http.StatusOK, resp.Status, "another tenant is served: %s", resp.Body)
	require.Equal(t, 2, limiter.InFlight("acme"), "acme's chats are still running")

	wg.Wait()
	for _, r := range held {
		require.Equal(t, http.StatusOK, r.Status, "the admitted chats succeed: %s", r.Body)
	}
	require.Zero(t, limiter.InFlight("acme"))
	resp = chat(acme, false)
	require.Equal(t, http.StatusOK, resp.Status, "acme recovered: %s", resp.Body)
	var m dto.Metric
	require.NoError(t, am.Rejected.WithLabelValues("chat", admission.ReasonTenant).Write(&m))
	require.InDelta(t, 2, m.GetCounter().GetValue(), 0, "agentd_admission_rejected_total{limit=chat,reason=tenant}")
}
