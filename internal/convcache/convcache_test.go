package convcache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/convcache"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// openStore opens a real, migrated, empty store of the backend.
func openStore(t testing.TB, backend string) convcache.Backend {
	t.Helper()
	ctx := context.Background()
	var (
		s interface {
			convcache.Backend
			CreateConversation(context.Context, store.CreateConversationParams) (store.Conversation, error)
			Migrate(context.Context) error
			Close() error
		}
		err error
	)
	if backend == "postgres" {
		s, err = postgres.Open(ctx, pgtest.Schema(t, pgtest.BaseURL(t), 8))
	} else {
		s, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentd.db"))
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Migrate(ctx))
	return s
}

type creator interface {
	CreateConversation(context.Context, store.CreateConversationParams) (store.Conversation, error)
}

func create(t testing.TB, b convcache.Backend, tenant, id string) {
	t.Helper()
	_, err := b.(creator).CreateConversation(context.Background(), store.CreateConversationParams{ID: id, Tenant: tenant, Agent: "a"})
	require.NoError(t, err)
}

func text(s string) json.RawMessage {
	b, _ := json.Marshal([]map[string]string{{"type": "text", "text": s}})
	return b
}

// turn appends a user and an assistant message through c, on the version
// the caller read.
func turn(t *testing.T, c *convcache.Cache, b convcache.Backend, tenant, id string, version int64, n int, trim int64) int64 {
	t.Helper()
	v, err := c.AppendMessages(context.Background(), b, store.AppendMessagesParams{
		ConversationID: id, Tenant: tenant, ExpectedVersion: version, TrimBeforeSeq: trim,
		Messages: []store.Message{
			{Role: "user", Content: text(fmt.Sprintf("question %d", n))},
			{Role: "assistant", Content: text(fmt.Sprintf("answer %d", n)), Tokens: int64(n)},
		},
	})
	require.NoError(t, err)
	return v
}

// requireFresh reads through c and requires exactly what the store holds.
func requireFresh(t *testing.T, c *convcache.Cache, b convcache.Backend, tenant, id string) store.Conversation {
	t.Helper()
	ctx := context.Background()
	got, err := c.GetConversation(ctx, b, tenant, id)
	require.NoError(t, err)
	want, err := b.GetConversation(ctx, tenant, id)
	require.NoError(t, err)
	require.Equal(t, want, got, "the cache served something else than the store holds")
	return got
}

// TestServesWhatTheStoreHolds: turns on one instance are hits after the
// first read, and every read equals the store's, byte for byte, also
// across trims.
func TestServesWhatTheStoreHolds(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := openStore(t, backend)
		c := convcache.New(1<<20, nil)
		create(t, b, "t1", "conv1")
		conv := requireFresh(t, c, b, "t1", "conv1") // miss: first read
		for n := 1; n <= 12; n++ {
			var trim int64
			if n%4 == 0 {
				trim = conv.NextSeq - 4 // keep the last two turns
			}
			turn(t, c, b, "t1", "conv1", conv.Version, n, trim)
			conv = requireFresh(t, c, b, "t1", "conv1")
			require.Equal(t, int64(n), conv.Version)
		}
		st := c.Stats()
		require.Equal(t, int64(12), st.Hits, "every turn after the first read is a hit")
		require.Equal(t, int64(1), st.Misses)
		require.Equal(t, 1, st.Entries)
	})
}

// TestAnotherInstanceBumpsTheVersion: two caches (two instances) on one
// store alternate turns: every read is the store's, none is stale, and
// each instance misses exactly when the other one wrote last.
func TestAnotherInstanceBumpsTheVersion(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := openStore(t, backend)
		caches := []*convcache.Cache{convcache.New(1<<20, nil), convcache.New(1<<20, nil)}
		create(t, b, "t1", "conv1")
		for n := range 10 {
			c := caches[n%2]
			conv := requireFresh(t, c, b, "t1", "conv1")
			require.Len(t, conv.Messages, 2*n)
			turn(t, c, b, "t1", "conv1", conv.Version, n, 0)
		}
		for _, c := range caches {
			st := c.Stats()
			require.Equal(t, int64(0), st.Hits)
			require.Equal(t, int64(5), st.Misses)
		}
		// Two turns on the same instance: the second read hits.
		conv := requireFresh(t, caches[0], b, "t1", "conv1") // miss: [1] wrote last
		turn(t, caches[0], b, "t1", "conv1", conv.Version, 10, 0)
		requireFresh(t, caches[0], b, "t1", "conv1")
		require.Equal(t, int64(1), caches[0].Stats().Hits)
	})
}

