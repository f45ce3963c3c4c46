package admission

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestLimiterAdmitsQueuesAndRefuses(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	l := &Limiter{Name: "chat", Max: 2, Queue: 1, MaxWait: 200 * time.Millisecond, Metrics: m}
	ctx := context.Background()

	r1, err := l.Acquire(ctx)
	require.NoError(t, err)
	r2, err := l.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, l.InFlight())

	// The third waits in the queue and gets the slot r1 frees.
	got := make(chan error, 1)
	go func() {
		r3, err := l.Acquire(ctx)
		if err == nil {
			r3()
		}
		got <- err
	}()
	require.Eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiting == 1 }, time.Second, time.Millisecond)
	// The queue is full now: the fourth is refused at once.
	_, err = l.Acquire(ctx)
	rej, ok := AsRejected(err)
	require.True(t, ok, "got %v", err)
	require.Equal(t, ReasonQueueFull, rej.Reason)
	r1()
	require.NoError(t, <-got)

	// A waiter whose wait runs out is refused with queue_timeout.
	r4, err := l.Acquire(ctx)
	require.NoError(t, err)
	start := time.Now()
	_, err = l.Acquire(ctx)
	rej, ok = AsRejected(err)
	require.True(t, ok)
	require.Equal(t, ReasonTimeout, rej.Reason)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	r2()
	r4()
	r4() // release is idempotent
	require.Equal(t, 0, l.InFlight())
	require.Equal(t, map[string]float64{"chat/" + ReasonQueueFull: 1, "chat/" + ReasonTimeout: 1}, rejected(t, reg))
}

func TestLimiterHonoursContext(t *testing.T) {
	t.Parallel()
	l := &Limiter{Name: "sse", Max: 1, Queue: 5, MaxWait: time.Minute}
	r, err := l.Acquire(context.Background())
	require.NoError(t, err)
	defer r()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = l.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestLimiterConcurrencyNeverExceedsMax(t *testing.T) {
	t.Parallel()
	l := &Limiter{Name: "x", Max: 3, Queue: 100, MaxWait: 5 * time.Second}
	var mu sync.Mutex
	cur, peak, failed := 0, 0, 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.Acquire(context.Background())
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				return
			}
			mu.Lock()
			cur++
			peak = max(peak, cur)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			cur--
			mu.Unlock()
			r()
		}()
	}
	wg.Wait()
	require.Zero(t, failed, "the queue holds every waiter")
	require.Equal(t, 3, peak, "never more than Max, and Max is reached")
}

func TestMemoryGuardHysteresis(t *testing.T) {
	t.Parallel()
	var used uint64
	g := &MemoryGuard{Limit: 1000, HighWater: 0.85, LowWater: 0.75, Read: func() uint64 { return used }}
	l := &Limiter{Name: "chat", Gate: g.Gate}
	step := func(u uint64) bool { used = u; g.Sample(); return g.Shedding() }

	require.False(t, step(500))
	require.True(t, step(860), "above high water: shed")
	_, err := l.Acquire(context.Background())
	rej, ok := AsRejected(err)
	require.True(t, ok)
	require.Equal(t, ReasonMemory, rej.Reason)
	require.True(t, step(800), "between the marks: still shedding")
	require.False(t, step(700), "below low water: recovered")
	r, err := l.Acquire(context.Background())
	require.NoError(t, err)
	r()
	require.False(t, step(800), "between the marks: still admitting")
}

// TestMemoryGuardCollectsBeforeShedding: garbage does not make the guard
// shed, nor keep it shedding once the work that used the memory is done.
func TestMemoryGuardCollectsBeforeShedding(t *testing.T) {
	t.Parallel()
	var live, garbage uint64
	collects := 0
	g := &MemoryGuard{Limit: 1000, HighWater: 0.85, LowWater: 0.75, CollectEvery: time.Nanosecond,
		Read:    func() uint64 { return live + garbage },
		Collect: func() { collects++; garbage = 0 }}
	step := func(l, gb uint64) bool { live, garbage = l, gb; g.Sample(); return g.Shedding() }

	require.False(t, step(500, 0))
	require.Zero(t, collects, "below the marks: no collection")
	require.False(t, step(500, 400), "above high water, but garbage: no shedding")
	require.Equal(t, 1, collects)
	used, _ := g.Usage()
	require.EqualValues(t, 500, used, "the reading after the collection")
	require.True(t, step(900, 0), "live memory above high water: shed")
	require.Equal(t, 2, collects)
	require.True(t, step(800, 0), "live, between the marks: still shedding")
	require.Equal(t, 3, collects)
	require.False(t, step(100, 700), "the work ended, its memory is garbage: recovered")
	require.Equal(t, 4, collects)

	// At most one collection per CollectEvery.
	g.CollectEvery = time.Hour
	require.True(t, step(900, 0))
	require.True(t, step(100, 700), "no collection yet: the garbage counts")
	require.Equal(t, 4, collects)
}

func TestMemoryGuardBacksOffWhileMemoryIsLive(t *testing.T) {
	t.Parallel()
	var collects atomic.Int64
	g := &MemoryGuard{Limit: 1000, HighWater: 0.85, LowWater: 0.75, CollectEvery: 20 * time.Millisecond,
		Read: func() uint64 { return 900 }, Collect: func() { collects.Add(1) }}
	deadline := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(deadline) {
		g.Sample()
		time.Sleep(2 * time.Millisecond)
	}
	require.True(t, g.Shedding())
	// Without the back-off: one collection per 20 ms, about 30. With it
	// the waits double (20, 40, 80, 160, 320 ms): at most 6.
	require.LessOrEqual(t, collects.Load(), int64(6), "a full GC every sample while memory is really in use")
	require.GreaterOrEqual(t, collects.Load(), int64(3))
}

func TestMemoryGuardWithoutLimitNeverSheds(t *testing.T) {
	t.Parallel()
	g := &MemoryGuard{Read: func() uint64 { return 1 << 40 }}
	g.Limit = 0
	g.once.Do(func() {}) // skip detection: no limit
	g.Sample()
	require.False(t, g.Shedding())
	require.False(t, errors.Is(nil, context.Canceled))
}

// rejected reads agentd_admission_rejected_total by "limit/reason".
func rejected(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "agentd_admission_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			out[labels["limit"]+"/"+labels["reason"]] = m.GetCounter().GetValue()
		}
	}
	return out
}
