package resilience

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/sim"
)

func TestOverloadStormOpensBreakerAndFallsBack(t *testing.T) {
	t.Parallel()
	simA := newSim(sim.Config{Rate529: 1, Seed: 1})
	simB := newSim(sim.Config{})
	client := serve(t, byModel(map[string]http.Handler{modelA: simA, modelB: simB}), "k")
	m, reg := testMetrics()
	p := newProvider(t, ProviderConfig{
		Retry:    RetryConfig{MaxAttempts: 2, BaseDelay: time.Millisecond},
		Breaker:  BreakerConfig{Config: breaker.Config{ConsecutiveFailures: 3, OpenTimeout: time.Minute}},
		Breakers: breaker.NewSet(breaker.Options{Registerer: reg}),
	}, client, m)
	model, err := Build(AgentConfig{Name: "a", Model: modelA, FallbackModels: []string{modelB}}, p, nil, m, nil)
	require.NoError(t, err)

	const calls = 10
	for i := range calls {
		resp, streamed, err := call(context.Background(), model, request("hello storm"))
		require.NoError(t, err, "call %d", i)
		require.Equal(t, modelB, resp.Model, "the fallback model answered")
		require.Equal(t, text(resp), streamed)
	}
	// 3 calls × 2 attempts reached A before its breaker opened; the rest
	// failed fast without a request.
	require.EqualValues(t, 3*2, simA.Requests())
	require.EqualValues(t, calls, simB.Requests())
	require.True(t, p.Degraded())
	bs := p.Breakers()
	require.Len(t, bs, 2)
	require.Equal(t, modelA, bs[0].Model)
	require.Equal(t, BreakerOpen, bs[0].State)
	require.Equal(t, BreakerClosed, bs[1].State)
	require.InDelta(t, 2, gaugeValue(t, reg, "agentd_breaker_state", "dependency", "model:"+modelA), 0)
	require.InDelta(t, 0, gaugeValue(t, reg, "agentd_breaker_state", "dependency", "model:"+modelB), 0)
	require.InDelta(t, calls, value(t, m.Fallbacks.WithLabelValues(modelA, modelB)), 0)
	require.InDelta(t, 3, value(t, m.Retries.WithLabelValues(modelA, "overloaded")), 0)

	// Without a fallback, the open breaker fails fast with circuit_open.
	solo, err := Build(AgentConfig{Name: "solo", Model: modelA}, p, nil, m, nil)
	require.NoError(t, err)
	before := simA.Requests()
	_, _, err = call(context.Background(), solo, request("hello"))
	e, ok := llm.AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, TypeCircuitOpen, e.Type)
	require.True(t, e.Temporary())
	require.Positive(t, e.RetryAfter)
	require.Equal(t, before, simA.Requests())
}

func TestBreakerHalfOpensAndCloses(t *testing.T) {
	t.Parallel()
	failing := newSim(sim.Config{Rate500: 1, Seed: 1})
	healthy := newSim(sim.Config{})
	sw := newSwitchable(failing)
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{
		Retry:   RetryConfig{MaxAttempts: 1},
		Breaker: BreakerConfig{Config: breaker.Config{ConsecutiveFailures: 2, OpenTimeout: 100 * time.Millisecond, HalfOpenProbes: 2}},
	}, serve(t, sw, "k"), m)
	model := p.Model(modelA)
	for range 2 {
		_, _, err := call(context.Background(), model, request("x"))
		e, ok := llm.AsError(err)
		require.True(t, ok)
		require.Equal(t, http.StatusInternalServerError, e.Status)
	}
	_, _, err := call(context.Background(), model, request("x"))
	e, _ := llm.AsError(err)
	require.Equal(t, TypeCircuitOpen, e.Type)

	sw.set(healthy)
	time.Sleep(150 * time.Millisecond)
	require.Equal(t, BreakerHalfOpen, p.Breakers()[0].State)
	for range 2 {
		_, _, err := call(context.Background(), model, request("x"))
		require.NoError(t, err)
	}
	require.Equal(t, BreakerClosed, p.Breakers()[0].State)
	require.False(t, p.Degraded())
}

func TestBreakerIgnoresClientErrorsAndCancellation(t *testing.T) {
	t.Parallel()
	s := newSim(sim.Config{Latency: time.Second})
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{Breaker: BreakerConfig{Config: breaker.Config{ConsecutiveFailures: 2}}}, serve(t, s, "k"), m)
	model := p.Model(modelA)
	for range 3 {
		req := request("x")
		req.MaxTokens = 0 // the API answers 400
		_, _, err := call(context.Background(), model, req)
		e, ok := llm.AsError(err)
		require.True(t, ok, "%v", err)
		require.Equal(t, http.StatusBadRequest, e.Status)
		require.False(t, e.Temporary())
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _, err := call(ctx, model, request("x"))
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	require.Equal(t, BreakerClosed, p.Breakers()[0].State)
}

