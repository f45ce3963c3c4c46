package resilience

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// Cache defaults.
const (
	// DefaultCacheTTL is CacheConfig.TTL's default.
	DefaultCacheTTL = 10 * time.Minute
	// DefaultCacheStaleTTL is CacheConfig.StaleTTL's default.
	DefaultCacheStaleTTL = time.Hour
	// DefaultCacheMaxEntries is MemoryCacheConfig.MaxEntries' default.
	DefaultCacheMaxEntries = 10000
	// DefaultCacheMaxBytes is MemoryCacheConfig.MaxBytes' default (64 MiB).
	DefaultCacheMaxBytes = 64 << 20
	// cacheWriteTimeout bounds storing an answer after the call returned.
	cacheWriteTimeout = 2 * time.Second
)

// CacheConfig is an agent's response cache (opt-in).
type CacheConfig struct {
	// Enabled turns the cache on for the agent. Defaults to false.
	Enabled bool
	// TTL is how long an answer is served from the cache. Defaults to 10m.
	TTL time.Duration
	// StaleTTL is how long an expired answer is kept after TTL, for
	// ServeStaleOnError. Defaults to 1h.
	StaleTTL time.Duration
	// ServeStaleOnError answers from an expired entry (within StaleTTL)
	// when every model of the chain failed with a temporary error before
	// streaming anything: the last rung of the ladder. Defaults to false.
	ServeStaleOnError bool
	// CacheToolResults also caches requests whose messages carry
	// tool_result blocks (whose answers depend on tools' live output).
	// Defaults to false.
	CacheToolResults bool
}

func (c CacheConfig) withDefaults() CacheConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultCacheTTL
	}
	if c.StaleTTL <= 0 {
		c.StaleTTL = DefaultCacheStaleTTL
	}
	return c
}

// CacheEntry is a cached answer.
type CacheEntry struct {
	Response llm.Response `json:"response"`
	StoredAt time.Time    `json:"stored_at"`
	// FreshUntil is when the entry stops being served as a hit.
	FreshUntil time.Time `json:"fresh_until"`
	// StaleUntil is when a store may forget the entry (FreshUntil +
	// StaleTTL); until then it may be served stale.
	StaleUntil time.Time `json:"stale_until"`
}

// Cache stores answers by key. Implementations keep an entry at least until
// its FreshUntil and may drop it any time after (they should keep it until
// StaleUntil). Errors are treated as misses by the caller, never surfaced.
type Cache interface {
	// Get returns the entry under key; ok is false when there is none.
	Get(ctx context.Context, key string) (e CacheEntry, ok bool, err error)
	// Set stores e under key.
	Set(ctx context.Context, key string, e CacheEntry) error
}

// MemoryCacheConfig bounds a MemoryCache.
type MemoryCacheConfig struct {
	// MaxEntries caps the entries. Defaults to 10000.
	MaxEntries int
	// MaxBytes caps the (estimated) size of the entries. Defaults to 64 MiB.
	MaxBytes int64
}

// MemoryCache is an in-process LRU Cache bounded in entries and bytes;
// entries past StaleUntil are dropped when met.
type MemoryCache struct {
	maxEntries int
	maxBytes   int64
	now        func() time.Time

	mu    sync.Mutex
	ll    list.List // of *memItem, most recent first
	items map[string]*list.Element
	bytes int64
}

type memItem struct {
	key  string
	e    CacheEntry
	size int64
}

// NewMemoryCache returns an empty MemoryCache.
func NewMemoryCache(cfg MemoryCacheConfig) *MemoryCache {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultCacheMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultCacheMaxBytes
	}
	return &MemoryCache{maxEntries: cfg.MaxEntries, maxBytes: cfg.MaxBytes, now: time.Now, items: map[string]*list.Element{}}
}

// Get implements Cache.
func (c *MemoryCache) Get(_ context.Context, key string) (CacheEntry, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return CacheEntry{}, false, nil
	}
	it := el.Value.(*memItem)
	if !c.now().Before(it.e.StaleUntil) {
		c.remove(el)
		return CacheEntry{}, false, nil
	}
	c.ll.MoveToFront(el)
	e := it.e
	e.Response.Content = slices.Clone(e.Response.Content)
	return e, true, nil
}

// Set implements Cache.
func (c *MemoryCache) Set(_ context.Context, key string, e CacheEntry) error {
	e.Response.Content = slices.Clone(e.Response.Content)
	size := entrySize(key, &e)
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.maxBytes {
		return nil // would evict everything else; not worth it
	}
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	c.items[key] = c.ll.PushFront(&memItem{key: key, e: e, size: size})
	c.bytes += size
	for c.ll.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.remove(c.ll.Back())
	}
	return nil
}

// Len returns the number of entries and their estimated size.
func (c *MemoryCache) Len() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.bytes
}

func (c *MemoryCache) remove(el *list.Element) {
	it := c.ll.Remove(el).(*memItem)
	delete(c.items, it.key)
	c.bytes -= it.size
}

