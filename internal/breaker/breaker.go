// Package breaker is agentd's one registry of circuit breakers, one per
// external dependency: each model ("model:NAME"), each HTTP tool
// ("tool:NAME"), each MCP server ("mcp:NAME"), each host of MCP servers by
// URL ("mcp-url:HOST"), each webhook host ("webhook:HOST"), Redis
// ("redis") and the store ("store").
//
// A breaker counts the calls to its dependency. After ConsecutiveFailures
// failures in a row, or FailureRatio of at least MinRequests calls in the
// rolling Window, it opens: calls fail at once with an *OpenError (no
// connection, no timeout) for OpenTimeout. Then it is half-open and lets
// HalfOpenProbes calls through; that many successes close it, one failure
// opens it again. What counts as a failure is the caller's decision (each
// caller documents it); calls the caller gave up on count as nothing.
//
// Every breaker appears as agentd_breaker_state{dependency} (0 closed, 1
// half-open, 2 open) and in Set.Statuses (/healthz components.breakers).
// The state machine is sony/gobreaker's.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Defaults of Config.
const (
	// DefaultConsecutiveFailures is Config.ConsecutiveFailures' default.
	DefaultConsecutiveFailures = 5
	// DefaultFailureRatio is Config.FailureRatio's default.
	DefaultFailureRatio = 0.5
	// DefaultMinRequests is Config.MinRequests' default.
	DefaultMinRequests = 20
	// DefaultWindow is Config.Window's default.
	DefaultWindow = time.Minute
	// DefaultOpenTimeout is Config.OpenTimeout's default.
	DefaultOpenTimeout = 30 * time.Second
	// DefaultHalfOpenProbes is Config.HalfOpenProbes' default.
	DefaultHalfOpenProbes = 3
)

