package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

var _ store.APIKeys = (*Store)(nil)

const (
	apiKeyColumns  = `id, prefix, key_hash, tenant, scopes, name, created_at, revoked_at`
	qCreateAPIKey  = `INSERT INTO api_keys (` + apiKeyColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)`
	qGetAPIKeyHash = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE key_hash = ?`
	qListAPIKeys   = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE (? = '' OR tenant = ?) ORDER BY created_at, id`
	qRevokeAPIKey  = `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? OR prefix = ?
		RETURNING ` + apiKeyColumns
)

// CreateAPIKey inserts an API key (see store.APIKeys).
func (s *Store) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	st, err := s.wstmt.get(ctx, qCreateAPIKey)
	if err == nil {
		_, err = st.ExecContext(ctx, k.ID, k.Prefix, k.Hash, k.Tenant, strings.Join(k.Scopes, ","), k.Name, toMicros(k.CreatedAt))
	}
	if err != nil {
		return fmt.Errorf("sqlite: create api key %s: %w", k.Prefix, mapErr(err))
	}
	return nil
}

// GetAPIKeyByHash returns the key with that hash (see store.APIKeys).
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	st, err := s.rstmt.get(ctx, qGetAPIKeyHash)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: get api key: %w", err)
	}
	k, err := scanAPIKey(st.QueryRowContext(ctx, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: get api key: %w", mapErr(err))
	}
	return k, nil
}

// ListAPIKeys returns the tenant's keys, or all (see store.APIKeys).
func (s *Store) ListAPIKeys(ctx context.Context, tenant string) ([]store.APIKey, error) {
	st, err := s.rstmt.get(ctx, qListAPIKeys)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list api keys: %w", err)
	}
	rows, err := st.QueryContext(ctx, tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list api keys: %w", err)
	}
	defer rows.Close()
	out := []store.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list api keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes a key by id or prefix (see store.APIKeys).
func (s *Store) RevokeAPIKey(ctx context.Context, idOrPrefix string, at time.Time) (store.APIKey, error) {
	if at.IsZero() {
		at = now()
	}
	st, err := s.wstmt.get(ctx, qRevokeAPIKey)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: revoke api key %s: %w", idOrPrefix, err)
	}
	k, err := scanAPIKey(st.QueryRowContext(ctx, toMicros(at), idOrPrefix, idOrPrefix))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: revoke api key %s: %w", idOrPrefix, mapErr(err))
	}
	return k, nil
}

func scanAPIKey(row interface{ Scan(...any) error }) (store.APIKey, error) {
	var (
		k                  store.APIKey
		scopes             string
		created, revokedAt sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.Prefix, &k.Hash, &k.Tenant, &scopes, &k.Name, &created, &revokedAt); err != nil {
		return store.APIKey{}, err
	}
	k.Scopes = splitScopes(scopes)
	k.CreatedAt = fromMicros(created)
	k.RevokedAt = fromMicros(revokedAt)
	return k, nil
}

func splitScopes(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