// entrySize estimates the memory an entry holds.
func entrySize(key string, e *CacheEntry) int64 {
	n := int64(len(key) + 256 + len(e.Response.ID) + len(e.Response.Model) + len(e.Response.StopReason) + len(e.Response.RequestID))
	for _, b := range e.Response.Content {
		n += int64(64 + len(b.Type) + len(b.Text) + len(b.ID) + len(b.Name) + len(b.Input) + len(b.ToolUseID) + len(b.Content))
	}
	return n
}

// CacheKey returns the canonical key of req: the hex sha256 of its model,
// system prompt, messages, tools and max_tokens, with JSON re-encoded
// canonically (sorted keys, no insignificant space). It also reports whether
// the messages carry tool_result blocks.
func CacheKey(req llm.Request) (key string, toolResults bool, err error) {
	type msg struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	}
	type tool struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		InputSchema any    `json:"input_schema"`
	}
	c := struct {
		V         int    `json:"v"`
		Model     string `json:"model"`
		System    string `json:"system"`
		Messages  []msg  `json:"messages"`
		Tools     []tool `json:"tools"`
		MaxTokens int    `json:"max_tokens"`
	}{V: 1, Model: req.Model, System: req.System, MaxTokens: req.MaxTokens}
	for i, m := range req.Messages {
		v, err := canonical(m.Content)
		if err != nil {
			return "", false, fmt.Errorf("message %d: %w", i, err)
		}
		if blocks, ok := v.([]any); ok {
			for _, b := range blocks {
				if bm, ok := b.(map[string]any); ok && bm["type"] == "tool_result" {
					toolResults = true
				}
			}
		}
		c.Messages = append(c.Messages, msg{Role: m.Role, Content: v})
	}
	for _, t := range req.Tools {
		v, err := canonical(t.InputSchema)
		if err != nil {
			return "", false, fmt.Errorf("tool %s: %w", t.Name, err)
		}
		c.Tools = append(c.Tools, tool{Name: t.Name, Description: t.Description, InputSchema: v})
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", false, err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), toolResults, nil
}

func canonical(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// CacheModel returns next behind the response cache c: a fresh entry is
// answered without calling next (its text replayed to onDelta, Usage zero,
// Cached set); a miss calls next and stores a successful answer. Requests
// with tool_result blocks bypass the cache unless cfg.CacheToolResults.
func CacheModel(next llm.Model, c Cache, cfg CacheConfig, m *Metrics, log *slog.Logger) llm.Model {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &cacheModel{next: next, c: c, cfg: cfg.withDefaults(), metrics: m, log: log, now: time.Now}
}

type cacheModel struct {
	next    llm.Model
	c       Cache
	cfg     CacheConfig
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
}

func (cm *cacheModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if req.Passthrough != nil {
		// A raw gateway call is relayed as it streams: there is no
		// response to store or replay.
		cm.metrics.cache("bypass")
		return cm.next.Stream(ctx, req, onDelta)
	}
	key, toolResults, err := CacheKey(req)
	if err != nil || (toolResults && !cm.cfg.CacheToolResults) {
		cm.metrics.cache("bypass")
		return cm.next.Stream(ctx, req, onDelta)
	}
	result := "miss"
	ent, found, err := cm.c.Get(ctx, key)
	if err != nil {
		result, found = "error", false
		cm.log.WarnContext(ctx, "response cache read failed; treated as a miss", "err", err)
	}
	if found && cm.now().Before(ent.FreshUntil) {
		cm.metrics.cache("hit")
		return replay(ent.Response, onDelta), nil
	}
	streamed := false
	resp, err := cm.next.Stream(ctx, req, func(d llm.Delta) {
		streamed = true
		if onDelta != nil {
			onDelta(d)
		}
	})
	if err == nil {
		cm.metrics.cache(result)
		now := cm.now()
		e := CacheEntry{Response: resp, StoredAt: now, FreshUntil: now.Add(cm.cfg.TTL), StaleUntil: now.Add(cm.cfg.TTL + cm.cfg.StaleTTL)}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheWriteTimeout)
		defer cancel()
		if serr := cm.c.Set(wctx, key, e); serr != nil {
			cm.metrics.cache("error")
			cm.log.WarnContext(ctx, "response cache write failed", "err", serr)
		}
		return resp, nil
	}
	if found && cm.cfg.ServeStaleOnError && !streamed && ctx.Err() == nil && cm.now().Before(ent.StaleUntil) {
		if e, ok := llm.AsError(err); ok && !e.Streamed && e.Temporary() {
			cm.metrics.cache("stale")
			cm.log.WarnContext(ctx, "model call failed; answering from a stale cache entry",
				"err_type", e.Type, "status", e.Status, "stored_at", ent.StoredAt)
			return replay(ent.Response, onDelta), nil
		}
	}
	cm.metrics.cache(result)
	return resp, err
}

// replay streams a cached answer's text to onDelta and returns it as a
// cache hit: Usage zero, Cached set.
func replay(r llm.Response, onDelta llm.DeltaFunc) llm.Response {
	if onDelta != nil {
		for i, b := range r.Content {
			if b.Type == "text" && b.Text != "" {
				onDelta(llm.Delta{Index: i, Text: b.Text})
			}
		}
	}
	r.Usage = llm.Usage{}
	r.Cached = true
	return r
}
