package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.APIKeys the suite pins down beyond its doc comments:
//   - every backend implements store.APIKeys;
//   - scopes round-trip in order; CreatedAt to the microsecond in UTC, a
//     zero one is set to now; RevokedAt is zero until revoked;
//   - id, prefix and hash are each unique (ErrConflict);
//   - revoking twice keeps the first RevokedAt.

func exerciseAPIKeys[TTx any](t *testing.T, setup setupFunc[TTx]) {
	keys := func(t *testing.T, s Store[TTx]) store.APIKeys {
		t.Helper()
		k, ok := s.(store.APIKeys)
		require.True(t, ok, "%T does not implement store.APIKeys", s)
		return k
	}
	newKey := func(tenant string, scopes ...string) store.APIKey {
		id := newID("key")
		return store.APIKey{ID: id, Prefix: "agd_" + id[4:12], Hash: newID("hash"), Tenant: tenant,
			Scopes: scopes, Name: "n-" + id}
	}
	t0 := at("2025-06-01T10:00:00.123456Z")

	t.Run("CreateGetList", func(t *testing.T) {
		s, ctx := setup(t)
		ks := keys(t, s)
		a := newKey("t1", "chat", "runs")
		a.CreatedAt = t0
		b := newKey("t1", "admin")
		b.CreatedAt = t0.Add(time.Second)
		b.Name = ""
		c := newKey("t2", "chat")
		before := time.Now()
		for _, k := range []store.APIKey{a, b, c} {
			require.NoError(t, ks.CreateAPIKey(ctx, k))
		}
		after := time.Now()

		got, err := ks.GetAPIKeyByHash(ctx, a.Hash)
		require.NoError(t, err)
		want := a
		want.CreatedAt = utc(a.CreatedAt)
		require.Equal(t, want, got)
		require.True(t, got.RevokedAt.IsZero())

		gotC, err := ks.GetAPIKeyByHash(ctx, c.Hash)
		require.NoError(t, err)
		requireRecent(t, before, after, gotC.CreatedAt)

		_, err = ks.GetAPIKeyByHash(ctx, "nope")
		require.ErrorIs(t, err, store.ErrNotFound)

		list, err := ks.ListAPIKeys(ctx, "t1")
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, a.ID, list[0].ID)
		require.Equal(t, b.ID, list[1].ID)
		require.Equal(t, []string{"admin"}, list[1].Scopes)

		all, err := ks.ListAPIKeys(ctx, "")
		require.NoError(t, err)
		ids := map[string]bool{}
		for _, k := range all {
			ids[k.ID] = true
		}
		require.True(t, ids[a.ID] && ids[b.ID] && ids[c.ID], "all tenants listed")

		none, err := ks.ListAPIKeys(ctx, "nobody")
		require.NoError(t, err)
		require.NotNil(t, none)
		require.Empty(t, none)
	})

	t.Run("Unique", func(t *testing.T) {
		s, ctx := setup(t)
		ks := keys(t, s)
		a := newKey("t1", "chat")
		require.NoError(t, ks.CreateAPIKey(ctx, a))
		for name, mut := range map[string]func(k *store.APIKey){
			"id":     func(k *store.APIKey) { k.ID = a.ID },
			"prefix": func(k *store.APIKey) { k.Prefix = a.Prefix },
			"hash":   func(k *store.APIKey) { k.Hash = a.Hash },
		} {
			k := newKey("t2", "runs")
			mut(&k)
			err := ks.CreateAPIKey(ctx, k)
			require.ErrorIs(t, err, store.ErrConflict, name)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		s, ctx := setup(t)
		ks := keys(t, s)
		a, b := newKey("t1", "chat"), newKey("t1", "runs")
		require.NoError(t, ks.CreateAPIKey(ctx, a))
		require.NoError(t, ks.CreateAPIKey(ctx, b))

		r, err := ks.RevokeAPIKey(ctx, a.Prefix, t0)
		require.NoError(t, err)
		require.Equal(t, a.ID, r.ID)
		require.Equal(t, utc(t0), r.RevokedAt)
		got, err := ks.GetAPIKeyByHash(ctx, a.Hash)
		require.NoError(t, err)
		require.Equal(t, utc(t0), got.RevokedAt)

		// Again, by id: the first time stays.
		r, err = ks.RevokeAPIKey(ctx, a.ID, t0.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, utc(t0), r.RevokedAt)

		// The other key is untouched.
		got, err = ks.GetAPIKeyByHash(ctx, b.Hash)
		require.NoError(t, err)
		require.True(t, got.RevokedAt.IsZero())

		_, err = ks.RevokeAPIKey(ctx, "agd_missing", t0)
		require.True(t, errors.Is(err, store.ErrNotFound), "%v", err)
	})
}
