package console_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/console"
	"github.com/agentd/agentd/internal/observe"
)

// The sampler's series come from the differences between samples of the
// process's own counters.
func TestSamplerSeries(t *testing.T) {
	t.Parallel()
	m := observe.NewMetrics("test")
	s := &console.Sampler{Gatherer: m.Registry, Interval: 10 * time.Second, Window: time.Minute}
	t0 := time.Unix(1_700_000_000, 0)
	s.Sample(t0)
	// 100 requests in the first 10 s: 90 fast (5 ms), 10 slow (2 s), 4 of
	// them 5xx; an event stream (excluded from latency) lasting a minute.
	for i := range 100 {
		code, d := "200", 0.005
		if i >= 90 {
			d = 2
		}
		if i < 4 {
			code = "503"
		}
		m.HTTPRequests.WithLabelValues("POST", "POST /v1/chat", code).Inc()
		m.HTTPDuration.WithLabelValues("POST", "POST /v1/chat").Observe(d)
	}
	m.HTTPDuration.WithLabelValues("GET", "GET /v1/runs/{id}/events").Observe(60)
	m.LLMTokens.WithLabelValues("demo", "claude", "input").Add(1500)
	m.LLMCost.WithLabelValues("demo", "claude").Add(0.25)
	s.Sample(t0.Add(10 * time.Second))
	s.Sample(t0.Add(20 * time.Second)) // nothing happened

	got := s.Series()
	require.Len(t, got.Times, 2)
	require.InDelta(t, 10.0, got.RateRPS[0], 1e-9, "100 requests in 10 s")
	require.InDelta(t, 0.04, got.ErrorRate[0], 1e-9)
	require.LessOrEqual(t, got.P50[0], 0.005, "the median is a fast request")
	require.Greater(t, got.P50[0], 0.0)
	require.Greater(t, got.P95[0], 1.0, "the 95th percentile is a slow one")
	require.LessOrEqual(t, got.P95[0], 2.5, "the stream's minute is left out")
	require.InDelta(t, 1500.0, got.Tokens[0], 1e-9)
	require.InDelta(t, 0.25, got.CostUSD[0], 1e-9)
	require.Zero(t, got.RateRPS[1])
	require.Zero(t, got.P95[1], "no requests: no latency")

	// The ring keeps Window/Interval+1 samples: older ones fall out.
	for i := 3; i < 20; i++ {
		s.Sample(t0.Add(time.Duration(i) * 10 * time.Second))
	}
	got = s.Series()
	require.Len(t, got.Times, 6)
	require.Equal(t, t0.Add(190*time.Second), got.Times[5])
}
