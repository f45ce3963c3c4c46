package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentd/agentd/internal/queue"
)

// Migrate brings the schema of the store at storeURL up to date, River's
// tables included, and returns the store's schema version.
func Migrate(ctx context.Context, storeURL string, log *slog.Logger) (int, error) {
	be, err := OpenBackend(ctx, storeURL, log)
	if err != nil {
		return 0, err
	}
	defer be.Close()
	if err := be.Store.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, err := be.Store.SchemaVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	// River's tables: building the queue migrates them.
	if _, err := be.NewQueue(ctx, queue.Config{Log: log}); err != nil {
		return 0, fmt.Errorf("migrate queue: %w", err)
	}
	return v, nil
}
