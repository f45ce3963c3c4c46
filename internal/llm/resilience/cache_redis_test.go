package resilience

import (
	"context"
	"errors"
	"fmt"
	"github.com/agentd/agentd/internal/breaker"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	storeredis "github.com/agentd/agentd/internal/redis"
	"github.com/agentd/agentd/internal/redis/redistest"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/testtally"
)

// redisTestTimeout is the Redis client's timeout in these tests: long
// enough that a healthy Redis never meets it on a loaded 2-core machine
// running the race detector (200 ms did, turning hits into misses), short
// enough for the tests of a hung Redis, which wait for it.
const redisTestTimeout = time.Second

var quietRedis sync.Once

func openRedis(t *testing.T, url string) *storeredis.Client {
	t.Helper()
	quietRedis.Do(func() { storeredis.RouteLibraryLogs(slog.New(slog.DiscardHandler)) })
	c, err := storeredis.Open(url, storeredis.Options{PoolSize: 4, DialTimeout: 500 * time.Millisecond, Timeout: redisTestTimeout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func entry(text string, fresh, stale time.Duration) CacheEntry {
	now := time.Now()
	return CacheEntry{
		Response: llm.Response{ID: "msg_1", Model: modelA, StopReason: "end_turn",
			Content: []llm.Block{{Type: "text", Text: text}, {Type: "tool_use", ID: "toolu_1", Name: "t", Input: []byte(`{"a":1}`)}}},
		StoredAt: now, FreshUntil: now.Add(fresh), StaleUntil: now.Add(fresh + stale),
	}
}

func requireSameEntry(t *testing.T, want, got CacheEntry) {
	t.Helper()
	require.Equal(t, want.Response, got.Response)
	require.True(t, want.StoredAt.Equal(got.StoredAt))
	require.True(t, want.FreshUntil.Equal(got.FreshUntil))
	require.True(t, want.StaleUntil.Equal(got.StaleUntil))
}

func TestRedisCacheRoundTripAndTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rc := openRedis(t, srv.URL())
	m, _ := testMetrics()
	c := NewRedisCache(rc, RedisCacheConfig{}, m, nil)
	ctx := context.Background()

	_, ok, err := c.Get(ctx, "k1")
	require.NoError(t, err)
	require.False(t, ok)

	e := entry("hello", 100*time.Millisecond, 200*time.Millisecond)
	require.NoError(t, c.Set(ctx, "k1", e))
	got, ok, err := c.Get(ctx, "k1")
	require.NoError(t, err)
	require.True(t, ok)
	requireSameEntry(t, e, got)

	ttl, err := rc.Raw().PTTL(ctx, "agentd:cache:k1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 100*time.Millisecond, "kept past FreshUntil")
	require.LessOrEqual(t, ttl, 300*time.Millisecond, "until StaleUntil")

	require.Eventually(t, func() bool {
		n, err := rc.Raw().Exists(ctx, "agentd:cache:k1").Result()
		return err == nil && n == 0
	}, 2*time.Second, 10*time.Millisecond, "Redis forgets the entry at StaleUntil")
	_, ok, err = c.Get(ctx, "k1")
	require.NoError(t, err)
	require.False(t, ok)

	// An entry already past StaleUntil is not stored.
	require.NoError(t, c.Set(ctx, "old", entry("x", -time.Minute, time.Second)))
	n, err := rc.Raw().Exists(ctx, "agentd:cache:old").Result()
	require.NoError(t, err)
	require.Zero(t, n)

	// Garbage under a key is a miss, counted as an error. (Counted from
	// here: on a loaded machine an earlier call may have met the 200 ms
	// Redis timeout, which is an error too.)
	require.NoError(t, rc.Set(ctx, "agentd:cache:bad", []byte("{not json"), time.Minute))
	before := value(t, m.CacheRequests.WithLabelValues("error"))
	_, ok, err = c.Get(ctx, "bad")
	require.NoError(t, err)
	require.False(t, ok)
	require.InDelta(t, before+1, value(t, m.CacheRequests.WithLabelValues("error")), 0)
	require.False(t, c.CircuitOpen(), "a bad entry is not a Redis failure")
}

// TestRedisCacheOutageAndRecovery kills Redis under the cache: calls turn
// into misses and dropped writes without errors, fast once the circuit is
// open; the health check says down. Restarted on the same port, Redis is
// used again by itself.
func TestRedisCacheOutageAndRecovery(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rc := openRedis(t, srv.URL())
	m, _ := testMetrics()
	c := NewRedisCache(rc, RedisCacheConfig{Failures: 3, CoolDown: 300 * time.Millisecond}, m, nil)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", entry("v", time.Minute, time.Minute)))
	require.NoError(t, rc.Check(ctx))

	srv.Stop()
	for range 3 {
		_, ok, err := c.Get(ctx, "k")
		require.NoError(t, err)
		require.False(t, ok)
	}
	require.True(t, c.CircuitOpen())
	for i := range 50 {
		start := time.Now()
		_, ok, err := c.Get(ctx, "k")
		require.NoError(t, err)
		require.False(t, ok)
		require.NoError(t, c.Set(ctx, "k", entry("v", time.Minute, time.Minute)))
		require.Less(t, time.Since(start), redisTestTimeout/4, "call %d skips Redis", i)
	}
	require.GreaterOrEqual(t, value(t, m.CacheRequests.WithLabelValues("error")), 103.0)
	require.Error(t, rc.Ping(ctx))
	require.Error(t, rc.Check(ctx))
	state, lastErr, _ := rc.Status()
	require.Equal(t, storeredis.StateDown, state)
	require.NotEmpty(t, lastErr)

	srv.Restart() // empty
	require.Eventually(t, func() bool {
		_ = c.Set(ctx, "k2", entry("back", time.Minute, time.Minute))
		e, ok, err := c.Get(ctx, "k2")
		return err == nil && ok && text(e.Response) == "back"
	}, 10*time.Second, 20*time.Millisecond, "caching resumes by itself")
	require.False(t, c.CircuitOpen())
	require.NoError(t, rc.Check(ctx))
	state, lastErr, _ = rc.Status()
	require.Equal(t, storeredis.StateOK, state)
	require.Empty(t, lastErr)
}

// blackhole accepts connections and never answers: a hung Redis, where
// every command waits for the client's timeout.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(io.Discard, conn) })
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "redis://" + l.Addr().String() + "/0"
}

// TestRedisCacheCircuitSkipsHungRedis: a Redis that hangs costs each call
// the timeout until the circuit opens; then calls skip it, and after each
// cool-down a single call probes it.
func TestRedisCacheCircuitSkipsHungRedis(t *testing.T) {
	t.Parallel()
	rc := openRedis(t, blackhole(t))
	m, _ := testMetrics()
	c := NewRedisCache(rc, RedisCacheConfig{Failures: 2, CoolDown: 400 * time.Millisecond}, m, nil)
	ctx := context.Background()

	for range 2 {
		start := time.Now()
		_, ok, err := c.Get(ctx, "k")
		require.NoError(t, err)
		require.False(t, ok)
		took := time.Since(start)
		require.GreaterOrEqual(t, took, redisTestTimeout*3/4, "waited for the timeout")
		require.Less(t, took, redisTestTimeout*2, "but not much longer")
	}
	require.True(t, c.CircuitOpen())

	// While open: no call waits for the hung Redis, even with many
	// concurrent callers. A call that waited would take the timeout (200
	// ms); half of it is far above what scheduling 50 goroutines under
	// the race detector on a busy machine costs (seen: 25 ms), so the
	// check tells waiting from not waiting without timing the code.
	var wg sync.WaitGroup
	var slow sync.Map
	for i := range 50 {
		wg.Go(func() {
			start := time.Now()
			_, _, _ = c.Get(ctx, "k")
			_ = c.Set(ctx, "k", entry("v", time.Minute, time.Minute))
			if d := time.Since(start); d >= redisTestTimeout/2 {
				slow.Store(i, d)
			}
		})
	}
	wg.Wait()
	slow.Range(func(k, v any) bool { t.Errorf("call %v took %v while the circuit was open", k, v); return true })

	// After the cool-down, concurrent callers: one probes (and waits), the
	// others still skip.
	time.Sleep(450 * time.Millisecond)
	var mu sync.Mutex
	var durations []time.Duration
	for range 10 {
		wg.Go(func() {
			start := time.Now()
			_, _, _ = c.Get(ctx, "k")
			mu.Lock()
			durations = append(durations, time.Since(start))
			mu.Unlock()
		})
	}
	wg.Wait()
	waited := 0
	for _, d := range durations {
		if d >= redisTestTimeout/2 {
			waited++
		}
	}
	require.Equal(t, 1, waited, "a single probe: %v", durations)
	require.True(t, c.CircuitOpen(), "the probe failed: open again")
}

// fakeKV is an in-memory RedisKV that can fail.
type fakeKV struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error
}

func (f *fakeKV) Get(_ context.Context, key string) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, false, f.fail
	}
	v, ok := f.m[key]
	return v, ok, nil
}

