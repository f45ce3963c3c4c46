package resilience

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the resilience layer's collectors. A nil *Metrics is valid
// and records nothing.
type Metrics struct {
	TTFT          *prometheus.HistogramVec
	Retries       *prometheus.CounterVec
	Fallbacks     *prometheus.CounterVec
	CacheRequests *prometheus.CounterVec
	KeyState      *prometheus.GaugeVec
	KeyRejections *prometheus.CounterVec
	QueueWait     *prometheus.HistogramVec
	QueueRejected *prometheus.CounterVec
	InFlight      *prometheus.GaugeVec
}

// ttftBuckets: 50 ms to 2 minutes.
var ttftBuckets = []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120}

// waitBuckets: 1 ms to 2 minutes.
var waitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// NewMetrics returns the collectors, registered on reg (unless reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		TTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_llm_time_to_first_token_seconds", Help: "Time from the start of a model call (queueing and retries included) to its first streamed text, by model.",
			Buckets: ttftBuckets,
		}, []string{"model"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_llm_retries_total", Help: "Model call attempts retried, by model and reason (rate_limit, overloaded, server_error, timeout, connection).",
		}, []string{"model", "reason"}),
		Fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_llm_fallbacks_total", Help: "Model calls passed from a model to the next of the agent's fallback chain.",
		}, []string{"from", "to"}),
		CacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_cache_requests_total", Help: "Response cache lookups by result (hit, miss, stale, bypass, error).",
		}, []string{"result"}),
		KeyState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentd_key_state", Help: "State of each API key of the key pool by fingerprint (first 8 hex of its sha256): 0 bad, 1 backup, 2 active.",
		}, []string{"fingerprint"}),
		KeyRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_key_rejections_total", Help: "Calls whose API key the provider rejected (401/403), by key fingerprint.",
		}, []string{"fingerprint"}),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_llm_queue_wait_seconds", Help: "Time model calls waited for a concurrency slot, by provider.",
			Buckets: waitBuckets,
		}, []string{"provider"}),
		QueueRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_llm_queue_rejected_total", Help: "Model calls refused because the provider's wait queue was full.",
		}, []string{"provider"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentd_llm_in_flight", Help: "Model calls holding a concurrency slot, by provider.",
		}, []string{"provider"}),
	}
	if reg != nil {
		reg.MustRegister(m.TTFT, m.Retries, m.Fallbacks, m.CacheRequests, m.KeyState, m.KeyRejections,
			m.QueueWait, m.QueueRejected, m.InFlight)
	}
	return m
}

func (m *Metrics) observeTTFT(model string, d time.Duration) {
	if m != nil {
		m.TTFT.WithLabelValues(model).Observe(d.Seconds())
	}
}

func (m *Metrics) retry(model, reason string) {
	if m != nil {
		m.Retries.WithLabelValues(model, reason).Inc()
	}
}

func (m *Metrics) fallback(from, to string) {
	if m != nil {
		m.Fallbacks.WithLabelValues(from, to).Inc()
	}
}

func (m *Metrics) cache(result string) {
	if m != nil {
		m.CacheRequests.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) keyState(fp string, st KeyState) {
	if m != nil {
		m.KeyState.WithLabelValues(fp).Set(float64(st))
	}
}

func (m *Metrics) keyDropped(fp string) {
	if m != nil {
		m.KeyState.DeleteLabelValues(fp)
		m.KeyRejections.DeleteLabelValues(fp)
	}
}

func (m *Metrics) keyRejected(fp string) {
	if m != nil {
		m.KeyRejections.WithLabelValues(fp).Inc()
	}
}

func (m *Metrics) queueWait(provider string, d time.Duration) {
	if m != nil {
		m.QueueWait.WithLabelValues(provider).Observe(d.Seconds())
	}
}

func (m *Metrics) queueRejected(provider string) {
	if m != nil {
		m.QueueRejected.WithLabelValues(provider).Inc()
	}
}

func (m *Metrics) inFlight(provider string, delta float64) {
	if m != nil {
		m.InFlight.WithLabelValues(provider).Add(delta)
	}
}