func TestRequestTimeoutIsAnUpstreamTimeout(t *testing.T) {
	t.Parallel()
	s := newSim(sim.Config{Latency: time.Second})
	client := anthropic.New(anthropic.Config{BaseURL: serveURL(t, s), APIKey: "k", RequestTimeout: 30 * time.Millisecond})
	_, _, err := call(context.Background(), client, request("x"))
	e, ok := llm.AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "timeout", e.Type)
	require.True(t, e.Temporary())
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	limited := newSim(sim.Config{Rate429: 1, RetryAfter: 300 * time.Millisecond, Seed: 1})
	healthy := newSim(sim.Config{})
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{Retry: RetryConfig{MaxAttempts: 3, BaseDelay: time.Millisecond}},
		serve(t, firstN(1, limited, healthy), "k"), m)
	start := time.Now()
	resp, _, err := call(context.Background(), p.Model(modelA), request("hello"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "waited the retry-after, not the 1ms back-off")
	require.NotEmpty(t, text(resp))
	require.EqualValues(t, 1, limited.Requests())
	require.EqualValues(t, 1, healthy.Requests())
	require.InDelta(t, 1, value(t, m.Retries.WithLabelValues(modelA, "rate_limit")), 0)
}

func TestRetryGivesUpWhenRetryAfterOutlivesDeadline(t *testing.T) {
	t.Parallel()
	limited := newSim(sim.Config{Rate429: 1, RetryAfter: 5 * time.Second, Seed: 1})
	p := newProvider(t, ProviderConfig{Retry: RetryConfig{MaxAttempts: 5}}, serve(t, limited, "k"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := call(ctx, p.Model(modelA), request("hello"))
	require.Less(t, time.Since(start), time.Second, "gave up at once")
	e, ok := llm.AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, http.StatusTooManyRequests, e.Status)
	require.Equal(t, 5*time.Second, e.RetryAfter)
	require.EqualValues(t, 1, limited.Requests())
}

func TestRetryBackoffBoundedByAttempts(t *testing.T) {
	t.Parallel()
	s := newSim(sim.Config{Rate500: 1, Seed: 1})
	p := newProvider(t, ProviderConfig{Retry: fastRetry, Breaker: BreakerConfig{Config: breaker.Config{Disabled: true}}}, serve(t, s, "k"), nil)
	_, _, err := call(context.Background(), p.Model(modelA), request("x"))
	e, ok := llm.AsError(err)
	require.True(t, ok)
	require.Equal(t, http.StatusInternalServerError, e.Status)
	require.EqualValues(t, 3, s.Requests())

	r := &retryModel{cfg: RetryConfig{BaseDelay: 100 * time.Millisecond, MaxDelay: 400 * time.Millisecond}.withDefaults()}
	for attempt, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: 400 * time.Millisecond} {
		for range 50 {
			d := r.backoff(attempt)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceil)
		}
	}
}

func TestStreamFailureBeforeFirstByteFallsBack(t *testing.T) {
	t.Parallel()
	simA := newSim(sim.Config{Rate500: 1, Seed: 1})
	simB := newSim(sim.Config{EventDelay: time.Millisecond})
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{Retry: fastRetry}, serve(t, byModel(map[string]http.Handler{modelA: simA, modelB: simB}), "k"), m)
	model, err := Build(AgentConfig{Model: modelA, FallbackModels: []string{modelB}}, p, nil, m, nil)
	require.NoError(t, err)
	resp, streamed, err := call(context.Background(), model, request("tell me something"))
	require.NoError(t, err)
	require.Equal(t, modelB, resp.Model)
	require.Equal(t, text(resp), streamed, "the client saw B's text only")
	require.EqualValues(t, 3, simA.Requests())
	require.EqualValues(t, 1, simB.Requests())
}

func TestStreamFailureAfterFirstByteIsNotRetriedNorFallenBack(t *testing.T) {
	t.Parallel()
	simA := newSim(sim.Config{RateCut: 1, Words: 40, Seed: 1})
	simB := newSim(sim.Config{})
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{Retry: fastRetry}, serve(t, byModel(map[string]http.Handler{modelA: simA, modelB: simB}), "k"), m)
	model, err := Build(AgentConfig{Model: modelA, FallbackModels: []string{modelB}}, p, nil, m, nil)
	require.NoError(t, err)
	_, streamed, err := call(context.Background(), model, request("tell me a long story"))
	e, ok := llm.AsError(err)
	require.True(t, ok, "%v", err)
	require.True(t, e.Streamed)
	require.NotEmpty(t, streamed, "part of the answer reached the client")
	require.EqualValues(t, 1, simA.Requests(), "no retry")
	require.EqualValues(t, 0, simB.Requests(), "no fallback")
	require.InDelta(t, 0, value(t, m.Fallbacks.WithLabelValues(modelA, modelB)), 0)
}