func (f *fakeKV) Set(_ context.Context, key string, val []byte, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if f.m == nil {
		f.m = map[string][]byte{}
	}
	f.m[key] = val
	return nil
}

func (f *fakeKV) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func TestRedisCacheCircuitRecoversAndIgnoresCancellation(t *testing.T) {
	t.Parallel()
	kv := &fakeKV{}
	c := NewRedisCache(kv, RedisCacheConfig{Failures: 2, CoolDown: time.Hour}, nil, nil)
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()

	kv.setFail(errors.New("boom"))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for range 5 {
		_, _, err := c.Get(cctx, "k")
		require.NoError(t, err)
	}
	require.False(t, c.CircuitOpen(), "the caller's cancellation is not a Redis failure")

	_, _, _ = c.Get(ctx, "k")
	require.False(t, c.CircuitOpen())
	_, _, _ = c.Get(ctx, "k")
	require.True(t, c.CircuitOpen())

	kv.setFail(nil)
	require.NoError(t, c.Set(ctx, "k", entry("v", time.Minute, time.Minute)))
	_, ok, _ := c.Get(ctx, "k")
	require.False(t, ok, "skipped during the cool-down: the write was dropped")

	now = now.Add(time.Hour)
	require.NoError(t, c.Set(ctx, "k", entry("v", 2*time.Hour, time.Minute)))
	require.False(t, c.CircuitOpen(), "the probe succeeded")
	_, ok, _ = c.Get(ctx, "k")
	require.True(t, ok)
}

func TestLayeredCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kv := &fakeKV{}
	back := NewRedisCache(kv, RedisCacheConfig{Failures: 1, CoolDown: time.Hour}, nil, nil)
	front := NewMemoryCache(MemoryCacheConfig{})
	l := NewLayeredCache(front, back)

	// Writes go to both.
	e := entry("v1", time.Minute, time.Minute)
	require.NoError(t, l.Set(ctx, "k", e))
	_, ok, _ := front.Get(ctx, "k")
	require.True(t, ok)
	_, ok, _ = back.Get(ctx, "k")
	require.True(t, ok)

	// A back hit (written by another instance) is copied to the front.
	other := NewLayeredCache(NewMemoryCache(MemoryCacheConfig{}), back)
	got, ok, err := other.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	requireSameEntry(t, e, got)
	entries, _ := other.front.(*MemoryCache).Len()
	require.Equal(t, 1, entries)

	// A fresh front entry is served without the back; with the back down,
	// the front still serves.
	kv.setFail(errors.New("down"))
	got, ok, err = l.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	requireSameEntry(t, e, got)
	require.NoError(t, l.Set(ctx, "k2", entry("v2", time.Minute, time.Minute)))
	got, ok, err = l.Get(ctx, "k2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v2", got.Response.Content[0].Text)
	kv.setFail(nil)

	// A stale front entry gives way to a fresher back one.
	staleFront := NewMemoryCache(MemoryCacheConfig{})
	require.NoError(t, staleFront.Set(ctx, "s", entry("old", -time.Second, time.Minute)))
	kv2 := &fakeKV{}
	back2 := NewRedisCache(kv2, RedisCacheConfig{}, nil, nil)
	require.NoError(t, back2.Set(ctx, "s", entry("new", time.Minute, time.Minute)))
	l2 := NewLayeredCache(staleFront, back2)
	got, ok, err = l2.Get(ctx, "s")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "new", got.Response.Content[0].Text)
	got, _, _ = staleFront.Get(ctx, "s")
	require.Equal(t, "new", got.Response.Content[0].Text, "copied to the front")
	// ... and is kept (for serve-stale) when the back has nothing better.
	require.NoError(t, staleFront.Set(ctx, "s2", entry("old2", -time.Second, time.Minute)))
	got, ok, err = l2.Get(ctx, "s2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "old2", got.Response.Content[0].Text)

	// A back that returns errors: hidden behind a front hit, returned on a
	// front miss.
	bad := errBackCache{err: errors.New("back down")}
	l3 := NewLayeredCache(NewMemoryCache(MemoryCacheConfig{}), bad)
	require.ErrorIs(t, l3.Set(ctx, "k", e), bad.err)
	_, ok, err = l3.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok, "the front kept the write")
	_, ok, err = l3.Get(ctx, "missing")
	require.ErrorIs(t, err, bad.err)
	require.False(t, ok)
}

type errBackCache struct{ err error }

func (c errBackCache) Get(context.Context, string) (CacheEntry, bool, error) {
	return CacheEntry{}, false, c.err
}
func (c errBackCache) Set(context.Context, string, CacheEntry) error { return c.err }

// redisAgent builds an agent over the simulator with cache as its store.
func redisAgent(t *testing.T, s *sim.Server, cache Cache, m *Metrics) llm.Model {
	t.Helper()
	p := newProvider(t, ProviderConfig{Retry: fastRetry, Breaker: BreakerConfig{Config: breaker.Config{Disabled: true}}}, serve(t, s, "k"), m)
	model, err := Build(AgentConfig{Name: "cached", Model: modelA, Cache: CacheConfig{Enabled: true}}, p, cache, m, nil)
	require.NoError(t, err)
	return model
}

