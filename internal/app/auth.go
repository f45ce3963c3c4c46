package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store"
)

// setupAuth returns the server's authenticator for cfg.Auth (nil: off) and
// logs what it means.
func setupAuth(ctx context.Context, cfg *config.Config, keys store.APIKeys, log *slog.Logger) (*auth.Authenticator, error) {
	if cfg.Auth.Mode == config.AuthNone {
		log.Warn(cfg.AuthWarning(), "addr", cfg.Server.Addr)
		return nil, nil
	}
	list, err := keys.ListAPIKeys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("auth: list API keys: %w", err)
	}
	active := 0
	for _, k := range list {
		if k.RevokedAt.IsZero() {
			active++
		}
	}
	if active == 0 {
		log.Warn("no API keys yet: every API request will get 401; create one with: agentd keys create -config FILE -tenant NAME (or set auth.mode: none for a local demo)")
	} else {
		log.Info("authentication: API keys", "active_keys", active, "cache_ttl", cfg.Auth.CacheTTL)
	}
	return &auth.Authenticator{Keys: keys, CacheTTL: cfg.Auth.CacheTTL}, nil
}
