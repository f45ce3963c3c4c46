package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.SDKSessions the suite pins down beyond its doc
// comments:
//   - entries load back deep-equal (as JSON), in append order, across
//     batches; a key never written loads as nil;
//   - a session is tenant-scoped: the same session id in another tenant
//     is another transcript; subpaths are separate transcripts;
//   - an entry whose uuid the transcript has is ignored, entries without
//     uuid are all kept;
//   - a batch with an entry that is not a JSON object stores nothing;
//   - LatestSDKSession is the main transcript the conversation appended
//     to last, per tenant;
//   - DeleteSDKSessions deletes a tenant's session (all its subpaths) only
//     when none of its entries is newer than the cutoff;
//   - concurrent appends to one transcript lose nothing.

func exerciseSDKSessions[TTx any](t *testing.T, setup setupFunc[TTx]) {
	ss := func(t *testing.T, s Store[TTx]) store.SDKSessions {
		t.Helper()
		f, ok := s.(store.SDKSessions)
		require.True(t, ok, "%T does not implement store.SDKSessions", s)
		return f
	}
	raws := func(es ...string) []json.RawMessage {
		out := make([]json.RawMessage, len(es))
		for i, e := range es {
			out[i] = json.RawMessage(e)
		}
		return out
	}
	requireEntries := func(t *testing.T, want []string, got []json.RawMessage) {
		t.Helper()
		require.Len(t, got, len(want))
		for i := range want {
			require.JSONEq(t, want[i], string(got[i]), "entry %d", i)
		}
	}

	t.Run("AppendLoadOrderDedup", func(t *testing.T) {
		s, ctx := setup(t)
		st := ss(t, s)
		tenant, sid := newID("t"), newID("sess")
		key := store.SDKSessionKey{Tenant: tenant, SessionID: sid}

		got, err := st.LoadSDKSession(ctx, key)
		require.NoError(t, err)
		require.Nil(t, got, "a key never written")

		b1 := []string{`{"type":"user","uuid":"u1","message":{"role":"user","content":"hi"}}`,
			`{"type":"assistant","uuid":"u2","message":{"content":[{"type":"text","text":"hello"}]},"n":1.5}`,
			`{"type":"custom-title","title":"x"}`}
		require.NoError(t, st.AppendSDKSession(ctx, store.SDKSessionAppend{Key: key, ConversationID: "c1", RunID: "r1", Entries: raws(b1...)}))
		// A retried batch (same uuids) and an entry without uuid again.
		b2 := []string{`{"type":"user","uuid":"u1","message":{"role":"user","content":"hi"}}`,
			`{"type":"custom-title","title":"x"}`, `{"type":"user","uuid":"u3","z":[1,2,3]}`}
		require.NoError(t, st.AppendSDKSession(ctx, store.SDKSessionAppend{Key: key, ConversationID: "c1", RunID: "r1", Entries: raws(b2...)}))
		got, err = st.LoadSDKSession(ctx, key)
		require.NoError(t, err)
		requireEntries(t, []string{b1[0], b1[1], b1[2], b2[1], b2[2]}, got)

		// Other tenant, other subpath: other transcripts.
		other, err := st.LoadSDKSession(ctx, store.SDKSessionKey{Tenant: newID("t"), SessionID: sid})
		require.NoError(t, err)
		require.Nil(t, other)
		sub := store.SDKSessionKey{Tenant: tenant, SessionID: sid, Subpath: "subagents/agent-1"}
		require.NoError(t, st.AppendSDKSession(ctx, store.SDKSessionAppend{Key: sub, Entries: raws(b1[0])}))
		got, err = st.LoadSDKSession(ctx, sub)
		require.NoError(t, err)
		requireEntries(t, []string{b1[0]}, got)
		paths, err := st.ListSDKSessionSubpaths(ctx, tenant, sid)
		require.NoError(t, err)
		require.Equal(t, []string{"subagents/agent-1"}, paths)
		paths, err = st.ListSDKSessionSubpaths(ctx, newID("t"), sid)
		require.NoError(t, err)
		require.Empty(t, paths)
		got, err = st.LoadSDKSession(ctx, key)
		require.NoError(t, err)
		require.Len(t, got, 5, "the subagent's entry is not the main transcript's")
	})

	t.Run("BadEntryStoresNothing", func(t *testing.T) {
		s, ctx := setup(t)
		st := ss(t, s)
		key := store.SDKSessionKey{Tenant: newID("t"), SessionID: newID("sess")}
		for _, bad := range []string{`[1]`, `"x"`, `null`, `{`} {
			err := st.AppendSDKSession(ctx, store.SDKSessionAppend{Key: key, Entries: raws(`{"type":"a"}`, bad)})
			require.Error(t, err, bad)
		}
		require.Error(t, st.AppendSDKSession(ctx, store.SDKSessionAppend{Key: store.SDKSessionKey{Tenant: "t"}, Entries: raws(`{}`)}))
		got, err := st.LoadSDKSession(ctx, key)
		require.NoError(t, err)
		require.Nil(t, got)
	})

	t.Run("LatestOfConversation", func(t *testing.T) {
		s, ctx := setup(t)
		st := ss(t, s)
		tenant, conv := newID("t"), newID("conv")
		id, err := st.LatestSDKSession(ctx, tenant, conv)
		require.NoError(t, err)
		require.Empty(t, id)
		s1, s2 := newID("sess"), newID("sess")
		app := func(tn, sid, sub, c string) {
			require.NoError(t, st.AppendSDKSession(ctx, store.SDKSessionAppend{
				Key: store.SDKSessionKey{Tenant: tn, SessionID: sid, Subpath: sub}, ConversationID: c, Entries: raws(`{"type":"x"}`)}))
		}
		app(tenant, s1, "", conv)
		app(tenant, s2, "", conv)
		app(tenant, s1, "subagents/a", conv) // subagent transcripts do not count
		app(newID("t"), s1, "", conv)        // nor other tenants
		app(tenant, s1, "", newID("conv"))   // nor other conversations
		id, err = st.LatestSDKSession(ctx, tenant, conv)
		require.NoError(t, err)
		require.Equal(t, s2, id)
		id, err = st.LatestSDKSession(ctx, tenant, "")
		require.NoError(t, err)
		require.Empty(t, id)
	})

	t.Run("Retention", func(t *testing.T) {
		s, ctx := setup(t)
		st := ss(t, s)
		ret, ok := s.(store.Retention)
		require.True(t, ok, "%T does not implement store.Retention", s)
		tenant, other := newID("t"), newID("t")
		live, old := newID("sess"), newID("sess")
		app := func(tn, sid, sub string) {
			require.NoError(t, st.AppendSDKSession(ctx, store.SDKSessionAppend{
				Key: store.SDKSessionKey{Tenant: tn, SessionID: sid, Subpath: sub}, Entries: raws(`{"type":"x"}`, `{"type":"y"}`)}))
		}
		app(tenant, live, "")
		app(tenant, old, "")
		app(tenant, old, "subagents/a")
		app(other, old, "")
		time.Sleep(5 * time.Millisecond)
		cutoff := time.Now()
		time.Sleep(5 * time.Millisecond)
		app(tenant, live, "subagents/b") // the live session had an append since
		app(other, old, "")              // and so had the other tenant's session of the same id

		_, err := ret.DeleteSDKSessions(ctx, cutoff, 0)
		require.Error(t, err, "limit <= 0")
		total := 0
		for {
			n, err := ret.DeleteSDKSessions(ctx, cutoff, 1)
			require.NoError(t, err)
			total += n
			if n < 1 {
				break
			}
		}
		require.Equal(t, 4, total, "the old session whole: its main and subagent transcripts")
		for _, c := range []struct {
			key  store.SDKSessionKey
			want int
		}{
			{store.SDKSessionKey{Tenant: tenant, SessionID: old}, 0},
			{store.SDKSessionKey{Tenant: tenant, SessionID: old, Subpath: "subagents/a"}, 0},
			{store.SDKSessionKey{Tenant: tenant, SessionID: live}, 2},
			{store.SDKSessionKey{Tenant: tenant, SessionID: live, Subpath: "subagents/b"}, 2},
			{store.SDKSessionKey{Tenant: other, SessionID: old}, 4},
		} {
			got, err := st.LoadSDKSession(ctx, c.key)
			require.NoError(t, err)
			require.Len(t, got, c.want, "%+v", c.key)
		}
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		s, ctx := setup(t)
		st := ss(t, s)
		key := store.SDKSessionKey{Tenant: newID("t"), SessionID: newID("sess")}
		const writers, batches = 4, 5
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range batches {
					e := fmt.Sprintf(`{"type":"x","uuid":"w%d-b%d"}`, w, b)
					if err := st.AppendSDKSession(ctx, store.SDKSessionAppend{Key: key, Entries: raws(e)}); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		got, err := st.LoadSDKSession(ctx, key)
		require.NoError(t, err)
		require.Len(t, got, writers*batches)
		// Each writer's entries in its order.
		last := map[int]int{}
		for _, e := range got {
			var v struct{ UUID string }
			require.NoError(t, json.Unmarshal(e, &v))
			var w, b int
			_, err := fmt.Sscanf(v.UUID, "w%d-b%d", &w, &b)
			require.NoError(t, err)
			if prev, ok := last[w]; ok {
				require.Greater(t, b, prev)
			}
			last[w] = b
		}
	})
}