// TestAgentOverRedisCacheSurvivesOutage: an agent whose cache is Redis
// keeps answering while Redis is down (from the model), and answers from
// Redis again once it is back. A second agentd instance shares the
// entries; with a memory layer in front, hits survive the outage.
func TestAgentOverRedisCacheSurvivesOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m, _ := testMetrics()
	s := newSim(sim.Config{})
	rcA, rcB := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	redisOnly := redisAgent(t, s, NewRedisCache(rcA, RedisCacheConfig{CoolDown: 200 * time.Millisecond}, m, nil), m)
	layered := redisAgent(t, s, NewLayeredCache(NewMemoryCache(MemoryCacheConfig{}), NewRedisCache(rcB, RedisCacheConfig{CoolDown: 200 * time.Millisecond}, m, nil)), m)
	ctx := context.Background()

	first, _, err := call(ctx, redisOnly, request("q1"))
	require.NoError(t, err)
	require.False(t, first.Cached)
	require.EqualValues(t, 1, s.Requests())
	hit, _, err := call(ctx, redisOnly, request("q1"))
	require.NoError(t, err)
	require.True(t, hit.Cached)
	require.Equal(t, first.Content, hit.Content)
	require.EqualValues(t, 1, s.Requests(), "answered from Redis")
	// The other instance (layered) reads the shared entry, and keeps it.
	hit, _, err = call(ctx, layered, request("q1"))
	require.NoError(t, err)
	require.True(t, hit.Cached)
	require.EqualValues(t, 1, s.Requests(), "shared through Redis")

	srv.Stop()
	for i := range 10 {
		start := time.Now()
		resp, _, err := call(ctx, redisOnly, request(fmt.Sprintf("down %d", i%2)))
		require.NoError(t, err, "Redis down: requests keep succeeding")
		require.False(t, resp.Cached)
		require.Less(t, time.Since(start), 2*time.Second)
	}
	require.EqualValues(t, 11, s.Requests(), "no caching without Redis")
	hit, _, err = call(ctx, layered, request("q1"))
	require.NoError(t, err)
	require.True(t, hit.Cached, "the memory layer still serves")
	require.EqualValues(t, 11, s.Requests())
	require.Positive(t, value(t, m.CacheRequests.WithLabelValues("error")))

	srv.Restart() // empty
	before := s.Requests()
	require.Eventually(t, func() bool {
		resp, _, err := call(ctx, redisOnly, request("after"))
		return err == nil && resp.Cached
	}, 10*time.Second, 50*time.Millisecond, "cache hits resume once Redis is back")
	n := s.Requests()
	require.Greater(t, n, before)
	resp, _, err := call(ctx, redisOnly, request("after"))
	require.NoError(t, err)
	require.True(t, resp.Cached)
	require.Equal(t, n, s.Requests(), "a hit does not reach the model")
	resp, _, err = call(ctx, layered, request("after"))
	require.NoError(t, err)
	require.True(t, resp.Cached, "shared again")
	require.Equal(t, n, s.Requests())
}

// TestRedisCacheShared runs against the machine's Redis when
// AGENTD_TEST_REDIS_URL is set: two instances share answers, under a key
// prefix of the test's own.
func TestRedisCacheShared(t *testing.T) {
	t.Parallel()
	url := os.Getenv("AGENTD_TEST_REDIS_URL")
	if url == "" {
		t.Skip("AGENTD_TEST_REDIS_URL not set")
	}
	testtally.Record(t, "redis")
	prefix := fmt.Sprintf("agentd:test:%s:%d:", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
	rcA, rcB := openRedis(t, url), openRedis(t, url)
	require.NoError(t, rcA.Check(context.Background()))
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rcA.Raw().Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			_ = rcA.Raw().Del(ctx, keys...).Err()
		}
	})
	m, _ := testMetrics()
	s := newSim(sim.Config{})
	a := redisAgent(t, s, NewLayeredCache(NewMemoryCache(MemoryCacheConfig{}), NewRedisCache(rcA, RedisCacheConfig{Prefix: prefix}, m, nil)), m)
	b := redisAgent(t, s, NewLayeredCache(NewMemoryCache(MemoryCacheConfig{}), NewRedisCache(rcB, RedisCacheConfig{Prefix: prefix}, m, nil)), m)
	ctx := context.Background()
	first, _, err := call(ctx, a, request("shared question"))
	require.NoError(t, err)
	require.False(t, first.Cached)
	second, _, err := call(ctx, b, request("shared question"))
	require.NoError(t, err)
	require.True(t, second.Cached, "b answers with a's entry")
	require.Equal(t, first.Content, second.Content)
	require.EqualValues(t, 1, s.Requests())
	keys, err := rcA.Raw().Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	ttl, err := rcA.Raw().PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, DefaultCacheTTL, "kept until StaleUntil")
}

// The store client is what the Redis cache runs over.
var _ RedisKV = (*storeredis.Client)(nil)
