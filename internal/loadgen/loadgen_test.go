package loadgen

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunHonoursRate(t *testing.T) {
	t.Parallel()
	var calls, warm atomic.Int64
	cfg := Config{Rate: 200, Duration: time.Second, Warmup: 100 * time.Millisecond}
	start := time.Now()
	res, err := Run(context.Background(), cfg, func(ctx context.Context) error {
		calls.Add(1)
		if IsWarmup(ctx) {
			warm.Add(1)
		}
		return nil
	})
	elapsed := time.Since(start)
	require.NoError(t, err)

	// Tolerances are loose on purpose: the test must pass on a busy
	// 2-core CI machine.
	want := cfg.Rate * cfg.Duration.Seconds()
	assert.InDelta(t, want, float64(res.Count), want*0.2, "count")
	assert.InDelta(t, cfg.Rate, res.Rate, cfg.Rate*0.2, "achieved rate")
	assert.InDelta(t, cfg.Rate*cfg.Warmup.Seconds(), float64(warm.Load()), cfg.Rate*cfg.Warmup.Seconds()*0.2+1, "warmup requests")
	assert.Equal(t, res.Count+warm.Load(), calls.Load(), "every started request calls do once")
	assert.Zero(t, res.Errors)
	assert.Zero(t, res.Dropped)
	assert.Nil(t, res.FirstErr)
	assert.Equal(t, cfg.Duration, res.Duration)
	assert.Equal(t, cfg.Rate, res.Target)
	assert.Equal(t, int(res.Count), res.Latency.N)
	assert.Equal(t, int(res.Count), res.Lag.N)
	assert.LessOrEqual(t, res.Lag.P50, res.Latency.Max)
	assert.LessOrEqual(t, res.Latency.P50, res.Latency.P90)
	assert.LessOrEqual(t, res.Latency.P90, res.Latency.P99)
	assert.LessOrEqual(t, res.Latency.P99, res.Latency.Max)
	// Open loop: the run takes warmup + duration, not longer (the load is
	// spread over the window, not sent as fast as possible).
	assert.GreaterOrEqual(t, elapsed, time.Duration(float64(cfg.Warmup+cfg.Duration)*0.95))
	assert.Less(t, elapsed, cfg.Warmup+cfg.Duration+time.Second)
}

func TestRunDropsAtMaxInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var started atomic.Int64
	cfg := Config{Rate: 100, Duration: 300 * time.Millisecond, MaxInFlight: 2}
	go func() {
		time.Sleep(cfg.Duration + 100*time.Millisecond)
		close(release)
	}()
	res, err := Run(context.Background(), cfg, func(ctx context.Context) error {
		started.Add(1)
		<-release
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(2), res.Count)
	assert.Equal(t, int64(2), started.Load())
	assert.Equal(t, int64(30), res.Count+res.Dropped, "every scheduled request is started or dropped")
	assert.Equal(t, 2, res.Latency.N)
	// Both waited for release, scheduled at 0 and 10ms.
	assert.GreaterOrEqual(t, res.Latency.Max, cfg.Duration)
}

