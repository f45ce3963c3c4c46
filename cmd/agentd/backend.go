package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/queue"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// backendStore is what agentd needs of a store backend.
type backendStore interface {
	store.Store
	store.RunLeases
	store.Audit
	store.Usage
	store.Budgets
	SchemaVersion(ctx context.Context) (int, error)
}

// backend is the one place where the store URL picks the implementations:
// store, queue and event hub. Business code never branches on it.
type backend struct {
	Store backendStore
	Hub   events.Hub
	// NewQueue builds the run queue on the store's database.
	NewQueue func(ctx context.Context, cfg queue.Config) (queue.Queue, error)
	// Actors are background loops the backend needs (e.g. LISTEN).
	Actors map[string]func(context.Context) error
}

// openBackend opens the store named by url (not migrated).
func openBackend(ctx context.Context, rawURL string, log *slog.Logger) (*backend, error) {
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		st, err := postgres.Open(ctx, rawURL)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", redactURL(rawURL), err)
		}
		hub := events.NewPostgres(st.Pool(), log.With("component", "events"))
		return &backend{
			Store: st,
			Hub:   hub,
			NewQueue: func(ctx context.Context, cfg queue.Config) (queue.Queue, error) {
				return queue.NewPostgres(ctx, st, cfg)
			},
			Actors: map[string]func(context.Context) error{"event-listener": hub.Run},
		}, nil
	}
	path, err := sqlite.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", rawURL, err)
	}
	return &backend{
		Store: st,
		Hub:   events.NewLocal(),
		NewQueue: func(ctx context.Context, cfg queue.Config) (queue.Queue, error) {
			return queue.NewSQLite(ctx, st, cfg)
		},
	}, nil
}

// redactURL hides a password in a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
