package resilience

import (
	"context"
	"encoding/json"
	"github.com/agentd/agentd/internal/breaker"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/sim"
)

func cachedAgent(t *testing.T, h http.Handler, cc CacheConfig) (llm.Model, *Metrics) {
	t.Helper()
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{Retry: fastRetry, Breaker: BreakerConfig{Config: breaker.Config{Disabled: true}}}, serve(t, h, "k"), m)
	cc.Enabled = true
	model, err := Build(AgentConfig{Name: "cached", Model: modelA, Cache: cc}, p, NewMemoryCache(MemoryCacheConfig{}), m, nil)
	require.NoError(t, err)
	return model, m
}

func TestCacheHitReplaysWithoutUpstream(t *testing.T) {
	t.Parallel()
	s := newSim(sim.Config{})
	model, m := cachedAgent(t, s, CacheConfig{})
	first, firstStream, err := call(context.Background(), model, request("what is a cache?"))
	require.NoError(t, err)
	require.False(t, first.Cached)
	require.Positive(t, first.Usage.OutputTokens)
	require.EqualValues(t, 1, s.Requests())

	second, secondStream, err := call(context.Background(), model, request("what is a cache?"))
	require.NoError(t, err)
	require.EqualValues(t, 1, s.Requests(), "answered from the cache")
	require.True(t, second.Cached)
	require.Equal(t, llm.Usage{}, second.Usage, "a hit costs nothing")
	require.Equal(t, first.Content, second.Content)
	require.Equal(t, first.ID, second.ID)
	require.Equal(t, modelA, second.Model)
	require.Equal(t, firstStream, secondStream, "the text is replayed as deltas")

	_, _, err = call(context.Background(), model, request("another question"))
	require.NoError(t, err)
	require.EqualValues(t, 2, s.Requests())
	require.InDelta(t, 1, value(t, m.CacheRequests.WithLabelValues("hit")), 0)
	require.InDelta(t, 2, value(t, m.CacheRequests.WithLabelValues("miss")), 0)
}

func TestCacheTTLExpiry(t *testing.T) {
	t.Parallel()
	s := newSim(sim.Config{})
	model, _ := cachedAgent(t, s, CacheConfig{TTL: 50 * time.Millisecond})
	_, _, err := call(context.Background(), model, request("q"))
	require.NoError(t, err)
	_, _, err = call(context.Background(), model, request("q"))
	require.NoError(t, err)
	require.EqualValues(t, 1, s.Requests())
	time.Sleep(70 * time.Millisecond)
	resp, _, err := call(context.Background(), model, request("q"))
	require.NoError(t, err)
	require.False(t, resp.Cached)
	require.EqualValues(t, 2, s.Requests())
}

func toolResultRequest() llm.Request {
	req := request("what time is it?")
	assistant, _ := json.Marshal([]llm.Block{{Type: "tool_use", ID: "toolu_1", Name: "get_time", Input: json.RawMessage(`{}`)}})
	result, _ := json.Marshal([]llm.Block{{Type: "tool_result", ToolUseID: "toolu_1", Content: "12:00"}})
	req.Messages = append(req.Messages, llm.Message{Role: "assistant", Content: assistant}, llm.Message{Role: "user", Content: result})
	return req
}

func TestCacheSkipsToolResultsUnlessAllowed(t *testing.T) {
	t.Parallel()
	s := newSim(sim.Config{})
	model, m := cachedAgent(t, s, CacheConfig{})
	for range 2 {
		resp, _, err := call(context.Background(), model, toolResultRequest())
		require.NoError(t, err)
		require.False(t, resp.Cached)
	}
	require.EqualValues(t, 2, s.Requests())
	require.InDelta(t, 2, value(t, m.CacheRequests.WithLabelValues("bypass")), 0)

	s2 := newSim(sim.Config{})
	allowed, _ := cachedAgent(t, s2, CacheConfig{CacheToolResults: true})
	for range 2 {
		_, _, err := call(context.Background(), allowed, toolResultRequest())
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, s2.Requests())
}

