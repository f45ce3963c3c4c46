// Package resilience wraps an llm.Model in the layers that keep model calls
// working when the provider does not: from outside in,
//
//	cache → fallback chain [ breaker → concurrency limit → retry → key pool → provider ]
//
// Each layer is a decorator (an llm.Model wrapping an llm.Model). The layers
// below the fallback chain belong to a Provider and are shared by every agent
// (one limiter and one key pool per provider, one breaker per provider and
// model); the cache and the chain are built per agent by Build.
// docs/resilience.md is the operator's reference.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm"
)

// Error types of llm.Errors the layers return themselves.
const (
	// TypeCircuitOpen: the model's breaker is open (or half-open with its
	// probes in flight); the call failed fast. Temporary; RetryAfter is the
	// time left before probes.
	TypeCircuitOpen = "circuit_open"
	// TypeQueueFull: the provider's concurrency limit and wait queue are
	// full. Temporary.
	TypeQueueFull = "queue_full"
	// TypeNoKey: the key pool has no key (Status 401). Not temporary.
	TypeNoKey = "no_api_key"
)

// DefaultProviderName is ProviderConfig.Name's default.
const DefaultProviderName = "anthropic"

// ProviderConfig configures the shared layers of one provider.
type ProviderConfig struct {
	// Name labels logs, breakers and metrics. Defaults to "anthropic".
	Name string
	// Keys configures the key pool. With no Sources there is no pool and
	// the client's own static key is used.
	Keys KeysConfig
	// Retry configures retries.
	Retry RetryConfig
	// Breaker configures the breaker of each model.
	Breaker BreakerConfig
	// Concurrency bounds the calls in flight.
	Concurrency ConcurrencyConfig
	// Breakers is the process's breaker registry, which holds the model
	// breakers ("model:NAME"; breakers.overrides apply). Nil: a registry
	// of the provider's own, not exported as metrics.
	Breakers *breaker.Set
}

// Provider is a provider client with its shared layers.
type Provider struct {
	name    string
	cfg     ProviderConfig
	client  llm.Model // the key pool over the client
	pool    *KeyPool
	limiter *Limiter
	metrics *Metrics
	log     *slog.Logger

	mu       sync.Mutex
	breakers map[string]*breakerModel
	models   map[string]llm.Model
	chains   map[string]llm.Model
}

// NewProvider wraps client (e.g. an *anthropic.Client) in the provider's
// key pool, reading the key sources once (an unreadable source or no key at
// all is an error). Call Run to keep the keys fresh. m and log may be nil.
func NewProvider(ctx context.Context, cfg ProviderConfig, client llm.Model, m *Metrics, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = DefaultProviderName
	}
	if cfg.Breakers == nil {
		cfg.Breakers = breaker.NewSet(breaker.Options{Log: log})
	}
	log = log.With("provider", cfg.Name)
	p := &Provider{
		name: cfg.Name, cfg: cfg, client: client, metrics: m, log: log,
		limiter:  NewLimiter(cfg.Name, cfg.Concurrency, m),
		breakers: map[string]*breakerModel{},
		models:   map[string]llm.Model{},
		chains:   map[string]llm.Model{},
	}
	if len(cfg.Keys.Sources) > 0 {
		pool, err := NewKeyPool(ctx, cfg.Keys, m, log)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", cfg.Name, err)
		}
		p.pool = pool
		p.client = Keys(client, pool)
	}
	return p, nil
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.name }

// Run refreshes the key pool until ctx ends (returns nil then). Without a
// key pool it just waits for ctx.
func (p *Provider) Run(ctx context.Context) error {
	if p.pool == nil {
		<-ctx.Done()
		return nil
	}
	return p.pool.Run(ctx)
}

// KeyPool returns the provider's key pool, nil without one.
func (p *Provider) KeyPool() *KeyPool { return p.pool }

// Limiter returns the provider's concurrency limiter.
func (p *Provider) Limiter() *Limiter { return p.limiter }

// Keys returns the key pool's snapshot (GET /admin/keys); nil without a
// pool.
func (p *Provider) Keys() []KeyStatus {
	if p.pool == nil {
		return nil
	}
	return p.pool.Snapshot()
}

