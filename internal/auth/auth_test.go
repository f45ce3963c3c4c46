package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
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

func TestCacheTTL(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAPIKey(t.Context(), store.APIKey{ID: k.ID, Prefix: k.Prefix, Hash: k.Hash, Tenant: "acme", Scopes: []string{ScopeChat}, Name: "t"}); err != nil {
		t.Fatal(err)
	}
	keys := &countingKeys{next: st}
	now := time.Now()
	a := &Authenticator{Keys: keys, CacheTTL: time.Second, Now: func() time.Time { return now }}
	for range 3 {
		if p, err := a.Authenticate(t.Context(), k.Token); err != nil || p.Tenant != "acme" {
			t.Fatalf("valid key: %v %v", p, err)
		}
	}
	if keys.lookups != 1 {
		t.Fatalf("%d lookups within the TTL, want 1", keys.lookups)
	}
	if _, err := st.RevokeAPIKey(t.Context(), k.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(t.Context(), k.Token); err != nil {
		t.Fatal("within the TTL the cached key still works (the documented price of the cache)")
	}
	now = now.Add(time.Second)
	if _, err := a.Authenticate(t.Context(), k.Token); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("after the TTL a revoked key must fail, got %v", err)
	}
	if _, err := a.Authenticate(t.Context(), k.Token); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("a revoked key is not cached, got %v", err)
	}
	if keys.lookups != 3 {
		t.Fatalf("%d lookups, want 3 (revoked keys are looked up every time)", keys.lookups)
	}
	// Without a TTL (the zero value) every request looks its key up.
	off := &Authenticator{Keys: keys}
	_, _ = off.Authenticate(t.Context(), k.Token)
	_, _ = off.Authenticate(t.Context(), k.Token)
	if keys.lookups != 5 {
		t.Fatalf("%d lookups, want 5", keys.lookups)
	}
}

// countingKeys counts the lookups that reach the store.
type countingKeys struct {
	next    KeyLookup
	lookups int
}

func (c *countingKeys) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	c.lookups++
	return c.next.GetAPIKeyByHash(ctx, hash)
}

// TestForgetKey: a key forgotten is looked up again at once (a revocation
// through this process takes effect here without waiting for the TTL);
// other keys stay cached.
func TestForgetKey(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	var keys [2]Key
	for i := range keys {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateAPIKey(t.Context(), store.APIKey{ID: k.ID, Prefix: k.Prefix, Hash: k.Hash, Tenant: "acme", Scopes: []string{ScopeChat}, Name: "t"}); err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	counting := &countingKeys{next: st}
	a := &Authenticator{Keys: counting, CacheTTL: time.Hour}
	for _, k := range keys {
		if _, err := a.Authenticate(t.Context(), k.Token); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.RevokeAPIKey(t.Context(), keys[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(t.Context(), keys[0].Token); err != nil {
		t.Fatal("still cached before ForgetKey")
	}
	a.ForgetKey(keys[0].ID)
	if _, err := a.Authenticate(t.Context(), keys[0].Token); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("a forgotten revoked key must fail at once, got %v", err)
	}
	before := counting.lookups
	if _, err := a.Authenticate(t.Context(), keys[1].Token); err != nil || counting.lookups != before {
		t.Fatalf("the other key must stay cached: err %v, lookups %d → %d", err, before, counting.lookups)
	}
}
