package resilience

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Redis cache defaults.
const (
	// DefaultRedisCachePrefix is RedisCacheConfig.Prefix's default.
	DefaultRedisCachePrefix = "agentd:cache:"
	// DefaultRedisCacheFailures is RedisCacheConfig.Failures' default.
	DefaultRedisCacheFailures = 3
	// DefaultRedisCacheCoolDown is RedisCacheConfig.CoolDown's default.
	DefaultRedisCacheCoolDown = time.Second
)

// RedisKV is the part of a Redis client the Redis cache uses; an
// *redis.Client of internal/redis implements it. Each call must be
// bounded by a short timeout of its own (the client's per-command Timeout).
type RedisKV interface {
	// Get returns the value of key; ok is false when there is none.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores val under key for ttl.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// RedisCacheConfig configures a RedisCache. Zero values mean the default.
type RedisCacheConfig struct {
	// Prefix is put before every key. Defaults to "agentd:cache:".
	Prefix string
	// Failures is how many consecutive Redis errors open the cache's
	// circuit: Redis is then skipped (a miss, a dropped write) for
	// CoolDown, after which one call probes it. Defaults to 3.
	Failures int
	// CoolDown is how long an open circuit skips Redis. Defaults to 1s.
	CoolDown time.Duration
}

// RedisCache is a Cache shared by every agentd instance, in Redis: each
// entry is its JSON-encoded CacheEntry under Prefix+key, expiring in Redis
// at its StaleUntil.
//
// Redis is an accelerator, never a dependency: a Redis error (down, slow,
// timed out) is counted (agentd_cache_requests_total{result="error"}) and
// turned into a miss or a dropped write; Get and Set never return an
// error. After Failures consecutive errors its circuit opens and Redis is
// skipped for CoolDown, so that while Redis is down calls do not each wait
// for the client's timeout; then one call probes Redis and, when it
// answers, the circuit closes again. Skipped calls count as errors too.
// Put a MemoryCache in front (LayeredCache) to keep hits while Redis is
// down.
type RedisCache struct {
	kv      RedisKV
	cfg     RedisCacheConfig
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time

	mu        sync.Mutex
	failures  int       // consecutive
	openUntil time.Time // zero: closed
	probing   bool      // a call is probing an open circuit past CoolDown
}

// NewRedisCache returns a Cache over kv (see RedisCache). m and log may be
// nil.
func NewRedisCache(kv RedisKV, cfg RedisCacheConfig, m *Metrics, log *slog.Logger) *RedisCache {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisCachePrefix
	}
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultRedisCacheFailures
	}
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = DefaultRedisCacheCoolDown
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisCache{kv: kv, cfg: cfg, metrics: m, log: log, now: time.Now}
}

// Get implements Cache; it never returns an error.
func (c *RedisCache) Get(ctx context.Context, key string) (CacheEntry, bool, error) {
	probe, ok := c.allow()
	if !ok {
		c.metrics.cache("error")
		return CacheEntry{}, false, nil
	}
	b, found, err := c.kv.Get(ctx, c.cfg.Prefix+key)
	if c.done(ctx, probe, err) {
		return CacheEntry{}, false, nil
	}
	if !found {
		return CacheEntry{}, false, nil
	}
	var e CacheEntry
	if err := json.Unmarshal(b, &e); err != nil {
		c.metrics.cache("error")
		c.log.WarnContext(ctx, "redis cache entry undecodable; treated as a miss", "err", err)
		return CacheEntry{}, false, nil
	}
	if !c.now().Before(e.StaleUntil) {
		return CacheEntry{}, false, nil // Redis's clock runs behind ours
	}
	return e, true, nil
}

