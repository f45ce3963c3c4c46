package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// SharedStore is a Store on a database other Stores may open too.
type SharedStore[TTx any] interface {
	Store[TTx]
	// SchemaVersion returns the highest applied migration, 0 before any.
	SchemaVersion(ctx context.Context) (int, error)
}

// ExerciseShared checks what holds across the Stores of one database:
// open returns a new, unmigrated Store on the same database on every call
// (closed by t.Cleanup; closing it earlier is allowed), latest is the
// schema version Migrate reaches. n Stores migrate concurrently, then
// append to one conversation concurrently; and the data survives closing a
// Store and opening another.
func ExerciseShared[TTx any](t *testing.T, open func(t *testing.T) SharedStore[TTx], n, latest int) {
	t.Helper()
	ctx := t.Context()

	stores := make([]SharedStore[TTx], n)
	for i := range stores {
		stores[i] = open(t)
	}
	v, err := stores[0].SchemaVersion(ctx)
	require.NoError(t, err)
	require.Zero(t, v, "a fresh database")
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	for _, s := range stores {
		require.NoError(t, s.Migrate(ctx), "again: a no-op")
		v, err := s.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, latest, v)
	}

	// The stores share the data, and appends from all of them serialize.
	c, err := stores[0].CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(t, err)
	const appends = 30
	for i := range appends {
		wg.Go(func() {
			s := stores[i%n]
			for {
				cur, err := s.GetConversation(ctx, "t", c.ID)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
					ConversationID: c.ID, Tenant: "t", ExpectedVersion: cur.Version,
					Messages: []store.Message{{Role: "user", Content: json.RawMessage(`[]`)}},
				})
				if err == nil {
					return
				}
				if !errors.Is(err, store.ErrConflict) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := stores[n-1].GetConversation(ctx, "t", c.ID)
	require.NoError(t, err)
	require.Equal(t, int64(appends), got.Version)
	require.Len(t, got.Messages, appends)
	require.Equal(t, int64(appends), got.Messages[appends-1].Seq)

	// Reopen: what one Store wrote, a Store opened after it closed reads.
	s := stores[0]
	exp := time.Date(2031, 1, 2, 3, 4, 5, 678901999, time.FixedZone("X", -3600))
	c1, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: "c1", Tenant: "t", Agent: "a", ExpiresAt: exp})
	require.NoError(t, err)
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 0,
		Messages: []store.Message{
			{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"a"}]`), Tokens: 1},
			{Role: "assistant", Content: json.RawMessage(`[{"type":"text", "text":"b"}]`), Tokens: 2},
		},
		TrimBeforeSeq: 2,
	})
	require.NoError(t, err)
	run := store.Run{ID: "r1", Tenant: "t", Agent: "a", Status: store.RunRunning, Input: json.RawMessage(`{}`),
		IdempotencyKey: "k", StartedAt: time.Now()}
	require.NoError(t, s.CreateRun(ctx, run))
	require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: "r1", Step: 1, State: json.RawMessage(`{"s":1}`)},
		[]store.Event{{RunID: "r1", Seq: 1, Type: "x"}}))
	before, err := s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	beforeRun, err := s.GetRun(ctx, "t", "r1")
	require.NoError(t, err)
	for _, s := range stores {
		require.NoError(t, s.Close())
	}
	require.NoError(t, s.Close(), "Close twice")
	require.Error(t, s.Ping(ctx), "closed")

	s = open(t)
	require.NoError(t, s.Migrate(ctx))
	after, err := s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, exp.UTC().Truncate(time.Microsecond), after.ExpiresAt)
	require.Equal(t, c1.CreatedAt, after.CreatedAt)
	require.Equal(t, []int64{2}, []int64{after.Messages[0].Seq})
	require.Equal(t, `[{"type":"text", "text":"b"}]`, string(after.Messages[0].Content), "byte for byte")

	// next_seq survived too: seqs continue, not restart.
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 1,
		Messages: []store.Message{{Role: "user", Content: json.RawMessage(`[]`)}}, TrimBeforeSeq: 100,
	})
	require.NoError(t, err)
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: "c1", Tenant: "t", ExpectedVersion: 2,
		Messages: []store.Message{{Role: "user", Content: json.RawMessage(`[]`)}},
	})
	require.NoError(t, err)
	after, err = s.GetConversation(ctx, "t", "c1")
	require.NoError(t, err)
	require.Equal(t, int64(4), after.Messages[0].Seq)

	gotRun, err := s.GetRun(ctx, "t", "r1")
	require.NoError(t, err)
	require.Equal(t, beforeRun, gotRun)
	require.ErrorIs(t, s.CreateRun(ctx, store.Run{ID: "r2", Tenant: "t", IdempotencyKey: "k"}), store.ErrConflict)
	cp, err := s.LatestCheckpoint(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, `{"s":1}`, string(cp.State))
	require.ErrorIs(t, s.SaveStep(ctx, nil, []store.Event{{RunID: "r1", Seq: 1, Type: "x"}}), store.ErrConflict)
}

// ExerciseErrors checks the error texts of a backend named name (its
// errors start with "name: ") and that a canceled context is reported as
// such.
func ExerciseErrors[TTx any](t *testing.T, s Store[TTx], name string) {
	t.Helper()
	ctx := t.Context()

	_, err := s.GetConversation(ctx, "t", "missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.EqualError(t, err, name+": get conversation missing: not found")

	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.NoError(t, err)
	_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
	require.ErrorIs(t, err, store.ErrConflict)
	require.ErrorContains(t, err, name+": create conversation c: conflict: ")

	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "t", ExpectedVersion: 5})
	require.ErrorIs(t, err, store.ErrConflict)
	require.EqualError(t, err, name+": append messages to conversation c: conflict: version is 0, expected 5")
	_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "other"})
	require.ErrorIs(t, err, store.ErrNotFound)

	require.NoError(t, s.CreateRun(ctx, store.Run{ID: "r", Tenant: "t", Agent: "a", Status: store.RunQueued}))
	err = s.SaveStep(ctx, nil, []store.Event{{RunID: "r", Seq: 2, Type: "x"}})
	require.ErrorIs(t, err, store.ErrConflict)
	require.EqualError(t, err, name+": save step of run r: conflict: event seq 2 is not the next of run r")

	// A canceled context is reported as such, not as a store error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.GetConversation(cctx, "t", "c")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrNotFound)
}
