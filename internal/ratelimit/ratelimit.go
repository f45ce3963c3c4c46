// Package ratelimit limits requests and model tokens per minute, per API
// key and per tenant, with token buckets.
//
// Each limit is a bucket holding up to one minute's worth (its capacity is
// the per-minute limit, so a full bucket allows a burst of that size) that
// refills continuously at limit/60 per second. A request takes 1 from the
// request buckets of its key and its tenant, all or nothing. Model tokens
// are checked before a model call ("is there at least one token left") and
// debited after it with the tokens the call actually used, which may take
// the bucket below zero: the token limits are exact over time but may be
// overshot by one call.
//
// With Redis (Config.Redis) the buckets are shared by every instance: one
// Lua script refills and takes atomically, under agentd:rl:<scope>:<kind>:<id>.
// Redis is never a dependency: on a Redis error (down, slow) the limiter
// falls back to buckets in this instance's memory (so the limit then
// applies per instance), counts it, skips Redis for CoolDown and then
// probes it again, so it recovers by itself.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// Scopes and kinds of limits (label values of the metrics).
const (
	ScopeKey    = "key"
	ScopeTenant = "tenant"

	KindRequests = "requests"
	KindTokens   = "tokens"
)

// Defaults of Config.
const (
	DefaultPrefix   = "agentd:rl:"
	DefaultTimeout  = 100 * time.Millisecond
	DefaultCoolDown = time.Second
)

// Limits are the per-minute limits of one key or tenant; 0 is no limit.
type Limits struct {
	RequestsPerMinute int64
	TokensPerMinute   int64
}

// Config configures a Limiter. Zero values mean the default.
type Config struct {
	// Key applies to every API key.
	Key Limits
	// Tenant applies to every tenant without an entry in Tenants.
	Tenant Limits
	// Tenants replace Tenant for the tenants they name (taken whole).
	Tenants map[string]Limits

	// Redis, when set, shares the buckets between instances (an
	// *goredis.Client from internal/redis's Client.Raw).
	Redis goredis.Scripter
	// Prefix is put before every Redis key. Defaults to "agentd:rl:".
	Prefix string
	// Timeout bounds one Redis call. Defaults to 100ms.
	Timeout time.Duration
	// CoolDown is how long Redis is skipped after an error. Defaults to 1s.
	CoolDown time.Duration

	Metrics *Metrics
	Log     *slog.Logger
	// Now is the clock (tests). Defaults to time.Now.
	Now func() time.Time
}

// Enabled reports whether any limit is set.
func (c Config) Enabled() bool {
	if c.Key != (Limits{}) || c.Tenant != (Limits{}) {
		return true
	}
	for _, l := range c.Tenants {
		if l != (Limits{}) {
			return true
		}
	}
	return false
}

// Decision is the outcome of a check.
type Decision struct {
	Allowed bool
	// Scope and Kind name the bucket reported below: the one that refused,
	// or else the one with the least left. Empty when no limit applies.
	Scope, Kind string
	// Limit is that bucket's per-minute limit (0: no limit applies).
	Limit int64
	// Remaining is what is left in it (never below 0).
	Remaining int64
	// Reset is the time until it is full again.
	Reset time.Duration
	// RetryAfter is, when refused, the time until the request would pass.
	RetryAfter time.Duration
}

// Error is a refusal: a request or a model call over a limit.
type Error struct {
	Decision
}

func (e *Error) Error() string {
	return fmt.Sprintf("rate limit exceeded: %s %s per minute (%d); retry in %ds",
		e.Scope, e.Kind, e.Limit, Seconds(e.RetryAfter))
}

// AsError returns err's *Error, if it has one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Seconds rounds d up to whole seconds, at least 1 when d > 0 (for
// Retry-After and X-RateLimit-Reset).
func Seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Limiter enforces Config. It is safe for concurrent use; a nil *Limiter
// allows everything.
type Limiter struct {
	cfg    Config
	script *goredis.Script
	local  *local

	mu        sync.Mutex
	openUntil time.Time // Redis skipped until then after an error
	down      bool      // last Redis call failed (for logging state changes)
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = DefaultCoolDown
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, script: goredis.NewScript(takeScript), local: newLocal()}
}

// bucket is one take from one bucket.
type bucket struct {
	scope, kind, id string
	limit           int64   // per minute: capacity
	cost            float64 // taken when every bucket of the call has need
	need            float64 // required before taking
}

func (b bucket) key() string { return b.scope + ":" + b.kind + ":" + b.id }

// rate is the refill per millisecond.
func (b bucket) rate() float64 { return float64(b.limit) / 60000 }

// noNeed makes a take unconditional (token debits).
const noNeed = -1e18

func (l *Limiter) tenantLimits(tenant string) Limits {
	if t, ok := l.cfg.Tenants[tenant]; ok {
		return t
	}
	return l.cfg.Tenant
}

