package observe

import "github.com/prometheus/client_golang/prometheus"

// ConversationCacheMetrics are the metrics of the per-instance
// conversation cache (internal/convcache, sessions.cache_bytes).
type ConversationCacheMetrics struct {
	// Hits: a conversation's history served from memory after its
	// version was checked (one primary-key read instead of the history).
	Hits prometheus.Counter
	// Misses: the history was read from the store (no entry, an entry of
	// another version, or the cache is off).
	Misses prometheus.Counter
	// Evictions: entries dropped to stay within sessions.cache_bytes.
	Evictions prometheus.Counter
	// Bytes is the cache's accounted size.
	Bytes prometheus.Gauge
	// StoreReadBytes counts the bytes of conversation rows and messages
	// read from the store by conversation reads (cache on or off).
	StoreReadBytes prometheus.Counter
}

func newConversationCacheMetrics(reg prometheus.Registerer) *ConversationCacheMetrics {
	m := &ConversationCacheMetrics{
		Hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_conversation_cache_hits_total",
			Help: "Conversation reads served from this instance's cache (the stored version matched the cached one).",
		}),
		Misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_conversation_cache_misses_total",
			Help: "Conversation reads that read the history from the store (no entry, a stale entry, or the cache is off).",
		}),
		Evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_conversation_cache_evictions_total",
			Help: "Conversation cache entries evicted (least recently used) to stay within sessions.cache_bytes.",
		}),
		Bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentd_conversation_cache_bytes",
			Help: "Accounted size of this instance's conversation cache.",
		}),
		StoreReadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_conversation_store_read_bytes_total",
			Help: "Bytes of conversation rows and messages read from the store by conversation reads (version checks included).",
		}),
	}
	reg.MustRegister(m.Hits, m.Misses, m.Evictions, m.Bytes, m.StoreReadBytes)
	return m
}
