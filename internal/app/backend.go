package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// Store is what agentd needs of a store backend.
type Store interface {
	store.Store
	store.RunLeases
	store.Audit
	store.Usage
	store.Budgets
	store.APIKeys
	store.Retention
	store.Managed
	store.Approvals
	store.Feedback
	store.ConversationHeads
	store.SDKSessions
	store.AgentDefinitions
	SchemaVersion(ctx context.Context) (int, error)
}

// Backend is the store, queue and event hub one store URL selects.
// OpenBackend is the one place the URL picks them: business code never
// branches on the backend.
type Backend struct {
	// URL is the parsed store URL.
	URL   config.StoreURL
	Store Store
	Hub   events.Hub
	// NewQueue builds the run queue on the store's database (migrating
	// River's tables).
	NewQueue func(ctx context.Context, cfg queue.Config) (queue.Queue, error)
	// Actors are background loops the backend needs (e.g. LISTEN), by
	// name; they run until their context ends.
	Actors map[string]func(context.Context) error
}

// Close closes the store, once the event hub has sent what it holds
// (events.Postgres.Flush; at most 2 s).
func (b *Backend) Close() error {
	if f, ok := b.Hub.(interface{ Flush(context.Context) }); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		f.Flush(ctx)
		cancel()
	}
	return b.Store.Close()
}

// OpenBackend opens the store named by rawURL (not migrated: call
// Store.Migrate) with its queue and event hub.
func OpenBackend(ctx context.Context, rawURL string, log *slog.Logger) (*Backend, error) {
	return openBackend(ctx, rawURL, log, nil)
}

// openBackend is OpenBackend with the store's circuit breaker b (nil: none)
// in front of the store's statements (sqlstore.Guard).
func openBackend(ctx context.Context, rawURL string, log *slog.Logger, b *breaker.Breaker) (*Backend, error) {
	u, err := config.ParseStoreURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	switch u.Driver {
	case config.StorePostgres:
		st, err := postgres.OpenGuarded(ctx, u.Raw, b)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", u, err)
		}
		hub := events.NewPostgres(st.Pool(), log.With("component", "events"))
		return &Backend{
			URL:   u,
			Store: st,
			Hub:   hub,
			NewQueue: func(ctx context.Context, cfg queue.Config) (queue.Queue, error) {
				return queue.NewPostgres(ctx, st, cfg)
			},
			Actors: map[string]func(context.Context) error{"event-listener": hub.Run},
		}, nil
	default: // config.StoreSQLite
		st, err := sqlite.OpenGuarded(ctx, u.Path, b)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", u.Raw, err)
		}
		return &Backend{
			URL:   u,
			Store: st,
			Hub:   events.NewLocal(),
			NewQueue: func(ctx context.Context, cfg queue.Config) (queue.Queue, error) {
				return queue.NewSQLite(ctx, st, cfg)
			},
		}, nil
	}
}