// TestDeleteTenantsAndRecreate: a deleted conversation is not served; one
// created again with the same id and brought to the cached version is not
// mistaken for the old one; another tenant never sees a cached entry.
func TestDeleteTenantsAndRecreate(t *testing.T) {
	t.Run("DeleteAndTenants", func(t *testing.T) {
		t.Parallel()
		pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
			ctx := context.Background()
			b := openStore(t, backend)
			c := convcache.New(1<<20, nil)
			create(t, b, "t1", "conv1")
			turn(t, c, b, "t1", "conv1", 0, 1, 0)
			requireFresh(t, c, b, "t1", "conv1")

			_, err := c.GetConversation(ctx, b, "t2", "conv1")
			require.ErrorIs(t, err, store.ErrNotFound, "another tenant")

			// Deleted behind the cache's back (another instance, the sweeper).
			require.NoError(t, b.DeleteConversation(ctx, "t1", "conv1"))
			_, err = c.GetConversation(ctx, b, "t1", "conv1")
			require.ErrorIs(t, err, store.ErrNotFound)
			require.Zero(t, c.Stats().Entries, "the entry of a deleted conversation goes")
		})
	})
	t.Run("Recreate", func(t *testing.T) {
		t.Parallel()
		pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
			ctx := context.Background()
			b := openStore(t, backend)
			c := convcache.New(1<<20, nil)
			create(t, b, "t1", "conv1")
			turn(t, c, b, "t1", "conv1", 0, 1, 0)
			requireFresh(t, c, b, "t1", "conv1")
			// The cache holds version 1; deleted and created again elsewhere,
			// the new conversation reaches version 1 with other messages.
			require.NoError(t, b.DeleteConversation(ctx, "t1", "conv1"))
			create(t, b, "t1", "conv1")
			_, err := b.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "conv1", Tenant: "t1", ExpectedVersion: 0,
				Messages: []store.Message{{Role: "user", Content: text("a new conversation")}}})
			require.NoError(t, err)
			got := requireFresh(t, c, b, "t1", "conv1")
			require.Len(t, got.Messages, 1)

			// Deleted through the cache: the entry goes.
			require.NoError(t, c.DeleteConversation(ctx, b, "t1", "conv1"))
			require.Zero(t, c.Stats().Entries)
		})
	})
}

// TestByteBound: the cache never holds more than its bound, evicts the
// least recently used first, and does not keep an entry larger than the
// bound.
func TestByteBound(t *testing.T) {
	b := openStore(t, "sqlite")
	ctx := context.Background()
	const convs = 8
	for i := range convs {
		id := "conv" + strconv.Itoa(i)
		create(t, b, "t1", id)
		_, err := b.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: id, Tenant: "t1",
			Messages: []store.Message{{Role: "user", Content: text(string(make([]byte, 1000)))}}})
		require.NoError(t, err)
	}
	one := convcache.New(1<<20, nil)
	requireFresh(t, one, b, "t1", "conv0")
	size := one.Stats().Bytes
	require.Greater(t, size, int64(1000))

	c := convcache.New(3*size, nil) // room for three
	read := func(i int) { requireFresh(t, c, b, "t1", "conv"+strconv.Itoa(i)) }
	expect := func(hits, misses, evictions int64) {
		t.Helper()
		st := c.Stats()
		require.Equal(t, [3]int64{hits, misses, evictions}, [3]int64{st.Hits, st.Misses, st.Evictions}, "hits, misses, evictions")
		require.LessOrEqual(t, st.Bytes, 3*size)
	}
	read(0)
	read(1)
	read(2)
	expect(0, 3, 0)
	read(0) // hit: conv0 is the most recently used now, conv1 the least
	expect(1, 3, 0)
	read(3) // evicts conv1
	expect(1, 4, 1)
	read(0)
	read(2)
	read(3)
	expect(4, 4, 1)
	read(1) // a miss (evicted); evicts conv0, the least recently used
	expect(4, 5, 2)
	read(0)
	expect(4, 6, 3)
	require.Equal(t, 3, c.Stats().Entries)
	require.Equal(t, 3*size, c.Stats().Bytes)

	tiny := convcache.New(size-1, nil)
	requireFresh(t, tiny, b, "t1", "conv0")
	requireFresh(t, tiny, b, "t1", "conv0")
	require.Zero(t, tiny.Stats().Entries, "an entry over the bound is not kept")
	require.Zero(t, tiny.Stats().Hits)
	require.Zero(t, tiny.Stats().Bytes)

	off := convcache.New(0, nil)
	requireFresh(t, off, b, "t1", "conv0")
	requireFresh(t, off, b, "t1", "conv0")
	require.Equal(t, convcache.Stats{Misses: 2, StoreReadBytes: off.Stats().StoreReadBytes}, off.Stats())
	require.Greater(t, off.Stats().StoreReadBytes, int64(2000), "off still counts the bytes read")
}