func TestCacheServesStaleOnUpstreamFailure(t *testing.T) {
	t.Parallel()
	for _, serveStale := range []bool{true, false} {
		healthy := newSim(sim.Config{})
		down := newSim(sim.Config{Rate529: 1, Seed: 1})
		sw := newSwitchable(healthy)
		model, m := cachedAgent(t, sw, CacheConfig{TTL: 20 * time.Millisecond, ServeStaleOnError: serveStale})
		fresh, _, err := call(context.Background(), model, request("q"))
		require.NoError(t, err)

		sw.set(down)
		time.Sleep(30 * time.Millisecond)
		resp, streamed, err := call(context.Background(), model, request("q"))
		require.EqualValues(t, 3, down.Requests(), "the upstream was tried (with retries) first")
		if !serveStale {
			e, ok := llm.AsError(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, 529, e.Status)
			continue
		}
		require.NoError(t, err)
		require.True(t, resp.Cached)
		require.Equal(t, fresh.Content, resp.Content)
		require.Equal(t, text(fresh), streamed)
		require.InDelta(t, 1, value(t, m.CacheRequests.WithLabelValues("stale")), 0)

		// A non-temporary failure is not hidden by a stale answer.
		bad := request("q")
		bad.MaxTokens = 0
		_, _, err = call(context.Background(), model, bad)
		require.Error(t, err)
	}
}

func TestCacheKeyCanonical(t *testing.T) {
	t.Parallel()
	a := request("x")
	a.Tools = []llm.ToolSpec{{Name: "t", InputSchema: json.RawMessage(`{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}`)}}
	b := a
	b.Messages = []llm.Message{{Role: "user", Content: json.RawMessage(` [ {"text":"x", "type":"text"} ] `)}}
	b.Tools = []llm.ToolSpec{{Name: "t", InputSchema: json.RawMessage(`{ "properties": {"a":{"type":"integer"},"b":{"type":"string"}}, "type":"object"}`)}}
	ka, tr, err := CacheKey(a)
	require.NoError(t, err)
	require.False(t, tr)
	kb, _, err := CacheKey(b)
	require.NoError(t, err)
	require.Equal(t, ka, kb)
	require.Len(t, ka, 64)
	for _, change := range []func(*llm.Request){
		func(r *llm.Request) { r.Model = modelB },
		func(r *llm.Request) { r.System = "other" },
		func(r *llm.Request) { r.MaxTokens++ },
		func(r *llm.Request) { r.Tools = nil },
		func(r *llm.Request) { r.Messages = []llm.Message{userText("y")} },
	} {
		c := a
		change(&c)
		kc, _, err := CacheKey(c)
		require.NoError(t, err)
		require.NotEqual(t, ka, kc)
	}
	_, tr, err = CacheKey(toolResultRequest())
	require.NoError(t, err)
	require.True(t, tr)
}

func TestMemoryCacheBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	entry := func(text string) CacheEntry {
		return CacheEntry{Response: llm.Response{Content: []llm.Block{{Type: "text", Text: text}}}, FreshUntil: now.Add(time.Hour), StaleUntil: now.Add(time.Hour)}
	}
	c := NewMemoryCache(MemoryCacheConfig{MaxEntries: 2})
	require.NoError(t, c.Set(ctx, "a", entry("A")))
	require.NoError(t, c.Set(ctx, "b", entry("B")))
	_, ok, _ := c.Get(ctx, "a") // a is now the most recent
	require.True(t, ok)
	require.NoError(t, c.Set(ctx, "c", entry("C")))
	_, ok, _ = c.Get(ctx, "b")
	require.False(t, ok, "the least recently used entry was evicted")
	got, ok, _ := c.Get(ctx, "a")
	require.True(t, ok)
	require.Equal(t, "A", got.Response.Content[0].Text)
	got.Response.Content[0].Text = "mutated"
	again, _, _ := c.Get(ctx, "a")
	require.Equal(t, "A", again.Response.Content[0].Text, "callers get copies")

	big := NewMemoryCache(MemoryCacheConfig{MaxBytes: 2000})
	for i := range 10 {
		require.NoError(t, big.Set(ctx, string(rune('a'+i)), entry(string(make([]byte, 500)))))
	}
	n, size := big.Len()
	require.LessOrEqual(t, size, int64(2000))
	require.Positive(t, n)
	require.Less(t, n, 10)

	expired := NewMemoryCache(MemoryCacheConfig{})
	e := entry("old")
	e.StaleUntil = now.Add(-time.Second)
	require.NoError(t, expired.Set(ctx, "x", e))
	_, ok, _ = expired.Get(ctx, "x")
	require.False(t, ok, "entries past their stale window are gone")
}
