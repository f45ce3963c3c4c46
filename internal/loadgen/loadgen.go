// Package loadgen is an open-loop, fixed-rate load generator.
//
// Run starts requests on a fixed schedule (request i at start + i/Rate),
// whether or not earlier requests have finished, and measures each latency
// from the request's scheduled start, not from the moment it actually
// started. A slow system therefore cannot slow the load down and hide its
// own slowness (coordinated omission): time a request spent waiting for the
// generator — because the scheduler was late or the machine was busy — counts
// as latency.
//
// Timers wake late (0.5-1 ms on a typical VM), which would add the
// generator's own lateness to every latency at low rates. The scheduler
// therefore sleeps until shortly before each start and spins (yielding)
// for the rest: at most 1 ms and a tenth of the interval per request, so it
// never uses more than a tenth of a core. Result.Lag shows how late requests
// actually started.
//
// At most MaxInFlight requests run at once; a request scheduled while that
// many are in flight is not started and counts as dropped, so an overloaded
// target shows up as drops and errors instead of an ever-growing backlog.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxInFlight is the in-flight limit used when Config.MaxInFlight is 0.
const DefaultMaxInFlight = 1024

// maxSpin bounds the busy wait before each scheduled start.
const maxSpin = time.Millisecond

// Config is a load run.
type Config struct {
	// Rate is the number of requests started per second (> 0).
	Rate float64
	// Duration is the measured part of the run (> 0).
	Duration time.Duration
	// Warmup is an unmeasured part before Duration (>= 0), at the same
	// rate: its requests are sent but not counted (connection pools,
	// caches, JIT-like first-use costs).
	Warmup time.Duration
	// MaxInFlight caps concurrent requests; a scheduled request that finds
	// the cap reached is dropped. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// Timeout bounds one request (its context's deadline). 0: only the
	// context given to Run bounds it.
	Timeout time.Duration
}

// Validate reports a config Run would refuse.
func (c Config) Validate() error {
	var errs []error
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate: must be a positive number of requests per second, not %v", c.Rate))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration: must be positive, not %v", c.Duration))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup: must not be negative, not %v", c.Warmup))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("max_in_flight: must not be negative, not %d", c.MaxInFlight))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, not %v", c.Timeout))
	}
	return errors.Join(errs...)
}

// Result is the outcome of the measured part of a run.
type Result struct {
	// Target is the configured rate (requests per second).
	Target float64
	// Duration is the measured window.
	Duration time.Duration
	// Count is the number of requests started in the measured window,
	// successful or not.
	Count int64
	// Errors is how many of them failed (do returned an error, including
	// a timeout).
	Errors int64
	// Dropped is the number of requests scheduled in the measured window
	// but not started because MaxInFlight requests were in flight.
	Dropped int64
	// Rate is the achieved rate: Count / Duration.
	Rate float64
	// Latency summarises the successful requests, each measured from its
	// scheduled start to the return of do.
	Latency Percentiles
	// Lag summarises how late the measured requests started (do was
	// called) compared with their schedule: the generator's own delay,
	// included in Latency. A large Lag means the load machine, not the
	// target, is the bottleneck.
	Lag Percentiles
	// FirstErr is the first error a measured request returned, if any.
	FirstErr error
}

// String is a one-line summary.
func (r Result) String() string {
	s := fmt.Sprintf("rate %.1f/s (target %.1f/s) over %v: %d requests, %d errors, %d dropped; latency %v; start lag p50 %v p99 %v",
		r.Rate, r.Target, r.Duration, r.Count, r.Errors, r.Dropped, r.Latency, round(r.Lag.P50), round(r.Lag.P99))
	if r.FirstErr != nil {
		s += fmt.Sprintf("; first error: %v", r.FirstErr)
	}
	return s
}

type ctxKey struct{}

type reqInfo struct {
	scheduled time.Time
	warmup    bool
}

// Scheduled returns the scheduled start of the request whose context is ctx
// (the do func's context), to measure other intervals (e.g. time to first
// byte) the same way Run measures latency.
func Scheduled(ctx context.Context) (time.Time, bool) {
	ri, ok := ctx.Value(ctxKey{}).(*reqInfo)
	if !ok {
		return time.Time{}, false
	}
	return ri.scheduled, true
}

// IsWarmup reports whether the request whose context is ctx belongs to the
// unmeasured warmup.
func IsWarmup(ctx context.Context) bool {
	ri, ok := ctx.Value(ctxKey{}).(*reqInfo)
	return ok && ri.warmup
}

