package console

import (
	"context"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sampler keeps the last hour of the process's own counters for the
// overview's charts: every Interval it reads the Prometheus registry
// (requests, 5xx answers, the request-duration histogram, model tokens
// and cost) and stores one cumulative sample in a ring buffer of
// Window/Interval entries. Charts plot the differences between samples.
// Figures are this instance's, since its start: a cluster shows one
// console per instance (Prometheus has the sums).
type Sampler struct {
	Gatherer prometheus.Gatherer
	// Interval between samples. Defaults to DefaultSampleInterval.
	Interval time.Duration
	// Window is how much history is kept. Defaults to one hour.
	Window time.Duration

	mu      sync.Mutex
	ring    []sample
	next    int
	filled  bool
	started bool
}

// DefaultSampleInterval is how often the Sampler reads the counters.
const DefaultSampleInterval = 10 * time.Second

// sample is the cumulative counters at one time.
type sample struct {
	at       time.Time
	requests float64
	errors   float64 // 5xx answers
	// buckets of the request-duration histogram (upper bound → count),
	// event streams excluded (they last minutes by design).
	bounds []float64
	counts []float64
	tokens float64
	cost   float64
}

func (s *Sampler) interval() time.Duration {
	if s.Interval <= 0 {
		return DefaultSampleInterval
	}
	return s.Interval
}

func (s *Sampler) init() {
	if s.ring != nil {
		return
	}
	w := s.Window
	if w <= 0 {
		w = time.Hour
	}
	s.ring = make([]sample, max(2, int(w/s.interval())+1))
}

// Run samples every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval())
	defer t.Stop()
	for {
		s.Sample(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample takes one sample now.
func (s *Sampler) Sample(now time.Time) {
	mfs, err := s.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	sm := sample{at: now}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "agentd_http_requests_total":
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue()
				sm.requests += v
				if strings.HasPrefix(label(m, "code"), "5") {
					sm.errors += v
				}
			}
		case "agentd_http_request_duration_seconds":
			agg := map[float64]float64{}
			for _, m := range mf.GetMetric() {
				if strings.HasSuffix(label(m, "route"), "/events") {
					continue
				}
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						agg[b.GetUpperBound()] += float64(b.GetCumulativeCount())
					}
				}
				agg[math.Inf(1)] += float64(h.GetSampleCount())
			}
			for ub := range agg {
				sm.bounds = append(sm.bounds, ub)
			}
			sort.Float64s(sm.bounds)
			for _, ub := range sm.bounds {
				sm.counts = append(sm.counts, agg[ub])
			}
		case "agentd_llm_tokens_total":
			for _, m := range mf.GetMetric() {
				sm.tokens += m.GetCounter().GetValue()
			}
		case "agentd_llm_cost_usd_total":
			for _, m := range mf.GetMetric() {
				sm.cost += m.GetCounter().GetValue()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.ring[s.next] = sm
	s.next = (s.next + 1) % len(s.ring)
	if s.next == 0 {
		s.filled = true
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Series are the overview's charts: one point per interval between
// samples, oldest first.
type Series struct {
	Times     []time.Time
	RateRPS   []float64 // requests per second
	ErrorRate []float64 // share of 5xx answers
	P50, P95  []float64 // seconds
	Tokens    []float64 // per interval
	CostUSD   []float64 // per interval
}

// Series returns the charts' points.
func (s *Sampler) Series() Series {
	s.mu.Lock()
	var ordered []sample
	if s.ring != nil {
		if s.filled {
			ordered = append(ordered, s.ring[s.next:]...)
		}
		ordered = append(ordered, s.ring[:s.next]...)
	}
	s.mu.Unlock()
	var out Series
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		secs := b.at.Sub(a.at).Seconds()
		if secs <= 0 {
			continue
		}
		req := b.requests - a.requests
		out.Times = append(out.Times, b.at)
		out.RateRPS = append(out.RateRPS, req/secs)
		er := 0.0
		if req > 0 {
			er = (b.errors - a.errors) / req
		}
		out.ErrorRate = append(out.ErrorRate, er)
		out.P50 = append(out.P50, quantile(0.5, a, b))
		out.P95 = append(out.P95, quantile(0.95, a, b))
		out.Tokens = append(out.Tokens, b.tokens-a.tokens)
		out.CostUSD = append(out.CostUSD, b.cost-a.cost)
	}
	return out
}

// quantile estimates the q-quantile of the requests between samples a and
// b from their histogram buckets, interpolating linearly inside a bucket
// (as Prometheus's histogram_quantile does). 0 without requests.
func quantile(q float64, a, b sample) float64 {
	if len(b.bounds) == 0 {
		return 0
	}
	prev := map[float64]float64{}
	for i, ub := range a.bounds {
		prev[ub] = a.counts[i]
	}
	counts := make([]float64, len(b.bounds))
	for i, ub := range b.bounds {
		counts[i] = b.counts[i] - prev[ub]
	}
	total := counts[len(counts)-1] // +Inf
	if total <= 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, ub := range b.bounds {
		if counts[i] >= rank {
			if math.IsInf(ub, 1) {
				return lower
			}
			in := counts[i] - below
			if in <= 0 {
				return ub
			}
			return lower + (ub-lower)*(rank-below)/in
		}
		lower, below = ub, counts[i]
	}
	return lower
}