// Set implements Cache; it never returns an error (a failed write is
// dropped).
func (c *RedisCache) Set(ctx context.Context, key string, e CacheEntry) error {
	ttl := e.StaleUntil.Sub(c.now())
	if ttl < time.Millisecond {
		return nil // already forgettable
	}
	b, err := json.Marshal(e)
	if err != nil {
		c.metrics.cache("error")
		c.log.WarnContext(ctx, "redis cache entry unencodable; not stored", "err", err)
		return nil
	}
	probe, ok := c.allow()
	if !ok {
		c.metrics.cache("error")
		return nil
	}
	c.done(ctx, probe, c.kv.Set(ctx, c.cfg.Prefix+key, b, ttl))
	return nil
}

// CircuitOpen reports whether Redis is being skipped after consecutive
// errors.
func (c *RedisCache) CircuitOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.openUntil.IsZero()
}

// allow reports whether a call may use Redis now, and whether it is the
// probe of an open circuit.
func (c *RedisCache) allow() (probe, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.openUntil.IsZero():
		return false, true
	case c.probing || c.now().Before(c.openUntil):
		return false, false
	default:
		c.probing = true
		return true, true
	}
}

// done records a call's outcome; it reports whether err was an error (to
// be treated as a miss). A call ended by its caller's context is neither a
// success nor a failure of Redis.
func (c *RedisCache) done(ctx context.Context, probe bool, err error) (failed bool) {
	c.mu.Lock()
	if probe {
		c.probing = false
	}
	switch {
	case err == nil:
		wasOpen := !c.openUntil.IsZero()
		c.failures, c.openUntil = 0, time.Time{}
		c.mu.Unlock()
		if wasOpen {
			c.log.Info("redis cache reachable again; using it")
		}
		return false
	case ctx.Err() != nil:
		c.mu.Unlock()
		return true // the caller gave up: not Redis's failure
	}
	c.failures++
	opened := false
	if c.failures >= c.cfg.Failures {
		opened = c.openUntil.IsZero()
		c.openUntil = c.now().Add(c.cfg.CoolDown)
	}
	c.mu.Unlock()
	c.metrics.cache("error")
	if opened {
		c.log.Warn("redis cache unreachable; skipping it, probing every cool-down",
			"err", err, "failures", c.cfg.Failures, "cool_down", c.cfg.CoolDown)
	} else {
		c.log.Debug("redis cache call failed; treated as a miss", "err", err)
	}
	return true
}

// LayeredCache is a fast local Cache (a MemoryCache) in front of a shared
// one (a RedisCache): reads try the front first, then the back (a back hit
// is copied to the front); writes go to both. While the back is down, the
// front still serves what this instance stored or read.
type LayeredCache struct {
	front, back Cache
	now         func() time.Time
}

// NewLayeredCache returns front over back.
func NewLayeredCache(front, back Cache) *LayeredCache {
	return &LayeredCache{front: front, back: back, now: time.Now}
}

// Get implements Cache. A fresh front entry is returned without reading
// the back; a stale one only when the back has nothing fresher. A back
// error is returned only when the front had nothing.
func (c *LayeredCache) Get(ctx context.Context, key string) (CacheEntry, bool, error) {
	fe, fok, ferr := c.front.Get(ctx, key)
	if fok && ferr == nil && c.now().Before(fe.FreshUntil) {
		return fe, true, nil
	}
	be, bok, berr := c.back.Get(ctx, key)
	switch {
	case berr == nil && bok && (!fok || be.FreshUntil.After(fe.FreshUntil)):
		_ = c.front.Set(ctx, key, be)
		return be, true, nil
	case fok && ferr == nil:
		return fe, true, nil
	case berr != nil:
		return CacheEntry{}, false, berr
	}
	return CacheEntry{}, false, ferr
}

// Set implements Cache: it stores e in both layers and returns the back's
// error, if any (the front's otherwise).
func (c *LayeredCache) Set(ctx context.Context, key string, e CacheEntry) error {
	ferr := c.front.Set(ctx, key, e)
	if berr := c.back.Set(ctx, key, e); berr != nil {
		return berr
	}
	return ferr
}
