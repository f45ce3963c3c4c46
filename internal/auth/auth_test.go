package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

type fakeKeys map[string]store.APIKey

func (f fakeKeys) GetAPIKeyByHash(_ context.Context, hash string) (store.APIKey, error) {
	if k, ok := f[hash]; ok {
		return k, nil
	}
	if hash == "" {
		return store.APIKey{}, errors.New("boom")
	}
	return store.APIKey{}, store.ErrNotFound
}

func TestNewKey(t *testing.T) {
	k, err := NewKey()
	require.NoError(t, err)
	require.Regexp(t, `^agd_[a-z2-7]{52}$`, k.Token)
	require.Equal(t, k.Token[:12], k.Prefix)
	require.Equal(t, Hash(k.Token), k.Hash)
	require.Len(t, k.Hash, 64)
	require.Regexp(t, `^key_[0-9a-f]{16}$`, k.ID)
	k2, err := NewKey()
	require.NoError(t, err)
	require.NotEqual(t, k.Token, k2.Token)
}

func TestParseScopes(t *testing.T) {
	got, err := ParseScopes(" runs, chat ")
	require.NoError(t, err)
	require.Equal(t, []string{"runs", "chat"}, got)
	for _, bad := range []string{"", ",", "chat,chat", "root"} {
		_, err := ParseScopes(bad)
		require.Error(t, err, bad)
	}
}

func TestTokenFrom(t *testing.T) {
	require.Equal(t, "agd_x", TokenFrom("Bearer agd_x", ""))
	require.Equal(t, "agd_y", TokenFrom("", "agd_y"))
	require.Equal(t, "agd_y", TokenFrom("Basic abc", "agd_y"))
	require.Empty(t, TokenFrom("", ""))
}

func TestAuthenticate(t *testing.T) {
	ctx := t.Context()
	live, _ := NewKey()
	revoked, _ := NewKey()
	keys := fakeKeys{
		live.Hash:    {ID: live.ID, Prefix: live.Prefix, Hash: live.Hash, Tenant: "acme", Scopes: []string{ScopeChat}},
		revoked.Hash: {ID: revoked.ID, Prefix: revoked.Prefix, Hash: revoked.Hash, Tenant: "acme", Scopes: []string{ScopeChat}, RevokedAt: time.Now()},
	}
	a := &Authenticator{Keys: keys}
	p, err := a.Authenticate(ctx, live.Token)
	require.NoError(t, err)
	require.Equal(t, Principal{Tenant: "acme", KeyID: live.ID, KeyPrefix: live.Prefix, Scopes: []string{ScopeChat}}, p)
	require.True(t, p.Has(ScopeChat))
	require.False(t, p.Has(ScopeRuns))
	require.True(t, Principal{Scopes: []string{ScopeAdmin}}.HasAny(ScopeRuns))

	_, err = a.Authenticate(ctx, "")
	require.ErrorIs(t, err, ErrNoKey)
	for _, tok := range []string{revoked.Token, "agd_unknown", "sk-other", "agd_" + strings.Repeat("a", 300)} {
		_, err = a.Authenticate(ctx, tok)
		require.ErrorIs(t, err, ErrInvalidKey, tok)
	}
}