// Config tunes one breaker. Zero values mean the default.
type Config struct {
	// Disabled turns the breaker off: every call goes through. Defaults
	// to false.
	Disabled bool
	// ConsecutiveFailures opens the breaker after that many failed calls
	// in a row. Defaults to 5.
	ConsecutiveFailures uint32
	// FailureRatio opens the breaker when at least that share of the
	// calls in the window failed, once the window holds MinRequests
	// calls. Defaults to 0.5.
	FailureRatio float64
	// MinRequests is the number of calls in the window before
	// FailureRatio applies. Defaults to 20.
	MinRequests uint32
	// Window is the rolling window over which calls are counted while
	// closed. Defaults to 1m.
	Window time.Duration
	// OpenTimeout is how long the breaker stays open (failing fast)
	// before letting probes through. Defaults to 30s.
	OpenTimeout time.Duration
	// HalfOpenProbes is the number of calls let through while half-open;
	// that many successes close the breaker, one failure reopens it.
	// Defaults to 3.
	HalfOpenProbes uint32
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.FailureRatio <= 0 {
		c.FailureRatio = DefaultFailureRatio
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return c
}

// Over returns c with every field that o sets (non-zero; Disabled when
// true) taken from o: a per-dependency override over the defaults.
func (c Config) Over(o Config) Config {
	if o.Disabled {
		c.Disabled = true
	}
	if o.ConsecutiveFailures != 0 {
		c.ConsecutiveFailures = o.ConsecutiveFailures
	}
	if o.FailureRatio != 0 {
		c.FailureRatio = o.FailureRatio
	}
	if o.MinRequests != 0 {
		c.MinRequests = o.MinRequests
	}
	if o.Window != 0 {
		c.Window = o.Window
	}
	if o.OpenTimeout != 0 {
		c.OpenTimeout = o.OpenTimeout
	}
	if o.HalfOpenProbes != 0 {
		c.HalfOpenProbes = o.HalfOpenProbes
	}
	return c
}

// States as Status and agentd_breaker_state show them.
const (
	StateClosed   = "closed"
	StateHalfOpen = "half-open"
	StateOpen     = "open"
	// StateDisabled: the breaker is configured off.
	StateDisabled = "disabled"
)

// Dependency name prefixes.
const (
	PrefixModel   = "model:"
	PrefixTool    = "tool:"
	PrefixMCP     = "mcp:"
	PrefixWebhook = "webhook:"
	// PrefixMCPURL: the host (host[:port]) of MCP servers named by URL
	// (the Managed Agents API's mcp_servers).
	PrefixMCPURL = "mcp-url:"
	// Redis and Store are whole names.
	Redis = "redis"
	Store = "store"
)

// ErrOpen is in the chain of every *OpenError.
var ErrOpen = errors.New("circuit breaker open")

// OpenError is a call refused by an open (or half-open, probes in
// flight) breaker: the dependency was not called.
type OpenError struct {
	// Dependency is the breaker's name ("tool:weather").
	Dependency string
	// HalfOpen: the breaker is half-open and its probes are in flight.
	HalfOpen bool
	// RetryAfter is the time left before the breaker lets probes through
	// (at least 1s).
	RetryAfter time.Duration
}

func (e *OpenError) Error() string {
	if e.HalfOpen {
		return fmt.Sprintf("circuit breaker for %s is half-open (probe calls in flight); retry in %s", e.Dependency, e.RetryAfter)
	}
	return fmt.Sprintf("circuit breaker for %s is open after repeated failures; it will be retried in %s", e.Dependency, e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Unwrap() error { return ErrOpen }

// AsOpen returns the *OpenError in err's chain.
func AsOpen(err error) (*OpenError, bool) {
	var oe *OpenError
	ok := errors.As(err, &oe)
	return oe, ok
}

// Outcome is what a finished call tells its breaker.
type Outcome int

const (
	// Success: the dependency answered.
	Success Outcome = iota
	// Failure: the dependency is unavailable (down, timed out, 5xx).
	Failure
	// Ignore: the call says nothing of the dependency (the caller gave
	// up, a local error).
	Ignore
)

// Status is a breaker's state for /healthz.
type Status struct {
	// Dependency is the breaker's name: "model:NAME", "tool:NAME",
	// "mcp:NAME", "mcp-url:HOST", "webhook:HOST", "redis", "store".
	Dependency string `json:"dependency"`
	// State is "closed", "half-open", "open" or "disabled".
	State string `json:"state"`
	// Since is when the breaker entered State (zero: never changed).
	Since time.Time `json:"since,omitzero"`
	// Requests and Failures count the calls of the current window.
	Requests uint32 `json:"requests"`
	Failures uint32 `json:"failures"`
}

// Options configure a Set.
type Options struct {
	// Defaults configure every breaker the Set makes (Get), unless
	// overridden.
	Defaults Config
	// Overrides replace fields of Defaults (or of GetWith's base) for the
	// dependencies they name (exact names: "tool:weather", "store").
	Overrides map[string]Config
	// Registerer, when set, registers agentd_breaker_state.
	Registerer prometheus.Registerer
	// Log receives state changes (warn on open). Defaults to none.
	Log *slog.Logger
}

// Set is the process's breakers by dependency name. A nil *Set makes nil
// breakers, which let every call through.
type Set struct {
	o     Options
	gauge *prometheus.GaugeVec

	mu sync.Mutex
	m  map[string]*Breaker
}

// NewSet returns an empty Set.
func NewSet(o Options) *Set {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Set{o: o, m: map[string]*Breaker{}, gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentd_breaker_state",
		Help: `Circuit breaker state by dependency ("model:NAME", "tool:NAME", "mcp:NAME", "mcp-url:HOST", "webhook:HOST", "redis", "store"): 0 closed, 1 half-open, 2 open.`,
	}, []string{"dependency"})}
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.gauge)
	}
	return s
}

// Collector returns agentd_breaker_state, for a registry the Set was not
// given at construction.
func (s *Set) Collector() prometheus.Collector { return s.gauge }

// Get returns the breaker of dependency name, made on first use from the
// Set's defaults and name's override. The same name always gets the same
// breaker.
func (s *Set) Get(name string) *Breaker {
	if s == nil {
		return nil
	}
	return s.GetWith(name, s.o.Defaults)
}

// GetWith is Get with base instead of the Set's defaults (the model
// breakers' providers.anthropic.breaker); name's override still applies.
// base only matters on first use.
func (s *Set) GetWith(name string, base Config) *Breaker {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[name]; ok {
		return b
	}
	cfg := base
	if o, ok := s.o.Overrides[name]; ok {
		cfg = cfg.Over(o)
	}
	b := newBreaker(name, cfg.WithDefaults(), s.gauge, s.o.Log)
	s.m[name] = b
	return b
}

