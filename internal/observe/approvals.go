package observe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ApprovalMetrics are the metrics of tool calls that wait for a person's
// decision (Metrics.Approvals).
type ApprovalMetrics struct {
	Pending  prometheus.Gauge
	Total    *prometheus.CounterVec
	Decision prometheus.Histogram
}

func newApprovalMetrics(reg prometheus.Registerer) *ApprovalMetrics {
	m := &ApprovalMetrics{
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentd_approvals_pending",
			Help: "Tool calls of paused runs waiting for a person's decision (cluster-wide, sampled every health check).",
		}),
		Total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_approvals_total",
			Help: "Decisions on tool calls that needed approval, recorded by this instance, by decision (approve, deny, timeout).",
		}, []string{"decision"}),
		Decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agentd_approval_decision_seconds",
			Help:    "Time from a tool call's approval request to its decision.",
			Buckets: []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600},
		}),
	}
	reg.MustRegister(m.Pending, m.Total, m.Decision)
	return m
}

// ObserveApproval records a decision and how long it took.
func (m *Metrics) ObserveApproval(decision string, waited time.Duration) {
	if m == nil {
		return
	}
	m.Approvals.Total.WithLabelValues(decision).Inc()
	m.Approvals.Decision.Observe(waited.Seconds())
}

// SetApprovalsPending records a sample of the pending approvals.
func (m *Metrics) SetApprovalsPending(n int) {
	if m == nil {
		return
	}
	m.Approvals.Pending.Set(float64(n))
}
