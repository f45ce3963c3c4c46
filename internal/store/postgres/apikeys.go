package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentd/agentd/internal/store"
)

var _ store.APIKeys = (*Store)(nil)

const (
	apiKeyColumns  = `id, prefix, key_hash, tenant, scopes, name, created_at, revoked_at`
	qCreateAPIKey  = `INSERT INTO api_keys (` + apiKeyColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`
	qGetAPIKeyHash = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE key_hash = $1`
	qListAPIKeys   = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE ($1 = '' OR tenant = $1) ORDER BY created_at, id`
	qRevokeAPIKey  = `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 OR prefix = $2
		RETURNING ` + apiKeyColumns
)

// CreateAPIKey inserts an API key (see store.APIKeys).
func (s *Store) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	_, err := s.pool.Exec(ctx, qCreateAPIKey, k.ID, k.Prefix, k.Hash, k.Tenant, strings.Join(k.Scopes, ","), k.Name, normTime(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: create api key %s: %w", k.Prefix, mapErr(err))
	}
	return nil
}

// GetAPIKeyByHash returns the key with that hash (see store.APIKeys).
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	k, err := scanAPIKey(s.pool.QueryRow(ctx, qGetAPIKeyHash, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("postgres: get api key: %w", mapErr(err))
	}
	return k, nil
}

// ListAPIKeys returns the tenant's keys, or all (see store.APIKeys).
func (s *Store) ListAPIKeys(ctx context.Context, tenant string) ([]store.APIKey, error) {
	rows, err := s.pool.Query(ctx, qListAPIKeys, tenant)
	if err != nil {
		return nil, fmt.Errorf("postgres: list api keys: %w", err)
	}
	defer rows.Close()
	out := []store.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list api keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes a key by id or prefix (see store.APIKeys).
func (s *Store) RevokeAPIKey(ctx context.Context, idOrPrefix string, at time.Time) (store.APIKey, error) {
	if at.IsZero() {
		at = now()
	}
	k, err := scanAPIKey(s.pool.QueryRow(ctx, qRevokeAPIKey, normTime(at), idOrPrefix))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("postgres: revoke api key %s: %w", idOrPrefix, mapErr(err))
	}
	return k, nil
}

func scanAPIKey(row interface{ Scan(...any) error }) (store.APIKey, error) {
	var (
		k                  store.APIKey
		scopes             string
		created, revokedAt pgtype.Timestamptz
	)
	if err := row.Scan(&k.ID, &k.Prefix, &k.Hash, &k.Tenant, &scopes, &k.Name, &created, &revokedAt); err != nil {
		return store.APIKey{}, err
	}
	k.Scopes = []string{}
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	k.CreatedAt = fromTime(created)
	k.RevokedAt = fromTime(revokedAt)
	return k, nil
}
