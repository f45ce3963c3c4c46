// Package admission protects an instance from more work than it can carry:
// slot limits with a bounded, deadline-bound wait queue, and a memory guard
// that sheds new work above a high-water mark. Every refusal is counted and
// logged once per burst.
package admission

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons (the reason label of agentd_admission_rejected_total).
const (
	ReasonQueueFull = "queue_full"
	ReasonTimeout   = "queue_timeout"
	ReasonMemory    = "memory"
)

// Rejected is the error of a refused admission.
type Rejected struct {
	Reason string
	// RetryAfter is a hint for the client.
	RetryAfter time.Duration
	What       string // the limited resource, e.g. "chat"
	// Tenant and Limit name the tenant and its cap (ReasonTenant only).
	Tenant string
	Limit  int
}

func (e *Rejected) Error() string {
	switch e.Reason {
	case ReasonMemory:
		return "the instance is low on memory and sheds new " + e.What + " requests"
	case ReasonTimeout:
		return "no " + e.What + " slot became free in time"
	case ReasonTenant:
		return "tenant " + strconv.Quote(e.Tenant) + " has " + strconv.Itoa(e.Limit) +
			" chats and streams in flight, its limit on this instance"
	default:
		return "too many " + e.What + " requests in flight and waiting"
	}
}

// AsRejected returns the *Rejected in err's chain.
func AsRejected(err error) (*Rejected, bool) {
	var r *Rejected
	ok := errors.As(err, &r)
	return r, ok
}

// Metrics are the admission collectors. A nil *Metrics records nothing.
type Metrics struct {
	Rejected *prometheus.CounterVec
	InFlight *prometheus.GaugeVec
	Waiting  *prometheus.GaugeVec
	Wait     *prometheus.HistogramVec
}

// NewMetrics registers the collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_admission_rejected_total", Help: "Requests refused by admission control, by limit and reason.",
		}, []string{"limit", "reason"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentd_admission_in_flight", Help: "Admitted requests in flight, by limit.",
		}, []string{"limit"}),
		Waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentd_admission_waiting", Help: "Requests waiting for a slot, by limit.",
		}, []string{"limit"}),
		Wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_admission_wait_seconds", Help: "Time admitted requests waited for a slot, by limit.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"limit"}),
	}
	if reg != nil {
		reg.MustRegister(m.Rejected, m.InFlight, m.Waiting, m.Wait)
	}
	return m
}

// Limiter admits at most Max concurrent holders; up to Queue more wait, each
// at most MaxWait (and never past its context). Zero Max: unlimited.
type Limiter struct {
	Name    string
	Max     int
	Queue   int
	MaxWait time.Duration
	Metrics *Metrics
	Log     *BurstLog
	// Gate, when set, is asked before anything else (the memory guard); a
	// non-nil *Rejected refuses.
	Gate func() *Rejected

	once    sync.Once
	slots   chan struct{}
	mu      sync.Mutex
	waiting int
}

func (l *Limiter) init() {
	l.once.Do(func() {
		if l.Max > 0 {
			l.slots = make(chan struct{}, l.Max)
		}
	})
}

// Acquire admits the caller or refuses with *Rejected (or ctx's error).
// release must be called exactly once when admitted.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	l.init()
	if l.Gate != nil {
		if r := l.Gate(); r != nil {
			r.What = l.Name
			return nil, l.reject(r)
		}
	}
	if l.slots == nil {
		return l.admitted(0), nil
	}
	select {
	case l.slots <- struct{}{}:
		return l.admitted(0), nil
	default:
	}
	l.mu.Lock()
	if l.waiting >= l.Queue {
		l.mu.Unlock()
		return nil, l.reject(&Rejected{Reason: ReasonQueueFull, RetryAfter: time.Second, What: l.Name})
	}
	l.waiting++
	l.mu.Unlock()
	if l.Metrics != nil {
		l.Metrics.Waiting.WithLabelValues(l.Name).Inc()
	}
	defer func() {
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
		if l.Metrics != nil {
			l.Metrics.Waiting.WithLabelValues(l.Name).Dec()
		}
	}()
	start := time.Now()
	wait := l.MaxWait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.admitted(time.Since(start)), nil
	case <-t.C:
		return nil, l.reject(&Rejected{Reason: ReasonTimeout, RetryAfter: time.Second, What: l.Name})
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (l *Limiter) admitted(waited time.Duration) func() {
	if l.Metrics != nil {
		l.Metrics.InFlight.WithLabelValues(l.Name).Inc()
		l.Metrics.Wait.WithLabelValues(l.Name).Observe(waited.Seconds())
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if l.slots != nil {
				<-l.slots
			}
			if l.Metrics != nil {
				l.Metrics.InFlight.WithLabelValues(l.Name).Dec()
			}
		})
	}
}

func (l *Limiter) reject(r *Rejected) error {
	if l.Metrics != nil {
		l.Metrics.Rejected.WithLabelValues(l.Name, r.Reason).Inc()
	}
	l.Log.Refused(l.Name, r.Reason)
	return r
}

// InFlight returns how many holders are admitted now.
func (l *Limiter) InFlight() int {
	l.init()
	if l.slots == nil {
		return 0
	}
	return len(l.slots)
}

// BurstLog logs refusals once per burst: the first refusal at once, then a
// summary per interval while refusals continue. A nil *BurstLog logs nothing.
type BurstLog struct {
	Log      *slog.Logger
	Interval time.Duration // defaults to 10s

	mu      sync.Mutex
	started time.Time
	counts  map[string]int
}

// Refused records one refusal.
func (b *BurstLog) Refused(limit, reason string) {
	b.refused(limit+"/"+reason, "limit", limit, "reason", reason)
}

// refused records one refusal counted under key; attrs describe the first
// refusal of a burst.
func (b *BurstLog) refused(key string, attrs ...any) {
	if b == nil || b.Log == nil {
		return
	}
	interval := b.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	switch {
	case b.counts == nil || now.Sub(b.started) >= 2*interval:
		// A new burst (the last one ended an interval ago or more): its
		// first refusal is logged at once; a summary of the previous one
		// that was never flushed is dropped (the metric has it).
		b.Log.Warn("admission control is refusing requests", attrs...)
		b.started, b.counts = now, map[string]int{key: 1}
	case now.Sub(b.started) >= interval:
		// The burst goes on: one summary per interval.
		b.Log.Warn("admission refused requests", "counts", b.counts, "over", now.Sub(b.started).Round(time.Millisecond).String())
		b.started, b.counts = now, map[string]int{key: 1}
	default:
		b.counts[key]++
	}
}