func TestRunCountsErrors(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	boom := errors.New("boom")
	res, err := Run(context.Background(), Config{Rate: 100, Duration: 200 * time.Millisecond}, func(ctx context.Context) error {
		if n.Add(1)%2 == 0 {
			return boom
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(20), res.Count)
	assert.Equal(t, int64(10), res.Errors)
	assert.Equal(t, 10, res.Latency.N, "latency counts successes only")
	assert.ErrorIs(t, res.FirstErr, boom)
	assert.Contains(t, res.String(), "first error: boom")
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()
	res, err := Run(context.Background(), Config{Rate: 50, Duration: 100 * time.Millisecond, Timeout: 20 * time.Millisecond},
		func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
	require.NoError(t, err)
	assert.Equal(t, int64(5), res.Count)
	assert.Equal(t, res.Count, res.Errors)
	assert.ErrorIs(t, res.FirstErr, context.DeadlineExceeded)
}

func TestRunScheduledStart(t *testing.T) {
	t.Parallel()
	var bad atomic.Int64
	_, err := Run(context.Background(), Config{Rate: 100, Duration: 100 * time.Millisecond}, func(ctx context.Context) error {
		at, ok := Scheduled(ctx)
		if !ok || at.IsZero() || at.After(time.Now()) {
			bad.Add(1)
		}
		return nil
	})
	require.NoError(t, err)
	assert.Zero(t, bad.Load())
	_, ok := Scheduled(context.Background())
	assert.False(t, ok)
	assert.False(t, IsWarmup(context.Background()))
}

func TestRunLatencyFromSchedule(t *testing.T) {
	t.Parallel()
	// A request that takes 30ms has a latency of at least 30ms; and since
	// requests are not waited for, 10 of them at 100/s take ~130ms in all.
	start := time.Now()
	res, err := Run(context.Background(), Config{Rate: 100, Duration: 100 * time.Millisecond}, func(ctx context.Context) error {
		time.Sleep(30 * time.Millisecond)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(10), res.Count)
	assert.GreaterOrEqual(t, res.Latency.P50, 30*time.Millisecond)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestRunCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{Rate: 100, Duration: time.Minute}, func(ctx context.Context) error { return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Less(t, res.Duration, time.Minute)
	assert.Positive(t, res.Count)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	noop := func(context.Context) error { return nil }
	for _, cfg := range []Config{
		{Rate: 0, Duration: time.Second},
		{Rate: -1, Duration: time.Second},
		{Rate: 10, Duration: 0},
		{Rate: 10, Duration: time.Second, Warmup: -1},
		{Rate: 10, Duration: time.Second, MaxInFlight: -1},
		{Rate: 10, Duration: time.Second, Timeout: -1},
	} {
		_, err := Run(context.Background(), cfg, noop)
		assert.Error(t, err, "%+v", cfg)
	}
	_, err := Run(context.Background(), Config{Rate: 10, Duration: time.Second}, nil)
	assert.Error(t, err)
	err = Config{Rate: 0, Duration: 0}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rate")
	assert.Contains(t, err.Error(), "duration")
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	// 1ms..100ms in random order.
	var s Samples
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(100) {
		s.Add(time.Duration(i+1) * time.Millisecond)
	}
	assert.Equal(t, 100, s.Len())
	p := s.Percentiles()
	assert.Equal(t, Percentiles{N: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}, p)
	assert.Equal(t, "p50 50ms p90 90ms p99 99ms max 100ms (n=100)", p.String())

	sorted := []time.Duration{10, 20, 30, 40}
	assert.Equal(t, time.Duration(20), Percentile(sorted, 50)) // rank ceil(2) = 2
	assert.Equal(t, time.Duration(40), Percentile(sorted, 90)) // rank ceil(3.6) = 4
	assert.Equal(t, time.Duration(10), Percentile(sorted, 25))
	assert.Equal(t, time.Duration(30), Percentile(sorted, 51))
	assert.Equal(t, time.Duration(10), Percentile(sorted, 0.1))
	assert.Equal(t, time.Duration(7), Percentile([]time.Duration{7}, 99))
	assert.Zero(t, Percentile(nil, 50))
	assert.Equal(t, Percentiles{}, (&Samples{}).Percentiles())

	// 1000 values: p99 is the 990th.
	big := make([]time.Duration, 1000)
	for i := range big {
		big[i] = time.Duration(i + 1)
	}
	assert.Equal(t, time.Duration(990), Percentile(big, 99))
	assert.Equal(t, time.Duration(500), Percentile(big, 50))
	assert.Equal(t, time.Duration(290), Percentile(big, 29))
}

func TestResultString(t *testing.T) {
	t.Parallel()
	s := Result{Target: 50, Duration: 5 * time.Second, Count: 250, Errors: 1, Dropped: 2, Rate: 50,
		Latency: Percentiles{N: 249, P50: 1234567, P90: 2 * time.Millisecond, P99: 3 * time.Millisecond, Max: 12 * time.Millisecond}}.String()
	assert.Equal(t, "rate 50.0/s (target 50.0/s) over 5s: 250 requests, 1 errors, 2 dropped; latency p50 1.235ms p90 2ms p99 3ms max 12ms (n=249); start lag p50 0s p99 0s", s)
	assert.False(t, strings.Contains(s, "first error"))
}