// Run sends load at cfg.Rate for cfg.Warmup + cfg.Duration, calling do once
// per request in its own goroutine, then waits for the requests in flight.
// do must be safe for concurrent use and should honour its context.
//
// When ctx ends, Run stops scheduling, waits for the requests in flight
// (their contexts end too) and returns what was measured with ctx's error.
func Run(ctx context.Context, cfg Config, do func(ctx context.Context) error) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if do == nil {
		return Result{}, errors.New("loadgen: do func is nil")
	}
	maxInFlight := cfg.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = DefaultMaxInFlight
	}

	var (
		sem     = make(chan struct{}, maxInFlight)
		wg      sync.WaitGroup
		lat     Samples
		lag     Samples
		count   int64
		dropped int64
		errs    atomic.Int64
		errOnce sync.Once
		first   error
	)
	expected := int(math.Min(cfg.Rate*cfg.Duration.Seconds()+1, 1<<20))
	lat.d = make([]time.Duration, 0, expected)
	lag.d = make([]time.Duration, 0, expected)

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	nsPerReq := float64(time.Second) / cfg.Rate
	spin := min(maxSpin, time.Duration(nsPerReq/10))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

schedule:
	for i := int64(0); ; i++ {
		// Computed from i, not accumulated, so rounding never drifts.
		at := start.Add(time.Duration(float64(i) * nsPerReq))
		if !at.Before(end) {
			break
		}
		if wait := time.Until(at) - spin; wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break schedule
			case <-timer.C:
			}
		}
		for time.Now().Before(at) {
			runtime.Gosched()
		}
		if ctx.Err() != nil {
			break
		}
		// Late (scheduler or machine busy): start at once; the delay
		// counts as latency since it is measured from at.
		measured := !at.Before(measureFrom)
		select {
		case sem <- struct{}{}:
		default:
			if measured {
				dropped++
			}
			continue
		}
		if measured {
			count++
		}
		wg.Add(1)
		go func(at time.Time, measured bool) {
			defer wg.Done()
			defer func() { <-sem }()
			if measured {
				lag.Add(time.Since(at))
			}
			rctx := context.WithValue(ctx, ctxKey{}, &reqInfo{scheduled: at, warmup: !measured})
			if cfg.Timeout > 0 {
				var cancel context.CancelFunc
				// The deadline runs from the scheduled start too.
				rctx, cancel = context.WithDeadline(rctx, at.Add(cfg.Timeout))
				defer cancel()
			}
			err := do(rctx)
			d := time.Since(at)
			if !measured {
				return
			}
			if err != nil {
				errs.Add(1)
				errOnce.Do(func() { first = err })
				return
			}
			lat.Add(d)
		}(at, measured)
	}
	wg.Wait()

	window := cfg.Duration
	if now := time.Now(); ctx.Err() != nil && now.Before(end) {
		// Cut short: the measured window is what elapsed of it.
		window = max(now.Sub(measureFrom), 0)
	}
	res := Result{
		Target:   cfg.Rate,
		Duration: window,
		Count:    count,
		Errors:   errs.Load(),
		Dropped:  dropped,
		Latency:  lat.Percentiles(),
		Lag:      lag.Percentiles(),
		FirstErr: first,
	}
	if window > 0 {
		res.Rate = float64(count) / window.Seconds()
	}
	return res, ctx.Err()
}

// Percentiles summarise a set of durations.
type Percentiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// String formats the percentiles, e.g. "p50 1.2ms p90 2ms p99 3.1ms max 9ms (n=500)".
func (p Percentiles) String() string {
	return fmt.Sprintf("p50 %v p90 %v p99 %v max %v (n=%d)",
		round(p.P50), round(p.P90), round(p.P99), round(p.Max), p.N)
}

// round keeps three significant digits or so, for readable summaries.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 100*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= 10*time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	default:
		return d
	}
}

// Samples collects durations and computes exact percentiles from them (a
// sorted sample: 8 bytes per request, exact at any rate a single process
// can generate). It is safe for concurrent use; the zero value is ready.
type Samples struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one duration.
func (s *Samples) Add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// Len returns the number of recorded durations.
func (s *Samples) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

// Percentiles returns P50, P90, P99 and Max of the recorded durations
// (zero if none).
func (s *Samples) Percentiles() Percentiles {
	s.mu.Lock()
	sorted := slices.Clone(s.d)
	s.mu.Unlock()
	slices.Sort(sorted)
	return Percentiles{
		N:   len(sorted),
		P50: Percentile(sorted, 50),
		P90: Percentile(sorted, 90),
		P99: Percentile(sorted, 99),
		Max: Percentile(sorted, 100),
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted, an
// ascending slice, by the nearest-rank method: the smallest value such that
// at least p% of the values are less than or equal to it. It returns 0 for
// an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The small epsilon keeps p*n that is an integer in exact arithmetic
	// (e.g. 0.29*100) from rounding up in floating point.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}