// buckets lists the buckets of kind for tenant and key ("" for none) with
// limits set.
func (l *Limiter) buckets(kind, tenant, key string, cost, need float64) []bucket {
	pick := func(x Limits) int64 {
		if kind == KindRequests {
			return x.RequestsPerMinute
		}
		return x.TokensPerMinute
	}
	var bs []bucket
	if n := pick(l.cfg.Key); key != "" && n > 0 {
		bs = append(bs, bucket{scope: ScopeKey, kind: kind, id: key, limit: n, cost: cost, need: need})
	}
	if n := pick(l.tenantLimits(tenant)); tenant != "" && n > 0 {
		bs = append(bs, bucket{scope: ScopeTenant, kind: kind, id: tenant, limit: n, cost: cost, need: need})
	}
	return bs
}

// AllowRequest takes one request from the buckets of tenant and key (""
// when there is no key: authentication off).
func (l *Limiter) AllowRequest(ctx context.Context, tenant, key string) Decision {
	if l == nil {
		return Decision{Allowed: true}
	}
	return l.take(ctx, l.buckets(KindRequests, tenant, key, 1, 1))
}

// AllowTokens returns an *Error when the token bucket of tenant or key is
// empty (spent by earlier calls); it takes nothing.
func (l *Limiter) AllowTokens(ctx context.Context, tenant, key string) error {
	if l == nil {
		return nil
	}
	if d := l.take(ctx, l.buckets(KindTokens, tenant, key, 0, 1)); !d.Allowed {
		return &Error{Decision: d}
	}
	return nil
}

// AddTokens debits n tokens a model call used from the token buckets of
// tenant and key.
func (l *Limiter) AddTokens(ctx context.Context, tenant, key string, n int64) {
	if l == nil || n <= 0 {
		return
	}
	l.take(ctx, l.buckets(KindTokens, tenant, key, float64(n), noNeed))
}

// take takes from every bucket of bs when each has its need, else from
// none, and reports the binding bucket.
func (l *Limiter) take(ctx context.Context, bs []bucket) Decision {
	if len(bs) == 0 {
		return Decision{Allowed: true}
	}
	now := l.cfg.Now()
	allowed, levels, ok := l.takeRedis(ctx, bs, now)
	if !ok {
		allowed, levels = l.local.take(bs, now)
	}
	d := decide(bs, allowed, levels)
	if !d.Allowed {
		l.cfg.Metrics.rejected(d.Scope, d.Kind)
	}
	return d
}

// decide reports the outcome of a take that left levels in bs (as they
// were when refused).
func decide(bs []bucket, allowed bool, levels []float64) Decision {
	wait := func(i int) float64 { return (bs[i].need - levels[i]) / bs[i].rate() }
	best := -1
	for i, b := range bs {
		switch {
		case allowed:
			// Report the bucket with the least left, relative to its size.
			if best < 0 || levels[i]/float64(b.limit) < levels[best]/float64(bs[best].limit) {
				best = i
			}
		case levels[i] < b.need:
			// Of the refusing buckets, the one that takes longest to pass.
			if best < 0 || wait(i) > wait(best) {
				best = i
			}
		}
	}
	b, lvl := bs[best], levels[best]
	d := Decision{Allowed: allowed, Scope: b.scope, Kind: b.kind, Limit: b.limit}
	if !allowed {
		d.RetryAfter = time.Duration(math.Ceil(wait(best))) * time.Millisecond
	}
	d.Remaining = int64(math.Max(0, math.Floor(lvl)))
	d.Reset = time.Duration(math.Ceil((float64(b.limit)-lvl)/b.rate())) * time.Millisecond
	return d
}

// takeScript refills and takes atomically. KEYS are the buckets; ARGV[1]
// is now in ms, then per bucket: capacity, refill per ms, cost, need. Each
// bucket is a hash {t: level, ts: ms of the level}, expiring once it would
// be full again. Every bucket is taken from only when each has its need.
// It returns "1" when it took ("0" when not), then the levels after the
// take, as strings (Lua numbers would be truncated to integers).
const takeScript = `
local now = tonumber(ARGV[1])
local ok = true
local lv, ts = {}, {}
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 4
  local cap, rate, need = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 4])
  local s = redis.call('HMGET', KEYS[i], 't', 'ts')
  local t, at = tonumber(s[1]), tonumber(s[2])
  if t == nil or at == nil then t, at = cap, now end
  if now > at then
    t = t + (now - at) * rate
    at = now
  end
  if t > cap then t = cap end
  lv[i], ts[i] = t, at
  if t < need then ok = false end
end
local out = {ok and '1' or '0'}
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 4
  local cap, rate, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if ok then lv[i] = lv[i] - cost end
  redis.call('HSET', KEYS[i], 't', tostring(lv[i]), 'ts', tostring(ts[i]))
  redis.call('PEXPIRE', KEYS[i], math.ceil((cap - lv[i]) / rate) + 1000)
  out[i + 1] = tostring(lv[i])
end
return out
`

