// Package convcache is the per-instance hot cache of conversation
// histories (sessions.cache_bytes): a conversation's next turn on the same
// instance does not read its history from the store.
//
// Correctness (docs/architecture.md#conversation-cache): an entry holds the
// messages of one conversation at one version, identified by (tenant, id,
// created_at, version). Every read checks the entry against the store's
// row (ConversationHead, one primary-key lookup); the history is served
// from memory only when the stored created_at and version are the entry's.
// A turn anywhere bumps the version (AppendMessages), a delete removes the
// row, and a conversation deleted and created again with the same id has
// another created_at, so a stale entry is never served. After a successful
// AppendMessages the entry advances to the new version by applying the
// same append (and trim) to its messages: the store's version check made
// that append the only change between the two versions, and the seqs it
// assigned are the entry's NextSeq onwards.
package convcache

import (
	"container/list"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// Backend is the part of the store the cache reads through.
type Backend interface {
	GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error)
	store.ConversationHeads
	AppendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error)
	DeleteConversation(ctx context.Context, tenant, id string) error
}

// Accounted sizes: the bytes of the strings and contents plus a fixed
// overhead for the structs, list element and map slot around them.
const (
	entryOverhead   = 256
	messageOverhead = 96
	// headBytes is what a version check reads besides its strings: the
	// version, next_seq and three times.
	headBytes = 5 * 8
	// messageReadBytes is what a message row reads besides its role and
	// content: seq, tokens, created_at.
	messageReadBytes = 3 * 8
)

// Cache is an LRU of conversation histories bounded in bytes. A nil *Cache
// is valid and caches and counts nothing (every call goes to the store).
// Safe for concurrent use.
type Cache struct {
	max     int64
	metrics *observe.ConversationCacheMetrics

	mu    sync.Mutex
	size  int64
	ll    *list.List // of *entry, most recently used first
	items map[key]*list.Element
	stats Stats
}

// Stats are the cache's counters (the metrics without Prometheus).
type Stats struct {
	Hits, Misses, Evictions int64
	// Bytes is the accounted size now; Entries the number of entries.
	Bytes   int64
	Entries int
	// StoreReadBytes counts the bytes conversation reads read from the
	// store: rows, strings and message contents.
	StoreReadBytes int64
}

type key struct{ tenant, id string }

// entry is immutable once in the list; an update replaces it.
type entry struct {
	key       key
	createdAt time.Time
	version   int64
	nextSeq   int64
	msgs      []store.Message
	size      int64
}

// New returns a cache of at most maxBytes. With maxBytes <= 0 it caches
// nothing but still counts misses and the bytes read (the metrics say what
// the cache would save). m may be nil.
func New(maxBytes int64, m *observe.ConversationCacheMetrics) *Cache {
	return &Cache{max: maxBytes, metrics: m, ll: list.New(), items: map[key]*list.Element{}}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Bytes, s.Entries = c.size, c.ll.Len()
	return s
}

// GetConversation is b.GetConversation served from the cache when the
// stored version is the cached one. The returned Messages slice is the
// caller's; the message contents are shared and must not be modified.
func (c *Cache) GetConversation(ctx context.Context, b Backend, tenant, id string) (store.Conversation, error) {
	if c == nil {
		conv, err := b.GetConversation(ctx, tenant, id)
		return conv, err
	}
	k := key{tenant, id}
	if e := c.lookup(k); e != nil {
		head, err := b.ConversationHead(ctx, tenant, id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				c.remove(k) // deleted, expired and swept, or never this tenant's
			}
			return store.Conversation{}, err
		}
		c.readBytes(headSize(head))
		if head.Version == e.version && head.CreatedAt.Equal(e.createdAt) {
			c.hit(k, e)
			if len(e.msgs) > 0 { // as the store: nil when there are none
				head.Messages = slices.Clone(e.msgs)
			}
			return head, nil
		}
	}
	c.miss()
	conv, err := b.GetConversation(ctx, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			c.remove(k)
		}
		return conv, err
	}
	c.readBytes(headSize(conv) + readSize(conv.Messages))
	if c.max > 0 {
		c.put(k, conv)
	}
	return conv, nil
}

// AppendMessages is b.AppendMessages; when it succeeds on the version the
// cache holds, the entry advances to the new version without a read. The
// store keeps the CreatedAt a message carries, so a message without one
// gets it here (as the store would give it: now, in microseconds) and the
// cached copy is the stored one; so does a conversation it creates
// (p.Create), which is cached as CreateConversation caches one.
func (c *Cache) AppendMessages(ctx context.Context, b Backend, p store.AppendMessagesParams) (int64, error) {
	if c == nil || c.max <= 0 {
		return b.AppendMessages(ctx, p)
	}
	now := time.Now()
	msgs := make([]store.Message, len(p.Messages))
	for i, m := range p.Messages {
		if m.CreatedAt.IsZero() {
			m.CreatedAt = now
		}
		m.CreatedAt = time.UnixMicro(m.CreatedAt.UnixMicro()).UTC()
		if len(m.Content) == 0 {
			m.Content = nil
		}
		m.Content = clip(m.Content)
		msgs[i] = m
	}
	p.Messages = msgs
	if p.Create {
		if p.CreatedAt.IsZero() {
			p.CreatedAt = now
		}
		p.CreatedAt = time.UnixMicro(p.CreatedAt.UnixMicro()).UTC()
	}
	v, err := b.AppendMessages(ctx, p)
	if err != nil {
		// The entry stays: its version is checked before any use.
		return v, err
	}
	if p.Create {
		// As CreateConversation: the new conversation at version 0, which
		// the append advances.
		c.put(key{p.Tenant, p.ConversationID}, store.Conversation{ID: p.ConversationID, Tenant: p.Tenant, Agent: p.Agent,
			NextSeq: 1, CreatedAt: p.CreatedAt})
	}
	c.advance(key{p.Tenant, p.ConversationID}, p.ExpectedVersion, v, msgs, p.TrimBeforeSeq)
	return v, nil
}

