package auth

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// conflictKeys is a store.APIKeys that refuses the first conflicts creates.
type conflictKeys struct {
	store.APIKeys
	conflicts int
	created   []store.APIKey
}

func (f *conflictKeys) CreateAPIKey(_ context.Context, k store.APIKey) error {
	if f.conflicts > 0 {
		f.conflicts--
		return store.ErrConflict
	}
	f.created = append(f.created, k)
	return nil
}

func (f *conflictKeys) RevokeAPIKey(_ context.Context, idOrPrefix string, _ time.Time) (store.APIKey, error) {
	return store.APIKey{}, store.ErrNotFound
}

func TestCreateKeyRetriesPrefixCollisions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := &conflictKeys{conflicts: 2}
	k, err := CreateKey(ctx, f, CreateParams{Tenant: "acme", Scopes: []string{ScopeChat}, Name: "ci"})
	require.NoError(t, err)
	require.Len(t, f.created, 1)
	got := f.created[0]
	require.Equal(t, Hash(k.Token), got.Hash, "only the hash is stored")
	require.Equal(t, "acme", got.Tenant)
	require.Equal(t, []string{ScopeChat}, got.Scopes)
	require.Equal(t, k.Prefix, got.Prefix)

	_, err = CreateKey(ctx, &conflictKeys{conflicts: 10}, CreateParams{Tenant: "acme"})
	require.ErrorIs(t, err, store.ErrConflict, "gives up after three redraws")
}

func TestRevokeKeyNotFound(t *testing.T) {
	t.Parallel()
	_, err := RevokeKey(context.Background(), &conflictKeys{}, "agd_nope")
	require.EqualError(t, err, `no API key with id or prefix "agd_nope"`)
}

func TestWriteKeyTable(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	require.NoError(t, WriteKeyTable(&b, []store.APIKey{
		{ID: "k1", Prefix: "agd_aaaa", Tenant: "acme", Scopes: []string{"chat", "runs"}, CreatedAt: created},
		{ID: "k2", Prefix: "agd_bbbb", Tenant: "beta", Name: "ci", Hash: "secret-hash", CreatedAt: created, RevokedAt: created},
	}))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^PREFIX\s+ID\s+TENANT\s+SCOPES\s+NAME\s+CREATED\s+REVOKED$`, lines[0])
	require.Regexp(t, `^agd_aaaa\s+k1\s+acme\s+chat,runs\s+-\s+2026-01-02T03:04:05Z\s+-$`, lines[1])
	require.Regexp(t, `^agd_bbbb\s+k2\s+beta\s+ci\s+2026-01-02T03:04:05Z\s+2026-01-02T03:04:05Z$`, lines[2])
	require.NotContains(t, b.String(), "secret-hash")
}

func TestValidTenant(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"acme", "a", "A.b_c-d", strings.Repeat("x", 64)} {
		require.True(t, ValidTenant(ok), ok)
	}
	for _, bad := range []string{"", "-acme", ".x", "a b", strings.Repeat("x", 65), "ä"} {
		require.False(t, ValidTenant(bad), bad)
	}
}