// takeRedis runs the take in Redis; ok is false when there is no Redis,
// it is being skipped after an error, or it failed now.
func (l *Limiter) takeRedis(ctx context.Context, bs []bucket, now time.Time) (allowed bool, levels []float64, ok bool) {
	if l.cfg.Redis == nil {
		return false, nil, false
	}
	l.mu.Lock()
	skip := now.Before(l.openUntil)
	l.mu.Unlock()
	if skip {
		l.cfg.Metrics.fallback()
		return false, nil, false
	}
	keys := make([]string, len(bs))
	args := make([]any, 0, 1+4*len(bs))
	args = append(args, now.UnixMilli())
	for i, b := range bs {
		keys[i] = l.cfg.Prefix + b.key()
		args = append(args, b.limit, strconv.FormatFloat(b.rate(), 'g', -1, 64),
			strconv.FormatFloat(b.cost, 'g', -1, 64), strconv.FormatFloat(b.need, 'g', -1, 64))
	}
	// Not cut short by the request: a canceled request would look like a
	// Redis failure.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
	defer cancel()
	res, err := l.script.Run(rctx, l.cfg.Redis, keys, args...).StringSlice()
	if err == nil && len(res) != 1+len(bs) {
		err = fmt.Errorf("script returned %d values for %d buckets", len(res), len(bs))
	}
	if err == nil {
		allowed = res[0] == "1"
		levels = make([]float64, len(bs))
		for i, s := range res[1:] {
			if levels[i], err = strconv.ParseFloat(s, 64); err != nil {
				break
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.openUntil = now.Add(l.cfg.CoolDown)
		if !l.down {
			l.cfg.Log.WarnContext(ctx, "rate limits: Redis failed; limiting per instance until it answers", "err", err)
		}
		l.down = true
		l.cfg.Metrics.fallback()
		return false, nil, false
	}
	if l.down {
		l.cfg.Log.InfoContext(ctx, "rate limits: Redis answers again; limits are cluster-wide")
	}
	l.down, l.openUntil = false, time.Time{}
	return allowed, levels, true
}

// local are the buckets of this instance: all of them without Redis, and
// the fallback while Redis is down.
type local struct {
	mu        sync.Mutex
	buckets   map[string]*level
	lastSweep time.Time
}

type level struct {
	t  float64
	at time.Time
}

func newLocal() *local { return &local{buckets: map[string]*level{}} }

// sweepEvery is how often full (idle) buckets are forgotten.
const sweepEvery = time.Minute

// take is takeScript's logic in memory.
func (m *local) take(bs []bucket, now time.Time) (allowed bool, levels []float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.sweep(now)
	}
	ok := true
	lvs := make([]*level, len(bs))
	for i, b := range bs {
		lv := m.buckets[b.key()]
		if lv == nil {
			lv = &level{t: float64(b.limit), at: now}
			m.buckets[b.key()] = lv
		}
		if now.After(lv.at) {
			lv.t += float64(now.Sub(lv.at)) / float64(time.Millisecond) * b.rate()
			lv.at = now
		}
		lv.t = math.Min(lv.t, float64(b.limit))
		lvs[i] = lv
		if lv.t < b.need {
			ok = false
		}
	}
	out := make([]float64, len(bs))
	for i, b := range bs {
		if ok {
			lvs[i].t -= b.cost
		}
		out[i] = lvs[i].t
	}
	return ok, out
}

// sweep forgets buckets that have not been used for longer than a full
// refill takes (a minute, for any limit): they would be full again.
func (m *local) sweep(now time.Time) {
	m.lastSweep = now
	for k, lv := range m.buckets {
		// A bucket below zero needs longer; keep those that are.
		if lv.t >= 0 && now.Sub(lv.at) > time.Minute {
			delete(m.buckets, k)
		}
	}
}

// Metrics are the limiter's Prometheus metrics; nil records nothing.
type Metrics struct {
	Rejected *prometheus.CounterVec
	Fallback prometheus.Counter
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_ratelimit_rejected_total",
			Help: "Requests and model calls refused by a rate limit, by scope (key, tenant) and kind (requests, tokens).",
		}, []string{"scope", "kind"}),
		Fallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_ratelimit_redis_fallback_total",
			Help: "Rate limit checks answered by this instance's buckets because Redis failed or was being skipped.",
		}),
	}
	reg.MustRegister(m.Rejected, m.Fallback)
	return m
}

func (m *Metrics) rejected(scope, kind string) {
	if m != nil {
		m.Rejected.WithLabelValues(scope, kind).Inc()
	}
}

func (m *Metrics) fallback() {
	if m != nil {
		m.Fallback.Inc()
	}
}