// Breakers returns the state of the provider's breakers, by model.
func (p *Provider) Breakers() []BreakerStatus {
	p.mu.Lock()
	bs := make([]*breakerModel, 0, len(p.breakers))
	for _, b := range p.breakers {
		bs = append(bs, b)
	}
	p.mu.Unlock()
	out := make([]BreakerStatus, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.status())
	}
	slices.SortFunc(out, func(a, b BreakerStatus) int {
		switch {
		case a.Model < b.Model:
			return -1
		case a.Model > b.Model:
			return 1
		}
		return 0
	})
	return out
}

// Degraded reports whether a breaker of the provider is not closed (for
// /healthz: "degraded", still serving through fallbacks).
func (p *Provider) Degraded() bool {
	for _, b := range p.Breakers() {
		if b.State == BreakerOpen || b.State == BreakerHalfOpen {
			return true
		}
	}
	return false
}

// Model returns the provider's stack for one model:
//
//	time-to-first-token → breaker(provider, model) → limit → retry → key pool → client
//
// The same model name always gets the same stack (and breaker).
func (p *Provider) Model(name string) llm.Model {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.models[name]; ok {
		return m
	}
	inner := Retry(p.client, p.cfg.Retry, p.metrics)
	inner = Limit(inner, p.limiter)
	b := newBreaker(inner, p.name, name, p.cfg.Breaker, p.cfg.Breakers)
	p.breakers[name] = b
	m := &ttftModel{next: b, model: name, metrics: p.metrics}
	p.models[name] = m
	return m
}

// Chain returns the fallback chain of model then fallbacks (duplicates
// dropped), each through the provider's stack, for callers that choose the
// model per call (the gateway). Chains are built once per distinct list.
func (p *Provider) Chain(model string, fallbacks []string) llm.Model {
	if len(fallbacks) == 0 {
		return p.Model(model)
	}
	key := model + "\x00" + strings.Join(fallbacks, "\x00")
	p.mu.Lock()
	m, ok := p.chains[key]
	p.mu.Unlock()
	if ok {
		return m
	}
	names := []string{model}
	for _, f := range fallbacks {
		if !slices.Contains(names, f) {
			names = append(names, f)
		}
	}
	chain := make([]Chained, len(names))
	for i, n := range names {
		chain[i] = Chained{Name: n, Model: p.Model(n)}
	}
	m = Fallback(chain, p.metrics, p.log)
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.chains[key]; ok {
		return prev
	}
	p.chains[key] = m
	return m
}

// AgentConfig configures the model of one agent.
type AgentConfig struct {
	// Name labels logs.
	Name string
	// Model is the model id tried first. Required.
	Model string
	// FallbackModels are tried in order when the model before fails with a
	// temporary error before streaming anything. Defaults to none.
	FallbackModels []string
	// Cache is the agent's response cache (off by default).
	Cache CacheConfig
}

// Build returns an agent's model: the response cache (when
// cfg.Cache.Enabled, over cache) over the fallback chain of cfg.Model then
// cfg.FallbackModels, each through p's stack. Request.Model is ignored: the
// chain sets it. cache may be nil when the agent's cache is off.
func Build(cfg AgentConfig, p *Provider, cache Cache, m *Metrics, log *slog.Logger) (llm.Model, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Model == "" {
		return nil, errors.New("resilience: agent " + cfg.Name + ": no model")
	}
	if p == nil {
		return nil, errors.New("resilience: agent " + cfg.Name + ": no provider")
	}
	log = log.With("agent", cfg.Name)
	names := []string{cfg.Model}
	for _, f := range cfg.FallbackModels {
		if !slices.Contains(names, f) {
			names = append(names, f)
		}
	}
	chain := make([]Chained, len(names))
	for i, n := range names {
		chain[i] = Chained{Name: n, Model: p.Model(n)}
	}
	model := Fallback(chain, m, log)
	if cfg.Cache.Enabled {
		if cache == nil {
			return nil, errors.New("resilience: agent " + cfg.Name + ": cache enabled but no cache store")
		}
		model = CacheModel(model, cache, cfg.Cache, m, log)
	}
	return model, nil
}