// Statuses returns every breaker's state, by name.
func (s *Set) Statuses() []Status {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	bs := make([]*Breaker, 0, len(s.m))
	for _, b := range s.m {
		bs = append(bs, b)
	}
	s.mu.Unlock()
	out := make([]Status, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.Status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Dependency, b.Dependency) })
	return out
}

// Breaker guards the calls to one dependency. A nil *Breaker lets every
// call through.
type Breaker struct {
	name string
	cfg  Config
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]

	mu    sync.Mutex
	since time.Time
}

var (
	errFailure  = errors.New("availability failure")
	errExcluded = errors.New("not counted")
)

func newBreaker(name string, cfg Config, gauge *prometheus.GaugeVec, log *slog.Logger) *Breaker {
	b := &Breaker{name: name, cfg: cfg}
	ratio, minReq, consec := cfg.FailureRatio, cfg.MinRequests, cfg.ConsecutiveFailures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  cfg.HalfOpenProbes,
		Interval:     cfg.Window,
		BucketPeriod: max(cfg.Window/10, time.Millisecond),
		Timeout:      cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= consec {
				return true
			}
			return c.Requests >= minReq && float64(c.TotalFailures) >= ratio*float64(c.Requests)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			b.mu.Lock()
			b.since = time.Now()
			b.mu.Unlock()
			gauge.WithLabelValues(name).Set(float64(to))
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "circuit breaker state change",
				"breaker", name, "from", from.String(), "to", to.String())
		},
	})
	gauge.WithLabelValues(name).Set(float64(gobreaker.StateClosed))
	return b
}

// Name returns the dependency's name.
func (b *Breaker) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// Config returns the breaker's configuration, defaults applied.
func (b *Breaker) Config() Config {
	if b == nil {
		return Config{Disabled: true}
	}
	return b.cfg
}

// Allow asks to call the dependency. It returns an *OpenError when the
// breaker refuses (open, or half-open with its probes in flight); else
// done, which the caller must call exactly once with the call's Outcome.
// It never blocks.
func (b *Breaker) Allow() (done func(Outcome), err error) {
	if b == nil || b.cfg.Disabled {
		return noop, nil
	}
	d, err := b.cb.Allow()
	if err != nil {
		return noop, b.openError()
	}
	return func(o Outcome) {
		switch o {
		case Success:
			d(nil)
		case Failure:
			d(errFailure)
		default:
			d(errExcluded)
		}
	}, nil
}

func noop(Outcome) {}

// Open reports whether the breaker refuses calls now (open; half-open
// still lets probes through).
func (b *Breaker) Open() bool {
	return b != nil && !b.cfg.Disabled && b.cb.State() == gobreaker.StateOpen
}

// Err returns the *OpenError a call would get now while the breaker is
// open, nil while it lets calls through (closed, half-open, disabled): for
// a caller that would otherwise wait for the dependency (a reconnection)
// without making a call itself.
func (b *Breaker) Err() error {
	if !b.Open() {
		return nil
	}
	return b.openError()
}

// State returns "closed", "half-open", "open" or "disabled".
func (b *Breaker) State() string {
	if b == nil || b.cfg.Disabled {
		return StateDisabled
	}
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	}
	return StateClosed
}

// RetryAfter is the time left before an open breaker lets probes through
// (at least 1s); 1s when it is not open.
func (b *Breaker) RetryAfter() time.Duration {
	if !b.Open() {
		return time.Second
	}
	b.mu.Lock()
	left := b.cfg.OpenTimeout - time.Since(b.since)
	b.mu.Unlock()
	return max(left, time.Second).Round(time.Second)
}

func (b *Breaker) openError() *OpenError {
	return &OpenError{Dependency: b.name, HalfOpen: b.cb.State() == gobreaker.StateHalfOpen, RetryAfter: b.RetryAfter()}
}

// Status returns the breaker's state.
func (b *Breaker) Status() Status {
	c := b.cb.Counts()
	st := Status{Dependency: b.name, State: b.State(), Requests: c.Requests, Failures: c.TotalFailures}
	b.mu.Lock()
	st.Since = b.since
	b.mu.Unlock()
	return st
}