// TestConcurrentTurns (run with -race): writers on several instances' caches
// race to append to the same conversations; every read is a consistent
// history (message i of a version-v history is turn i, and there are
// exactly v turns), whoever wrote last.
func TestConcurrentTurns(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		b := openStore(t, backend)
		caches := []*convcache.Cache{convcache.New(1<<20, nil), convcache.New(1<<20, nil)}
		const convs, workers, turns = 3, 6, 15
		for i := range convs {
			create(t, b, "t1", "conv"+strconv.Itoa(i))
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := caches[w%2]
				id := "conv" + strconv.Itoa(w%convs)
				for done := 0; done < turns; {
					conv, err := c.GetConversation(ctx, b, "t1", id)
					if !assertConsistent(t, conv, err) {
						return
					}
					_, err = c.AppendMessages(ctx, b, store.AppendMessagesParams{ConversationID: id, Tenant: "t1",
						ExpectedVersion: conv.Version,
						Messages:        []store.Message{{Role: "user", Content: text(strconv.FormatInt(conv.Version+1, 10))}}})
					if err == nil {
						done++
					} else if !assertConflict(t, err) {
						return
					}
				}
			}()
		}
		wg.Wait()
		for i := range convs {
			for _, c := range caches {
				conv := requireFresh(t, c, b, "t1", "conv"+strconv.Itoa(i))
				require.Equal(t, int64(workers/convs*turns), conv.Version)
			}
		}
	})
}

func assertConsistent(t *testing.T, conv store.Conversation, err error) bool {
	if !assertNoError(t, err) {
		return false
	}
	ok := int64(len(conv.Messages)) == conv.Version
	for i, m := range conv.Messages {
		ok = ok && string(m.Content) == string(text(strconv.Itoa(i+1))) && m.Seq == int64(i+1)
	}
	if !ok {
		t.Errorf("inconsistent history at version %d: %d messages", conv.Version, len(conv.Messages))
	}
	return ok
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("read: %v", err)
		return false
	}
	return true
}

func errorsIsConflict(err error) bool { return errors.Is(err, store.ErrConflict) }

func assertConflict(t *testing.T, err error) bool {
	if !errorsIsConflict(err) {
		t.Errorf("append: %v", err)
		return false
	}
	return true
}

// TestCreatedWarm: a conversation created through the cache is cached at
// version 0, so its first turn leaves it warm: the second turn's read hits.
func TestCreatedWarm(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := openStore(t, backend)
		c := convcache.New(1<<20, nil)
		conv, err := c.CreateConversation(context.Background(), b.(creator), store.CreateConversationParams{ID: "conv1", Tenant: "t1", Agent: "a"})
		require.NoError(t, err)
		turn(t, c, b, "t1", "conv1", conv.Version, 1, 0)
		requireFresh(t, c, b, "t1", "conv1")
		require.Equal(t, convcache.Stats{Hits: 1, Bytes: c.Stats().Bytes, Entries: 1, StoreReadBytes: c.Stats().StoreReadBytes}, c.Stats())
	})
}

// TestCreatedWithFirstTurnWarm: a conversation created by its first turn's
// append (AppendMessagesParams.Create) is cached as one created through the
// cache: the next read hits, and is what the store holds.
func TestCreatedWithFirstTurnWarm(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := openStore(t, backend)
		c := convcache.New(1<<20, nil)
		v, err := c.AppendMessages(context.Background(), b, store.AppendMessagesParams{
			ConversationID: "conv1", Tenant: "t1", Create: true, Agent: "a",
			Messages: []store.Message{{Role: "user", Content: text("question")}, {Role: "assistant", Content: text("answer")}},
		})
		require.NoError(t, err)
		require.Equal(t, int64(1), v)
		got := requireFresh(t, c, b, "t1", "conv1")
		require.Len(t, got.Messages, 2)
		require.Equal(t, "a", got.Agent)
		require.Equal(t, convcache.Stats{Hits: 1, Bytes: c.Stats().Bytes, Entries: 1, StoreReadBytes: c.Stats().StoreReadBytes}, c.Stats())
	})
}
