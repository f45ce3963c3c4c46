package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

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
		k.CreatedAt = Now()
	}
	_, err := s.db.Write.Exec(ctx, qCreateAPIKey, k.ID, k.Prefix, k.Hash, k.Tenant, strings.Join(k.Scopes, ","), k.Name, s.d.Time(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("%s: create api key %s: %w", s.d.Name, k.Prefix, s.d.MapErr(err))
	}
	return nil
}

// GetAPIKeyByHash returns the key with that hash (see store.APIKeys).
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	k, err := s.scanAPIKey(s.db.Read.QueryRow(ctx, qGetAPIKeyHash, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("%s: get api key: %w", s.d.Name, s.d.MapErr(err))
	}
	return k, nil
}

// ListAPIKeys returns the tenant's keys, or all (see store.APIKeys).
func (s *Store) ListAPIKeys(ctx context.Context, tenant string) ([]store.APIKey, error) {
	rows, err := s.db.Read.Query(ctx, qListAPIKeys, tenant)
	if err != nil {
		return nil, fmt.Errorf("%s: list api keys: %w", s.d.Name, err)
	}
	defer rows.Close()
	out := []store.APIKey{}
	for rows.Next() {
		k, err := s.scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: list api keys: %w", s.d.Name, err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list api keys: %w", s.d.Name, err)
	}
	return out, nil
}

// RevokeAPIKey revokes a key by id or prefix (see store.APIKeys).
func (s *Store) RevokeAPIKey(ctx context.Context, idOrPrefix string, at time.Time) (store.APIKey, error) {
	if at.IsZero() {
		at = Now()
	}
	k, err := s.scanAPIKey(s.db.Write.QueryRow(ctx, qRevokeAPIKey, s.d.Time(at), idOrPrefix))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("%s: revoke api key %s: %w", s.d.Name, idOrPrefix, s.d.MapErr(err))
	}
	return k, nil
}

func (s *Store) scanAPIKey(row Row) (store.APIKey, error) {
	var (
		k      store.APIKey
		scopes string
	)
	if err := row.Scan(&k.ID, &k.Prefix, &k.Hash, &k.Tenant, &scopes, &k.Name, s.d.ScanTime(&k.CreatedAt), s.d.ScanTime(&k.RevokedAt)); err != nil {
		return store.APIKey{}, err
	}
	k.Scopes = []string{}
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	return k, nil
}