func TestNonTemporaryErrorDoesNotFallBack(t *testing.T) {
	t.Parallel()
	simA := newSim(sim.Config{})
	simB := newSim(sim.Config{})
	p := newProvider(t, ProviderConfig{Retry: fastRetry}, serve(t, byModel(map[string]http.Handler{modelA: simA, modelB: simB}), "k"), nil)
	model, err := Build(AgentConfig{Model: modelA, FallbackModels: []string{modelB}}, p, nil, nil, nil)
	require.NoError(t, err)
	req := request("x")
	req.MaxTokens = 0
	_, _, err = call(context.Background(), model, req)
	e, ok := llm.AsError(err)
	require.True(t, ok)
	require.Equal(t, http.StatusBadRequest, e.Status)
	require.EqualValues(t, 1, simA.Requests())
	require.EqualValues(t, 0, simB.Requests())
}

func TestConcurrencyLimitQueuesThenRejects(t *testing.T) {
	t.Parallel()
	const maxInFlight, queue, extra = 2, 2, 3
	s := newSim(sim.Config{Latency: 300 * time.Millisecond})
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{Concurrency: ConcurrencyConfig{MaxInFlight: maxInFlight, QueueSize: queue}}, serve(t, s, "k"), m)
	model := p.Model(modelA)

	var (
		wg       sync.WaitGroup
		ok, full atomic.Int32
		mu       sync.Mutex
		fullIn   []time.Duration
	)
	for range maxInFlight + queue + extra {
		wg.Go(func() {
			start := time.Now()
			_, _, err := call(context.Background(), model, request("x"))
			if err == nil {
				ok.Add(1)
				return
			}
			e, isLLM := llm.AsError(err)
			if isLLM && e.Type == TypeQueueFull {
				full.Add(1)
				require.True(t, e.Temporary())
				mu.Lock()
				fullIn = append(fullIn, time.Since(start))
				mu.Unlock()
				return
			}
			t.Errorf("unexpected error: %v", err)
		})
	}
	wg.Wait()
	require.EqualValues(t, maxInFlight+queue, ok.Load())
	require.EqualValues(t, extra, full.Load())
	for _, d := range fullIn {
		require.Less(t, d, 250*time.Millisecond, "queue_full is immediate")
	}
	require.EqualValues(t, maxInFlight+queue, s.Requests())
	require.InDelta(t, extra, value(t, m.QueueRejected.WithLabelValues("anthropic")), 0)
	// Every admitted call observed its wait; the queued ones waited about
	// one call's latency.
	h := histogramOf(t, m, "anthropic")
	require.EqualValues(t, maxInFlight+queue, h.GetSampleCount())
	require.GreaterOrEqual(t, h.GetSampleSum(), float64(queue)*0.25)
	inFlight, waiting := p.Limiter().InFlight()
	require.Zero(t, inFlight)
	require.Zero(t, waiting)
	require.InDelta(t, 0, value(t, m.InFlight.WithLabelValues("anthropic")), 0)
}

func TestConcurrencyQueueWaitBoundedByDeadline(t *testing.T) {
	t.Parallel()
	l := NewLimiter("p", ConcurrencyConfig{MaxInFlight: 1, QueueSize: 4}, nil)
	require.NoError(t, l.Acquire(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 500*time.Millisecond)
	_, waiting := l.InFlight()
	require.Zero(t, waiting)

	// FIFO: waiters are served in arrival order.
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			require.NoError(t, l.Acquire(context.Background()))
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			l.Release()
		})
		for { // wait until it queued
			if _, w := l.InFlight(); w == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	l.Release()
	wg.Wait()
	require.Equal(t, []int{0, 1, 2}, order)
	n, _ := l.InFlight()
	require.Zero(t, n)
}

func TestBuildNeedsModel(t *testing.T) {
	t.Parallel()
	p := newProvider(t, ProviderConfig{}, anthropic.New(anthropic.Config{APIKey: "k"}), nil)
	_, err := Build(AgentConfig{Name: "x"}, p, nil, nil, nil)
	require.Error(t, err)
	_, err = Build(AgentConfig{Name: "x", Model: modelA, Cache: CacheConfig{Enabled: true}}, p, nil, nil, nil)
	require.Error(t, err)
	require.Nil(t, p.Keys())
	require.False(t, errors.Is(err, context.Canceled))
}
