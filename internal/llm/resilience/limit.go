package resilience

import (
	"container/list"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// Concurrency defaults.
const (
	// DefaultMaxInFlight is ConcurrencyConfig.MaxInFlight's default.
	DefaultMaxInFlight = 64
	// DefaultQueueSize is ConcurrencyConfig.QueueSize's default.
	DefaultQueueSize = 256
)

// ConcurrencyConfig bounds a provider's calls in flight.
type ConcurrencyConfig struct {
	// MaxInFlight is the most calls (retries and back-off waits included)
	// in flight to the provider at once; negative means unlimited.
	// Defaults to 64.
	MaxInFlight int
	// QueueSize is the most calls waiting (first in, first out) for a slot;
	// a call arriving at a full queue fails at once with queue_full, a
	// waiting call gives up at its context's deadline. Negative means no
	// queue (excess calls fail at once). Defaults to 256.
	QueueSize int
}

func (c ConcurrencyConfig) withDefaults() ConcurrencyConfig {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	c.QueueSize = max(c.QueueSize, 0)
	return c
}

// Limiter is a counting semaphore with a bounded FIFO queue.
type Limiter struct {
	provider string
	max      int
	queue    int
	metrics  *Metrics

	mu       sync.Mutex
	inFlight int
	waiters  list.List // of chan struct{}, closed when granted a slot
}

// NewLimiter returns a limiter for provider's calls. MaxInFlight < 0 gives a
// limiter that never limits.
func NewLimiter(provider string, cfg ConcurrencyConfig, m *Metrics) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{provider: provider, max: cfg.MaxInFlight, queue: cfg.QueueSize, metrics: m}
}

// Acquire takes a slot, waiting in line up to ctx's end. It fails with an
// *llm.Error of Type "queue_full" when the line is full, or with ctx's error.
// A nil error must be paired with one Release.
func (l *Limiter) Acquire(ctx context.Context) error {
	if l.max < 0 {
		return nil
	}
	start := time.Now()
	l.mu.Lock()
	if l.inFlight < l.max && l.waiters.Len() == 0 {
		l.inFlight++
		l.mu.Unlock()
		l.metrics.queueWait(l.provider, 0)
		l.metrics.inFlight(l.provider, 1)
		return nil
	}
	if l.waiters.Len() >= l.queue {
		l.mu.Unlock()
		l.metrics.queueRejected(l.provider)
		return &llm.Error{
			Type:       TypeQueueFull,
			Message:    "too many model calls to " + l.provider + ": " + strconv.Itoa(l.max) + " in flight and " + strconv.Itoa(l.queue) + " waiting",
			RetryAfter: time.Second,
		}
	}
	ch := make(chan struct{})
	el := l.waiters.PushBack(ch)
	l.mu.Unlock()

	select {
	case <-ch:
		l.metrics.queueWait(l.provider, time.Since(start))
		l.metrics.inFlight(l.provider, 1)
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		select {
		case <-ch:
			// Granted while giving up: pass the slot on.
			l.mu.Unlock()
			l.metrics.inFlight(l.provider, 1)
			l.Release()
		default:
			l.waiters.Remove(el)
			l.mu.Unlock()
		}
		l.metrics.queueWait(l.provider, time.Since(start))
		return fmt.Errorf("model call: waiting for a concurrency slot: %w", context.Cause(ctx))
	}
}

// Release returns a slot, handing it to the first waiter if any.
func (l *Limiter) Release() {
	if l.max < 0 {
		return
	}
	l.metrics.inFlight(l.provider, -1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if front := l.waiters.Front(); front != nil {
		l.waiters.Remove(front)
		close(front.Value.(chan struct{}))
		return
	}
	l.inFlight--
}

// InFlight returns the calls holding a slot and the calls waiting.
func (l *Limiter) InFlight() (inFlight, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight, l.waiters.Len()
}

// Limit returns next bounded by l.
func Limit(next llm.Model, l *Limiter) llm.Model { return &limitModel{next: next, l: l} }

type limitModel struct {
	next llm.Model
	l    *Limiter
}

func (m *limitModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if err := m.l.Acquire(ctx); err != nil {
		return llm.Response{}, err
	}
	defer m.l.Release()
	return m.next.Stream(ctx, req, onDelta)
}
