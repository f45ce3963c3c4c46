package app

import (
	"context"

	"github.com/agentd/agentd/internal/convcache"
	"github.com/agentd/agentd/internal/store"
)

// cachedStore is the store as chat and runs see it: conversation reads go
// through the per-instance conversation cache (sessions.cache_bytes,
// internal/convcache), everything else straight to the store.
type cachedStore struct {
	Store
	cache *convcache.Cache
}

func (s cachedStore) GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	return s.cache.GetConversation(ctx, s.Store, tenant, id)
}

func (s cachedStore) AppendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	return s.cache.AppendMessages(ctx, s.Store, p)
}

func (s cachedStore) DeleteConversation(ctx context.Context, tenant, id string) error {
	return s.cache.DeleteConversation(ctx, s.Store, tenant, id)
}

func (s cachedStore) CreateConversation(ctx context.Context, p store.CreateConversationParams) (store.Conversation, error) {
	return s.cache.CreateConversation(ctx, s.Store, p)
}
