package config

// DefaultSessionCacheBytes is the default sessions.cache_bytes: 64 MiB.
// A conversation at the default max_messages (100) of typical 1-2 KiB
// messages is 100-200 KiB, so 64 MiB keeps the histories of a few hundred
// to a few thousand active conversations per instance (the default
// admission.max_chats is 256), small next to the memory an instance runs
// model calls and streams in. The cache is never stale (every read checks
// the stored version), so it is on by default; it pays off with ingress
// affinity or on a single instance (docs/operations.md#sticky-sessions).
const DefaultSessionCacheBytes int64 = 64 << 20

// Sessions is the per-instance conversation cache (docs/architecture.md#conversation-cache).
type Sessions struct {
	// CacheBytes bounds the cache of conversation histories kept in
	// memory (least recently used out first); 0 turns it off. A pointer,
	// so that an explicit 0 differs from unset: file only, no AGENTD_*
	// variable. Defaults to 67108864 (64 MiB).
	CacheBytes *int64 `yaml:"cache_bytes,omitempty"`
}

// CacheSize is sessions.cache_bytes once defaults are applied.
func (s Sessions) CacheSize() int64 {
	if s.CacheBytes == nil {
		return DefaultSessionCacheBytes
	}
	return *s.CacheBytes
}

func (c *Config) defaultSessions() {
	if c.Sessions.CacheBytes == nil {
		n := DefaultSessionCacheBytes
		c.Sessions.CacheBytes = &n
	}
}

func (c *Config) validateSessions(v *validator) {
	atLeast(v, "sessions.cache_bytes", c.Sessions.CacheSize(), 0, "must be >= 0 (0 turns the conversation cache off)")
}