// Creator creates conversations (the store).
type Creator interface {
	CreateConversation(ctx context.Context, p store.CreateConversationParams) (store.Conversation, error)
}

// CreateConversation is b.CreateConversation; the new, empty conversation
// is cached at version 0, so that its first turn's append leaves its
// history warm on this instance.
func (c *Cache) CreateConversation(ctx context.Context, b Creator, p store.CreateConversationParams) (store.Conversation, error) {
	conv, err := b.CreateConversation(ctx, p)
	if err != nil || c == nil || c.max <= 0 {
		return conv, err
	}
	if conv.Version == 0 && conv.NextSeq == 1 && len(conv.Messages) == 0 {
		c.put(key{conv.Tenant, conv.ID}, conv)
	}
	return conv, nil
}

// DeleteConversation is b.DeleteConversation; the entry goes either way.
func (c *Cache) DeleteConversation(ctx context.Context, b Backend, tenant, id string) error {
	err := b.DeleteConversation(ctx, tenant, id)
	if c != nil {
		c.remove(key{tenant, id})
	}
	return err
}

func (c *Cache) lookup(k key) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		return el.Value.(*entry)
	}
	return nil
}

// hit counts a hit and marks e most recently used (if still cached).
func (c *Cache) hit(k key, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Hits++
	if el, ok := c.items[k]; ok && el.Value.(*entry) == e {
		c.ll.MoveToFront(el)
	}
	if c.metrics != nil {
		c.metrics.Hits.Inc()
	}
}

func (c *Cache) miss() {
	c.mu.Lock()
	c.stats.Misses++
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.Misses.Inc()
	}
}

func (c *Cache) readBytes(n int64) {
	c.mu.Lock()
	c.stats.StoreReadBytes += n
	c.mu.Unlock()
	if c.metrics != nil {
		c.metrics.StoreReadBytes.Add(float64(n))
	}
}

// put caches conv as read from the store, unless the cache holds a newer
// version of the same conversation (a concurrent append advanced it).
func (c *Cache) put(k key, conv store.Conversation) {
	msgs := slices.Clone(conv.Messages)
	for i := range msgs {
		msgs[i].Content = clip(msgs[i].Content)
	}
	e := &entry{key: k, createdAt: conv.CreatedAt, version: conv.Version, nextSeq: conv.NextSeq, msgs: msgs}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		old := el.Value.(*entry)
		if old.createdAt.Equal(e.createdAt) && old.version > e.version {
			return
		}
	}
	c.store(e)
}

// advance applies a successful append on version from to the entry at
// that version: trim(messages ++ new ones numbered from nextSeq).
func (c *Cache) advance(k key, from, to int64, added []store.Message, trimBefore int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return
	}
	old := el.Value.(*entry)
	if old.version != from || old.nextSeq <= 0 || to != from+1 {
		if old.version <= from {
			c.unlink(el) // behind the store: of no further use
		}
		return
	}
	var msgs []store.Message
	for _, m := range old.msgs {
		if m.Seq >= trimBefore {
			msgs = append(msgs, m)
		}
	}
	seq := old.nextSeq
	for _, m := range added {
		m.Seq = seq
		seq++
		if m.Seq >= trimBefore {
			msgs = append(msgs, m)
		}
	}
	c.store(&entry{key: k, createdAt: old.createdAt, version: to, nextSeq: seq, msgs: msgs})
}

// store inserts or replaces e's key, then evicts to the bound. Called with
// mu held.
func (c *Cache) store(e *entry) {
	e.size = entryOverhead + int64(len(e.key.tenant)+len(e.key.id)) + messagesSize(e.msgs)
	if el, ok := c.items[e.key]; ok {
		c.unlink(el)
	}
	if e.size > c.max {
		c.setBytes()
		return // would evict everything else and still not fit
	}
	c.items[e.key] = c.ll.PushFront(e)
	c.size += e.size
	for c.size > c.max {
		c.unlink(c.ll.Back())
		c.stats.Evictions++
		if c.metrics != nil {
			c.metrics.Evictions.Inc()
		}
	}
	c.setBytes()
}

func (c *Cache) remove(k key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.unlink(el)
		c.setBytes()
	}
}

// unlink drops an element. Called with mu held.
func (c *Cache) unlink(el *list.Element) {
	e := c.ll.Remove(el).(*entry)
	delete(c.items, e.key)
	c.size -= e.size
}

func (c *Cache) setBytes() {
	if c.metrics != nil {
		c.metrics.Bytes.Set(float64(c.size))
	}
}

func headSize(h store.Conversation) int64 {
	return int64(len(h.ID)+len(h.Tenant)+len(h.Agent)) + headBytes
}

func messagesSize(msgs []store.Message) int64 {
	var n int64
	for _, m := range msgs {
		n += messageOverhead + int64(len(m.Role)+len(m.Content))
	}
	return n
}

// readSize is what reading msgs from the store transfers, roughly: the
// columns' bytes, without the protocol's framing.
func readSize(msgs []store.Message) int64 {
	var n int64
	for _, m := range msgs {
		n += messageReadBytes + int64(len(m.Role)+len(m.Content))
	}
	return n
}

// clip caps b's capacity at its length: an append by a holder of a cached
// message's content copies instead of writing into the shared array.
func clip(b []byte) []byte { return b[:len(b):len(b)] }
