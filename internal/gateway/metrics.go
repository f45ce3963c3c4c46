package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus metrics (agentd_gateway_*). Tokens
// and cost go to agentd_llm_tokens_total and agentd_llm_cost_usd_total with
// agent "gateway". A nil *Metrics records nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	firstByteH prometheus.Histogram
	inFlightG  prometheus.Gauge
}

// NewMetrics registers the gateway's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_gateway_requests_total",
			Help: "Gateway calls (POST /v1/messages, count_tokens) by model (pricing table id or \"other\") and HTTP status answered.",
		}, []string{"model", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agentd_gateway_request_duration_seconds",
			Help:    "Gateway call duration, to the last byte relayed.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"stream"}),
		firstByteH: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agentd_gateway_time_to_first_event_seconds",
			Help:    "Streaming gateway calls: time from the request to the first event relayed.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inFlightG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentd_gateway_in_flight",
			Help: "Gateway calls in flight upstream.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.firstByteH, m.inFlightG)
	return m
}

func (m *Metrics) request(model string, status int, stream bool, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(model, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(strconv.FormatBool(stream)).Observe(d.Seconds())
}

func (m *Metrics) firstByte(d time.Duration) {
	if m == nil {
		return
	}
	m.firstByteH.Observe(d.Seconds())
}

func (m *Metrics) inFlight(delta float64) {
	if m == nil {
		return
	}
	m.inFlightG.Add(delta)
}
