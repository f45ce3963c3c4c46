// Package redis is agentd's Redis client: a thin wrapper over go-redis for
// Redis as an accelerator (the shared response cache; later cluster-wide
// rate limits), never a dependency agentd needs to serve.
//
// Every command is bounded by Options.Timeout (200ms by default), dials fail
// fast (one attempt, Options.DialTimeout) and go-redis reconnects by itself,
// so a Redis outage costs a caller at most one timeout per command; callers
// (resilience.RedisCache) add a circuit so they do not even pay that.
//
// Health: Ping reuses the pool, so a dependency checker that already runs
// in the background (server.Health's Redis Pinger) can call it directly;
// for callers without one, Run is such a checker and Status reads its
// latest result. Use one or the other. A Redis that is down makes agentd
// "degraded", never unready.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/agentd/agentd/internal/breaker"
)

// Defaults of Options.
const (
	// DefaultDialTimeout is Options.DialTimeout's default.
	DefaultDialTimeout = time.Second
	// DefaultTimeout is Options.Timeout's default.
	DefaultTimeout = 200 * time.Millisecond
	// DefaultCheckInterval is Run's interval default.
	DefaultCheckInterval = 5 * time.Second
)

// Health states returned by Status.
const (
	StateOK   = "ok"
	StateDown = "down"
)

// Options configures a Client. Zero values mean the default.
type Options struct {
	// PoolSize is the connection pool size. Defaults to 10 per CPU
	// (GOMAXPROCS).
	PoolSize int
	// DialTimeout bounds opening a connection. Defaults to 1s.
	DialTimeout time.Duration
	// Timeout bounds each command, connection wait, dial, write and read
	// included. Defaults to 200ms.
	Timeout time.Duration
	// Log receives the health checker's state changes. Defaults to none.
	Log *slog.Logger
	// Breaker is Redis's circuit breaker ("redis"), in front of every
	// command (see breakerHook). Defaults to none.
	Breaker *breaker.Breaker
}

func (o Options) withDefaults() Options {
	if o.PoolSize <= 0 {
		o.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Client is a Redis connection pool. It is safe for concurrent use.
type Client struct {
	rdb     *goredis.Client
	opts    Options
	addr    string
	timeout time.Duration

	mu        sync.RWMutex
	state     string
	lastErr   string
	checkedAt time.Time
	latency   time.Duration
}

// Open returns a client for rawURL (redis://[user:pass@]host:port[/db] or
// rediss://… for TLS; go-redis query parameters are honoured unless opts
// sets the same thing). It makes no network call: connections are opened
// on first use and re-opened by themselves after Redis comes back. Errors
// never contain the URL (it may carry a password).
func Open(rawURL string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL
		}
		return nil, fmt.Errorf("redis: invalid url: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, errors.New("redis: invalid url: scheme must be redis or rediss")
	}
	if u.Host == "" {
		return nil, errors.New("redis: invalid url: no host")
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: invalid url: %s", redact(err.Error(), u))
	}
	o.PoolSize = opts.PoolSize
	o.DialTimeout = opts.DialTimeout
	o.ReadTimeout = opts.Timeout
	o.WriteTimeout = opts.Timeout
	o.PoolTimeout = opts.Timeout
	// A command's context deadline (Timeout, or the caller's if sooner)
	// also bounds its socket reads and writes.
	o.ContextTimeoutEnabled = true
	// Fail fast while Redis is down: one dial per attempt (the pool keeps
	// probing in the background and recovers by itself), one retry of a
	// command whose pooled connection turned out dead (after a restart).
	o.DialerRetries = 1
	o.MaxRetries = 1
	// No cluster-maintenance handshake on connect (one round trip less,
	// and nothing to log against servers without it).
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	rdb := goredis.NewClient(o)
	if opts.Breaker != nil {
		rdb.AddHook(breakerHook{opts.Breaker})
	}
	c := &Client{
		rdb: rdb, opts: opts, addr: o.Addr, timeout: opts.Timeout,
		state: StateDown, lastErr: "not checked yet",
	}
	return c, nil
}

// redact removes u's password from s.
func redact(s string, u *url.URL) string {
	if p, ok := u.User.Password(); ok && p != "" {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}

// Raw returns the go-redis client (for commands this package does not
// wrap). Its commands are not bounded by Timeout unless ctx is.
func (c *Client) Raw() *goredis.Client { return c.rdb }

// Addr returns the server's host:port (no credentials: safe to log).
func (c *Client) Addr() string { return c.addr }

// Timeout returns the per-command timeout.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Close closes the pool.
func (c *Client) Close() error { return c.rdb.Close() }

// Get returns the value of key; ok is false when there is none. The call
// is bounded by Timeout.
func (c *Client) Get(ctx context.Context, key string) (val []byte, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	val, err = c.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return val, true, nil
}

// Set stores val under key, expiring after ttl (millisecond precision; 0:
// never). The call is bounded by Timeout.
func (c *Client) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.rdb.Set(ctx, key, val, ttl).Err()
}

// Ping sends PING over the pool (a new connection is dialled if none is
// idle), bounded by DialTimeout + Timeout and by ctx. It does not change
// Status; Check does.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.checkTimeout())
	defer cancel()
	return c.rdb.Ping(ctx).Err()
}

// checkTimeout leaves room for a dial: after an outage the pool is empty.
func (c *Client) checkTimeout() time.Duration { return c.opts.DialTimeout + c.timeout }

// Check pings Redis once and records the result for Status; it returns
// the ping's error. State changes are logged (warn when Redis goes down,
// info when it is back).
func (c *Client) Check(ctx context.Context) error {
	start := time.Now()
	err := c.Ping(ctx)
	lat := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return err // we are stopping: not Redis's fault, keep the last state
	}
	c.mu.Lock()
	prevState, prevErr, first := c.state, c.lastErr, c.checkedAt.IsZero()
	c.checkedAt, c.latency = time.Now(), lat
	if err != nil {
		c.state, c.lastErr = StateDown, err.Error()
	} else {
		c.state, c.lastErr = StateOK, ""
	}
	c.mu.Unlock()
	switch {
	case err != nil && (prevState != StateDown || first):
		c.opts.Log.Warn("redis unreachable; serving without it", "addr", c.addr, "err", err)
	case err != nil && prevErr != err.Error():
		c.opts.Log.Debug("redis still unreachable", "addr", c.addr, "err", err)
	case err == nil && prevState == StateDown && !first:
		c.opts.Log.Info("redis reachable again", "addr", c.addr)
	}
	return err
}

// Run checks Redis at once, then every interval (default 5s), until ctx
// ends (it returns nil then). Call it in its own goroutine; Status reads
// its latest result.
func (c *Client) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultCheckInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = c.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Status returns the latest health check's result: state is StateOK or
// StateDown (also before the first check, with lastErr "not checked
// yet"), lastErr the failed check's error, checkedAt its time (zero before
// the first check).
func (c *Client) Status() (state, lastErr string, checkedAt time.Time) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state, c.lastErr, c.checkedAt
}

// Latency returns the latest health check's round trip.
func (c *Client) Latency() time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.latency
}

// RouteLibraryLogs sends go-redis's own log lines (e.g. "connection pool:
// failed to dial", printed to stderr by default) to log at debug level.
// It is process-wide: call it once at start-up.
func RouteLibraryLogs(log *slog.Logger) {
	if log != nil {
		goredis.SetLogger(libLogger{log})
	}
}

type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
