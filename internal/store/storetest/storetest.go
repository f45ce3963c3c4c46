// Package storetest is the conformance suite every store.Store backend must
// pass, in the style of River's riverdrivertest: a backend's test calls
//
//	storetest.Exercise(t, func(t *testing.T) storetest.Store[*sql.Tx] { ... })
//
// and gets one subtest per contract of store.go.
//
// Contracts the suite pins down beyond store.go's doc comments (a backend
// must honour them too):
//   - timestamps round-trip with microsecond precision and come back in UTC;
//     the zero time.Time round-trips as zero;
//   - nil JSON round-trips as nil, other JSON byte for byte;
//   - the store sets a zero Message/Event/Checkpoint/Run CreatedAt to now;
//   - AppendMessages ignores the caller's Message.Seq;
//   - SaveStep: an event seq that is not the run's next one (a duplicate or a
//     gap) is ErrConflict; an unknown run is ErrNotFound; in both cases
//     nothing of the call is written;
//   - ListEvents with limit <= 0 returns all events after afterSeq;
//   - UpdateRun of an unknown id is ErrNotFound;
//   - CreateRunTx calls fn only after r was inserted (a conflict never
//     reaches fn), with a non-nil tx; an error of fn is returned so that
//     errors.Is finds it, and leaves no trace (id and key stay free);
//   - ids sort byte-wise (ListRuns order and Cursor);
//   - GetRunByIdempotencyKey with an empty key is ErrNotFound;
//   - ListRuns on an empty result returns no runs and no error.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Store is what a backend under test implements: the Store seam and the
// run leases.
type Store[TTx any] interface {
	store.Store
	store.RunLeases
	store.TxRuns[TTx]
	store.ConversationHeads
}

// Exercise runs the conformance suite. newStore must return a migrated,
// empty store of its own on every call (the subtests run in parallel and
// some count rows) and arrange for it to be closed with t.Cleanup.
func Exercise[TTx any](t *testing.T, newStore func(t *testing.T) Store[TTx]) {
	t.Helper()

	// setup gives a subtest its own store and context.
	var setup setupFunc[TTx] = func(t *testing.T) (Store[TTx], context.Context) {
		t.Helper()
		t.Parallel()
		return newStore(t), t.Context()
	}

	t.Run("Lifecycle", func(t *testing.T) {
		t.Run("PingAndMigrateAgain", func(t *testing.T) {
			s, ctx := setup(t)
			require.NoError(t, s.Ping(ctx))
			require.NoError(t, s.Migrate(ctx), "Migrate must be idempotent")
			require.NoError(t, s.Migrate(ctx))
			require.NoError(t, s.Ping(ctx))
		})
	})

	t.Run("Conversation", func(t *testing.T) { exerciseConversations(t, setup) })
	t.Run("AppendMessages", func(t *testing.T) { exerciseAppend(t, setup) })
	t.Run("FinishRun", func(t *testing.T) { exerciseFinishRun(t, setup) })
	t.Run("Run", func(t *testing.T) { exerciseRuns(t, setup) })
	t.Run("CreateRunTx", func(t *testing.T) { exerciseCreateRunTx(t, setup) })
	t.Run("ListRuns", func(t *testing.T) { exerciseListRuns(t, setup) })
	t.Run("IdempotencyKey", func(t *testing.T) { exerciseIdempotency(t, setup) })
	t.Run("SaveStep", func(t *testing.T) { exerciseSaveStep(t, setup) })
	t.Run("Concurrency", func(t *testing.T) { exerciseConcurrency(t, setup) })
	t.Run("RunLeases", func(t *testing.T) { exerciseRunLeases(t, setup) })
	t.Run("Turns", func(t *testing.T) { exerciseTurns(t, setup) })
	t.Run("Audit", func(t *testing.T) { exerciseAudit(t, setup) })
	t.Run("Usage", func(t *testing.T) { exerciseUsage(t, setup) })
	t.Run("APIKeys", func(t *testing.T) { exerciseAPIKeys(t, setup) })
	t.Run("Budgets", func(t *testing.T) { exerciseBudgets(t, setup) })
	t.Run("Retention", func(t *testing.T) { exerciseRetention(t, setup) })
	t.Run("Managed", func(t *testing.T) { exerciseManaged(t, setup) })
	t.Run("Approvals", func(t *testing.T) { exerciseApprovals(t, setup) })
	t.Run("Feedback", func(t *testing.T) { exerciseFeedback(t, setup) })
	t.Run("SDKSessions", func(t *testing.T) { exerciseSDKSessions(t, setup) })
}

type setupFunc[TTx any] func(t *testing.T) (Store[TTx], context.Context)

// ---------------------------------------------------------------------------
// helpers

// newID returns a unique id, so that the suite also works on a shared store.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// at returns a microsecond-aligned time in a non-UTC zone; the store must
// return it as ts(at).
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.In(time.FixedZone("CEST", 2*60*60))
}

// utc is what a time looks like after a round trip.
func utc(t time.Time) time.Time { return t.UTC() }

// requireRecent checks that a store-assigned time is UTC, microsecond
// precise and within [before, after].
func requireRecent(t *testing.T, before, after, got time.Time) {
	t.Helper()
	require.False(t, got.IsZero(), "time not set")
	require.Equal(t, time.UTC, got.Location(), "time not in UTC")
	require.Zero(t, got.Nanosecond()%1000, "time finer than a microsecond")
	require.False(t, got.Before(before.Truncate(time.Microsecond)), "%v before %v", got, before)
	require.False(t, got.After(after), "%v after %v", got, after)
}

func js(s string) json.RawMessage { return json.RawMessage(s) }

func textMsg(role, text string) store.Message {
	b, _ := json.Marshal([]map[string]string{{"type": "text", "text": text}})
	return store.Message{Role: role, Content: b, Tokens: int64(len(text))}
}

func createConv(t *testing.T, ctx context.Context, s store.Store, tenant string) store.Conversation {
	t.Helper()
	c, err := s.CreateConversation(ctx, store.CreateConversationParams{
		ID: newID("conv"), Tenant: tenant, Agent: "agent-a",
	})
	require.NoError(t, err)
	return c
}

func appendN(t *testing.T, ctx context.Context, s store.Store, c store.Conversation, version int64, n int) int64 {
	t.Helper()
	msgs := make([]store.Message, n)
	for i := range msgs {
		msgs[i] = textMsg("user", fmt.Sprintf("message %d", i))
	}
	v, err := s.AppendMessages(ctx, store.AppendMessagesParams{
		ConversationID: c.ID, Tenant: c.Tenant, ExpectedVersion: version, Messages: msgs,
	})
	require.NoError(t, err)
	require.Equal(t, version+1, v)
	return v
}

func seqs(c store.Conversation) []int64 {
	out := []int64{}
	for _, m := range c.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func eventSeqs(evs []store.Event) []int64 {
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

func createRun(t *testing.T, ctx context.Context, s store.Store, tenant string) store.Run {
	t.Helper()
	r := store.Run{
		ID: newID("run"), Tenant: tenant, Agent: "agent-a", Status: store.RunQueued,
		Input: js(`{"messages":[]}`),
	}
	require.NoError(t, s.CreateRun(ctx, r))
	return r
}

func events(runID string, from, to int64) []store.Event {
	var evs []store.Event
	for seq := from; seq <= to; seq++ {
		evs = append(evs, store.Event{
			RunID: runID, Seq: seq, Type: "step",
			Data: js(fmt.Sprintf(`{"seq":%d}`, seq)),
		})
	}
	return evs
}

// ---------------------------------------------------------------------------
// conversations

func exerciseConversations[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t.Run("CreateAndGet", func(t *testing.T) {
		s, ctx := setup(t)
		before := time.Now()
		c, err := s.CreateConversation(ctx, store.CreateConversationParams{
			ID: newID("conv"), Tenant: "t1", Agent: "agent-a",
		})
		after := time.Now()
		require.NoError(t, err)
		require.Equal(t, "t1", c.Tenant)
		require.Equal(t, "agent-a", c.Agent)
		require.Zero(t, c.Version)
		require.True(t, c.ExpiresAt.IsZero())
		require.Empty(t, c.Messages)
		requireRecent(t, before, after, c.CreatedAt)
		require.Equal(t, c.CreatedAt, c.UpdatedAt)

		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Empty(t, got.Messages)
		got.Messages, c.Messages = nil, nil
		require.Equal(t, c, got)
	})

	t.Run("ExpiresAtRoundTrip", func(t *testing.T) {
		s, ctx := setup(t)
		exp := at("2031-02-03T04:05:06.123456+02:00")
		c, err := s.CreateConversation(ctx, store.CreateConversationParams{
			ID: newID("conv"), Tenant: "t1", Agent: "agent-a", ExpiresAt: exp,
		})
		require.NoError(t, err)
		require.Equal(t, utc(exp), c.ExpiresAt)
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, utc(exp), got.ExpiresAt)
	})

	t.Run("DuplicateID", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		_, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: c.ID, Tenant: "t1", Agent: "b"})
		require.ErrorIs(t, err, store.ErrConflict)
		_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: c.ID, Tenant: "t2", Agent: "b"})
		require.ErrorIs(t, err, store.ErrConflict, "ids are global, not per tenant")
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, "agent-a", got.Agent)
	})

	t.Run("Head", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		require.Equal(t, int64(1), c.NextSeq)
		head, err := s.ConversationHead(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, c, head)
		appendN(t, ctx, s, c, 0, 3)
		v, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 1,
			Messages: []store.Message{textMsg("user", "x"), textMsg("assistant", "y")}, TrimBeforeSeq: 6,
		})
		require.NoError(t, err)
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		// next_seq never goes back, also when trimming removed every
		// message.
		require.Equal(t, []int64{}, seqs(got))
		require.Equal(t, v, got.Version)
		require.Equal(t, int64(6), got.NextSeq)
		head, err = s.ConversationHead(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Nil(t, head.Messages)
		got.Messages = nil
		require.Equal(t, got, head, "the head is the conversation without its messages")

		_, err = s.ConversationHead(ctx, "t2", c.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "another tenant's conversation")
		_, err = s.ConversationHead(ctx, "t1", "nope")
		require.ErrorIs(t, err, store.ErrNotFound)
		require.NoError(t, s.DeleteConversation(ctx, "t1", c.ID))
		_, err = s.ConversationHead(ctx, "t1", c.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("GetMissing", func(t *testing.T) {
		s, ctx := setup(t)
		_, err := s.GetConversation(ctx, "t1", "nope")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("TenantIsolation", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		appendN(t, ctx, s, c, 0, 2)

		_, err := s.GetConversation(ctx, "t2", c.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.GetConversation(ctx, "", c.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		require.ErrorIs(t, s.DeleteConversation(ctx, "t2", c.ID), store.ErrNotFound)
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t2", ExpectedVersion: 1,
			Messages: []store.Message{textMsg("user", "intruder")}, TrimBeforeSeq: 100,
		})
		require.ErrorIs(t, err, store.ErrNotFound)

		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, int64(1), got.Version)
		require.Equal(t, []int64{1, 2}, seqs(got))
	})

	t.Run("Delete", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		other := createConv(t, ctx, s, "t1")
		appendN(t, ctx, s, c, 0, 3)
		appendN(t, ctx, s, other, 0, 1)

		require.NoError(t, s.DeleteConversation(ctx, "t1", c.ID))
		_, err := s.GetConversation(ctx, "t1", c.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		require.ErrorIs(t, s.DeleteConversation(ctx, "t1", c.ID), store.ErrNotFound)
		require.ErrorIs(t, s.DeleteConversation(ctx, "t1", "nope"), store.ErrNotFound)

		// The id is free again and the messages went with the conversation.
		again, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: c.ID, Tenant: "t1", Agent: "x"})
		require.NoError(t, err)
		got, err := s.GetConversation(ctx, "t1", again.ID)
		require.NoError(t, err)
		require.Empty(t, got.Messages)
		appendN(t, ctx, s, again, 0, 1)
		got, err = s.GetConversation(ctx, "t1", again.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, seqs(got))

		// Others are untouched.
		got, err = s.GetConversation(ctx, "t1", other.ID)
		require.NoError(t, err)
		require.Len(t, got.Messages, 1)
	})

	t.Run("DeleteExpiredInBatches", func(t *testing.T) {
		// A backlog longer than a sweep's batches (500) goes in one call.
		s, ctx := setup(t)
		now := time.Now().UTC().Truncate(time.Microsecond)
		const n = 1100
		for i := range n + 1 {
			exp := now.Add(-time.Duration(i+1) * time.Second)
			if i == n {
				exp = now.Add(time.Hour) // kept
			}
			_, err := s.CreateConversation(ctx, store.CreateConversationParams{
				ID: newID("conv"), Tenant: "t1", Agent: "a", ExpiresAt: exp,
			})
			require.NoError(t, err)
		}
		deleted, err := s.DeleteExpiredConversations(ctx, now)
		require.NoError(t, err)
		require.Equal(t, n, deleted)
		deleted, err = s.DeleteExpiredConversations(ctx, now.Add(2*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, deleted, "the one that had not expired is all that was left")
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		s, ctx := setup(t)
		now := time.Now().UTC().Truncate(time.Microsecond)
		mk := func(exp time.Time) store.Conversation {
			c, err := s.CreateConversation(ctx, store.CreateConversationParams{
				ID: newID("conv"), Tenant: "t1", Agent: "a", ExpiresAt: exp,
			})
			require.NoError(t, err)
			appendN(t, ctx, s, c, 0, 2)
			return c
		}
		expired1 := mk(now.Add(-time.Hour))
		expired2 := mk(now.Add(-time.Microsecond))
		atNow := mk(now) // not before now: kept
		future := mk(now.Add(time.Hour))
		never := mk(time.Time{})

		n, err := s.DeleteExpiredConversations(ctx, now)
		require.NoError(t, err)
		require.Equal(t, 2, n)

		for _, c := range []store.Conversation{expired1, expired2} {
			_, err := s.GetConversation(ctx, "t1", c.ID)
			require.ErrorIs(t, err, store.ErrNotFound)
			// Messages went too: a new conversation with the same id is empty.
			_, err = s.CreateConversation(ctx, store.CreateConversationParams{ID: c.ID, Tenant: "t1", Agent: "a"})
			require.NoError(t, err)
			got, err := s.GetConversation(ctx, "t1", c.ID)
			require.NoError(t, err)
			require.Empty(t, got.Messages)
		}
		for _, c := range []store.Conversation{atNow, future, never} {
			got, err := s.GetConversation(ctx, "t1", c.ID)
			require.NoError(t, err)
			require.Len(t, got.Messages, 2)
		}

		n, err = s.DeleteExpiredConversations(ctx, now)
		require.NoError(t, err)
		require.Zero(t, n, "second sweep finds nothing")

		// Extending the expiry through AppendMessages protects a conversation.
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: future.ID, Tenant: "t1", ExpectedVersion: 1,
			ExpiresAt: now.Add(3 * time.Hour),
		})
		require.NoError(t, err)
		n, err = s.DeleteExpiredConversations(ctx, now.Add(2*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, n, "only atNow expired by then")
		_, err = s.GetConversation(ctx, "t1", future.ID)
		require.NoError(t, err)
		_, err = s.GetConversation(ctx, "t1", atNow.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

// ---------------------------------------------------------------------------
// AppendMessages

func exerciseAppend[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t.Run("RoundTripAndVersion", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		created := at("2030-01-02T03:04:05.000006+02:00")
		before := time.Now()
		v, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 0,
			Messages: []store.Message{
				{Seq: 99, Role: "user", Content: js(`[{"type":"text","text":"hi"}]`), Tokens: 3},
				{Role: "assistant", Content: js(`[ {"type": "tool_use", "id":"tu_1", "name":"f", "input":{"b":1,"a":2}} ]`), Tokens: 7, CreatedAt: created},
				{Role: "user", Content: js(`[{"type":"tool_result","tool_use_id":"tu_1","content":"ok"}]`)},
			},
		})
		after := time.Now()
		require.NoError(t, err)
		require.Equal(t, int64(1), v)

		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, int64(1), got.Version)
		require.Equal(t, c.CreatedAt, got.CreatedAt)
		requireRecent(t, before, after, got.UpdatedAt)
		require.Len(t, got.Messages, 3)
		require.Equal(t, []int64{1, 2, 3}, seqs(got), "store assigns seq, ignoring the caller's")

		m := got.Messages
		require.Equal(t, "user", m[0].Role)
		require.Equal(t, `[{"type":"text","text":"hi"}]`, string(m[0].Content))
		require.Equal(t, int64(3), m[0].Tokens)
		requireRecent(t, before, after, m[0].CreatedAt)
		require.Equal(t, "assistant", m[1].Role)
		require.Equal(t, `[ {"type": "tool_use", "id":"tu_1", "name":"f", "input":{"b":1,"a":2}} ]`,
			string(m[1].Content), "content is stored byte for byte")
		require.Equal(t, int64(7), m[1].Tokens)
		require.Equal(t, utc(created), m[1].CreatedAt)
		require.Equal(t, int64(0), m[2].Tokens)

		v = appendN(t, ctx, s, got, 1, 2)
		require.Equal(t, int64(2), v)
		got, err = s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3, 4, 5}, seqs(got))
	})

	t.Run("StaleVersionWritesNothing", func(t *testing.T) {
		s, ctx := setup(t)
		exp := at("2032-01-01T00:00:00Z")
		c, err := s.CreateConversation(ctx, store.CreateConversationParams{
			ID: newID("conv"), Tenant: "t1", Agent: "a", ExpiresAt: exp,
		})
		require.NoError(t, err)
		appendN(t, ctx, s, c, 0, 3)
		appendN(t, ctx, s, c, 1, 1)
		before, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)

		for _, stale := range []int64{0, 1, 3, -1} {
			_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
				ConversationID: c.ID, Tenant: "t1", ExpectedVersion: stale,
				Messages:      []store.Message{textMsg("user", "lost")},
				TrimBeforeSeq: 4,
				ExpiresAt:     at("2040-01-01T00:00:00Z"),
			})
			require.ErrorIs(t, err, store.ErrConflict, "expected version %d", stale)
		}
		after, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, before, after, "a failed append writes nothing")

		// Seqs were not consumed by the failed attempts.
		appendN(t, ctx, s, c, 2, 1)
		after, err = s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3, 4, 5}, seqs(after))
	})

	t.Run("Missing", func(t *testing.T) {
		s, ctx := setup(t)
		_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: "nope", Tenant: "t1", Messages: []store.Message{textMsg("user", "x")},
		})
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Trim", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		appendN(t, ctx, s, c, 0, 5) // 1..5

		v, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 1,
			Messages:      []store.Message{textMsg("user", "6"), textMsg("assistant", "7")},
			TrimBeforeSeq: 4,
		})
		require.NoError(t, err)
		require.Equal(t, int64(2), v)
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{4, 5, 6, 7}, seqs(got))
		require.Equal(t, `[{"text":"6","type":"text"}]`, string(got.Messages[2].Content))

		// Trim only, no messages: still a new version.
		v, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 2, TrimBeforeSeq: 6,
		})
		require.NoError(t, err)
		require.Equal(t, int64(3), v)
		got, err = s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{6, 7}, seqs(got))
		require.Equal(t, int64(3), got.Version)
	})

	t.Run("SeqNeverReused", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		appendN(t, ctx, s, c, 0, 3) // 1..3

		// Trim everything, then append: seqs continue after 3.
		_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 1, TrimBeforeSeq: 1000,
		})
		require.NoError(t, err)
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Empty(t, got.Messages)

		appendN(t, ctx, s, c, 2, 2)
		got, err = s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{4, 5}, seqs(got))

		// Trim in the same call that appends: the new ones survive a trim
		// below them.
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 3,
			Messages: []store.Message{textMsg("user", "6")}, TrimBeforeSeq: 6,
		})
		require.NoError(t, err)
		got, err = s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, []int64{6}, seqs(got))
	})

	t.Run("ExpiresAt", func(t *testing.T) {
		s, ctx := setup(t)
		exp1 := at("2033-03-03T03:03:03.333333Z")
		c, err := s.CreateConversation(ctx, store.CreateConversationParams{
			ID: newID("conv"), Tenant: "t1", Agent: "a", ExpiresAt: exp1,
		})
		require.NoError(t, err)

		appendN(t, ctx, s, c, 0, 1) // zero ExpiresAt: unchanged
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, utc(exp1), got.ExpiresAt)

		exp2 := at("2034-04-04T04:04:04.444444Z")
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 1,
			Messages: []store.Message{textMsg("user", "x")}, ExpiresAt: exp2,
		})
		require.NoError(t, err)
		got, err = s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, utc(exp2), got.ExpiresAt)
		require.False(t, got.UpdatedAt.Before(got.CreatedAt))
	})
}

// ---------------------------------------------------------------------------
// runs

func exerciseRuns[TTx any](t *testing.T, setup setupFunc[TTx]) {
	full := func() store.Run {
		return store.Run{
			ID:             newID("run"),
			Tenant:         "t1",
			Agent:          "agent-a",
			ConversationID: newID("conv"),
			Status:         store.RunSucceeded,
			Input:          js(`{"messages":[{"role":"user","content":"hi"}],"max_steps":5}`),
			Output:         js(`[{"type":"text","text":"hello"}]`),
			Error:          "none",
			Attempt:        2,
			Steps:          4,
			InputTokens:    1234567890123,
			OutputTokens:   987,
			CostUSD:        12_345_678, // $0.012345678, exact
			IdempotencyKey: newID("idem"),
			CreatedAt:      at("2030-05-06T07:08:09.000001+02:00"),
			StartedAt:      at("2030-05-06T07:08:10.5+02:00"),
			FinishedAt:     at("2030-05-06T07:09:00.999999+02:00"),
		}
	}
	roundTripped := func(r store.Run) store.Run {
		r.CreatedAt, r.StartedAt, r.FinishedAt = utc(r.CreatedAt), utc(r.StartedAt), utc(r.FinishedAt)
		return r
	}

	t.Run("RoundTripEveryField", func(t *testing.T) {
		s, ctx := setup(t)
		r := full()
		require.NoError(t, s.CreateRun(ctx, r))
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		require.Equal(t, roundTripped(r), got)
	})

	t.Run("ZeroValues", func(t *testing.T) {
		s, ctx := setup(t)
		r := store.Run{ID: newID("run"), Tenant: "t1", Agent: "a", Status: store.RunQueued}
		before := time.Now()
		require.NoError(t, s.CreateRun(ctx, r))
		after := time.Now()
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		requireRecent(t, before, after, got.CreatedAt)
		r.CreatedAt = got.CreatedAt
		require.Equal(t, r, got)
		require.Nil(t, got.Input)
		require.Nil(t, got.Output)
		require.True(t, got.StartedAt.IsZero())
		require.True(t, got.FinishedAt.IsZero())
	})

	t.Run("DuplicateID", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		dup := r
		dup.Agent = "other"
		require.ErrorIs(t, s.CreateRun(ctx, dup), store.ErrConflict)
		dup.Tenant = "t2"
		require.ErrorIs(t, s.CreateRun(ctx, dup), store.ErrConflict)
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		require.Equal(t, "agent-a", got.Agent)
	})

	t.Run("IdempotencyKey", func(t *testing.T) {
		s, ctx := setup(t)
		key := newID("idem")
		mk := func(tenant, key string) store.Run {
			return store.Run{ID: newID("run"), Tenant: tenant, Agent: "a", Status: store.RunQueued, IdempotencyKey: key}
		}
		first := mk("t1", key)
		require.NoError(t, s.CreateRun(ctx, first))
		second := mk("t1", key)
		require.ErrorIs(t, s.CreateRun(ctx, second), store.ErrConflict)
		_, err := s.GetRun(ctx, "t1", second.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "the conflicting run is not written")

		require.NoError(t, s.CreateRun(ctx, mk("t2", key)), "keys are per tenant")
		// Empty means no key: any number of runs.
		require.NoError(t, s.CreateRun(ctx, mk("t1", "")))
		require.NoError(t, s.CreateRun(ctx, mk("t1", "")))
	})

	t.Run("TenantIsolation", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		_, err := s.GetRun(ctx, "t2", r.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.GetRun(ctx, "t1", "nope")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		started := at("2030-01-01T00:00:01.000001Z")
		finished := at("2030-01-01T00:01:02.999999Z")
		p := store.UpdateRunParams{
			ID: r.ID, Status: store.RunFailed, Output: js(`[{"type":"text","text":"partial"}]`),
			Error: "boom", Attempt: 3, Steps: 7, InputTokens: 100, OutputTokens: 200,
			CostUSD: money.FromUSD(1.5), StartedAt: started, FinishedAt: finished,
		}
		require.NoError(t, s.UpdateRun(ctx, p))
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		want := r
		want.CreatedAt = got.CreatedAt
		want.Status, want.Output, want.Error = p.Status, p.Output, p.Error
		want.Attempt, want.Steps, want.InputTokens, want.OutputTokens, want.CostUSD =
			p.Attempt, p.Steps, p.InputTokens, p.OutputTokens, p.CostUSD
		want.StartedAt, want.FinishedAt = utc(started), utc(finished)
		require.Equal(t, want, got)

		// Every field is written, zero values included.
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: r.ID, Status: store.RunQueued}))
		got, err = s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		want = r
		want.CreatedAt = got.CreatedAt
		require.Equal(t, want, got)

		require.ErrorIs(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: "nope", Status: store.RunFailed}), store.ErrNotFound)
	})
}

// ---------------------------------------------------------------------------
// CreateRunTx

func exerciseCreateRunTx[TTx any](t *testing.T, setup setupFunc[TTx]) {
	mk := func(tenant string) store.Run {
		return store.Run{
			ID: newID("run"), Tenant: tenant, Agent: "agent-a", Status: store.RunQueued,
			Input: js(`{"q":1}`), IdempotencyKey: newID("idem"),
		}
	}

	t.Run("Commits", func(t *testing.T) {
		s, ctx := setup(t)
		r := mk("t1")
		calls := 0
		err := s.CreateRunTx(ctx, r, func(fctx context.Context, tx TTx) error {
			calls++
			require.NotNil(t, fctx)
			require.NotNil(t, tx, "fn gets the backend's transaction")
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 1, calls)
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		require.Equal(t, r.IdempotencyKey, got.IdempotencyKey)
		require.Equal(t, `{"q":1}`, string(got.Input))
	})

	t.Run("NilFunc", func(t *testing.T) {
		s, ctx := setup(t)
		r := mk("t1")
		require.NoError(t, s.CreateRunTx(ctx, r, nil))
		_, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
	})

	t.Run("FuncErrorRollsBack", func(t *testing.T) {
		s, ctx := setup(t)
		r := mk("t1")
		boom := errors.New("boom")
		err := s.CreateRunTx(ctx, r, func(context.Context, TTx) error { return boom })
		require.ErrorIs(t, err, boom)
		require.NotErrorIs(t, err, store.ErrConflict)
		require.NotErrorIs(t, err, store.ErrNotFound)
		_, err = s.GetRun(ctx, "t1", r.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "nothing was written")
		_, err = s.GetRunByIdempotencyKey(ctx, "t1", r.IdempotencyKey)
		require.ErrorIs(t, err, store.ErrNotFound)

		// Id and key are still free.
		require.NoError(t, s.CreateRunTx(ctx, r, func(context.Context, TTx) error { return nil }))
		got, err := s.GetRunByIdempotencyKey(ctx, "t1", r.IdempotencyKey)
		require.NoError(t, err)
		require.Equal(t, r.ID, got.ID)
	})

	t.Run("ConflictSkipsFunc", func(t *testing.T) {
		s, ctx := setup(t)
		r := mk("t1")
		require.NoError(t, s.CreateRun(ctx, r))
		called := false
		fn := func(context.Context, TTx) error { called = true; return nil }

		dupID := mk("t1")
		dupID.ID = r.ID
		require.ErrorIs(t, s.CreateRunTx(ctx, dupID, fn), store.ErrConflict, "same id")
		dupKey := mk("t1")
		dupKey.IdempotencyKey = r.IdempotencyKey
		require.ErrorIs(t, s.CreateRunTx(ctx, dupKey, fn), store.ErrConflict, "same idempotency key")
		require.False(t, called, "fn is not called when the insert fails")
		_, err := s.GetRun(ctx, "t1", dupKey.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s, ctx := setup(t)
		r := mk("t1")
		cctx, cancel := context.WithCancel(ctx)
		err := s.CreateRunTx(cctx, r, func(context.Context, TTx) error {
			cancel()
			return context.Cause(cctx)
		})
		require.ErrorIs(t, err, context.Canceled)
		_, err = s.GetRun(ctx, "t1", r.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

// ---------------------------------------------------------------------------
// ListRuns

func exerciseListRuns[TTx any](t *testing.T, setup setupFunc[TTx]) {
	ids := func(runs []store.Run) []string {
		out := []string{}
		for _, r := range runs {
			out = append(out, r.ID)
		}
		return out
	}

	t.Run("OrderFiltersAndIsolation", func(t *testing.T) {
		s, ctx := setup(t)
		tenant, other := newID("tenant"), newID("tenant")
		prefix := newID("run") + "_"
		type spec struct {
			n      int
			agent  string
			status store.RunStatus
		}
		// Inserted out of id order; ids sort by n.
		specs := []spec{
			{3, "a", store.RunRunning}, {1, "a", store.RunQueued}, {7, "b", store.RunSucceeded},
			{5, "b", store.RunRunning}, {2, "b", store.RunQueued}, {6, "a", store.RunRunning},
			{4, "a", store.RunFailed},
		}
		want := map[string]store.Run{}
		for _, sp := range specs {
			r := store.Run{
				ID: fmt.Sprintf("%s%04d", prefix, sp.n), Tenant: tenant, Agent: sp.agent, Status: sp.status,
				Input: js(fmt.Sprintf(`{"n": %d}`, sp.n)), IdempotencyKey: fmt.Sprint("k", sp.n),
				CreatedAt: at("2030-01-01T00:00:00.000001Z").Add(time.Duration(sp.n) * time.Second),
			}
			require.NoError(t, s.CreateRun(ctx, r))
			want[r.ID] = roundTrippedRun(r)
		}
		// Another tenant's runs sort between and after ours.
		for _, id := range []string{prefix + "0003x", prefix + "0009"} {
			require.NoError(t, s.CreateRun(ctx, store.Run{ID: id, Tenant: other, Agent: "a", Status: store.RunRunning}))
		}
		id := func(ns ...int) []string {
			out := []string{}
			for _, n := range ns {
				out = append(out, fmt.Sprintf("%s%04d", prefix, n))
			}
			return out
		}
		list := func(p store.ListRunsParams) []store.Run {
			t.Helper()
			p.Tenant = tenant
			runs, err := s.ListRuns(ctx, p)
			require.NoError(t, err)
			return runs
		}

		all := list(store.ListRunsParams{})
		require.Equal(t, id(7, 6, 5, 4, 3, 2, 1), ids(all), "newest (highest id) first")
		for _, r := range all {
			require.Equal(t, want[r.ID], r, "every field")
			got, err := s.GetRun(ctx, tenant, r.ID)
			require.NoError(t, err)
			require.Equal(t, got, r)
		}

		require.Equal(t, id(6, 5, 3), ids(list(store.ListRunsParams{Status: store.RunRunning})))
		require.Equal(t, id(7, 5, 2), ids(list(store.ListRunsParams{Agent: "b"})))
		require.Equal(t, id(6, 3), ids(list(store.ListRunsParams{Status: store.RunRunning, Agent: "a"})))
		require.Equal(t, id(3), ids(list(store.ListRunsParams{Status: store.RunRunning, Agent: "a", Cursor: id(6)[0]})))
		require.Equal(t, id(5, 2), ids(list(store.ListRunsParams{Agent: "b", Cursor: id(7)[0], Limit: 2})))
		require.Empty(t, list(store.ListRunsParams{Status: store.RunCanceled}))
		require.Empty(t, list(store.ListRunsParams{Agent: "nope"}))

		require.Equal(t, id(7, 6), ids(list(store.ListRunsParams{Limit: 2})))
		require.Equal(t, id(4, 3, 2), ids(list(store.ListRunsParams{Cursor: id(5)[0], Limit: 3})), "ids before the cursor")
		require.Equal(t, id(3, 2, 1), ids(list(store.ListRunsParams{Cursor: prefix + "0003x"})),
			"a cursor need not be an existing id: byte-wise order")
		require.Equal(t, id(7, 6, 5, 4, 3, 2, 1), ids(list(store.ListRunsParams{Cursor: prefix + "9999"})))
		require.Empty(t, list(store.ListRunsParams{Cursor: id(1)[0]}))
		require.Empty(t, list(store.ListRunsParams{Cursor: prefix}))
		require.Len(t, list(store.ListRunsParams{Limit: -1}), 7, "limit <= 0 is the default")
		require.Len(t, list(store.ListRunsParams{Limit: 1 << 40}), 7, "a huge limit is capped, not an error")

		runs, err := s.ListRuns(ctx, store.ListRunsParams{Tenant: other})
		require.NoError(t, err)
		require.Equal(t, []string{prefix + "0009", prefix + "0003x"}, ids(runs))
		runs, err = s.ListRuns(ctx, store.ListRunsParams{Tenant: newID("tenant")})
		require.NoError(t, err)
		require.Empty(t, runs)
		runs, err = s.ListRuns(ctx, store.ListRunsParams{})
		require.NoError(t, err)
		require.Empty(t, runs, "the empty tenant has no runs")

		require.Equal(t, id(2, 1), ids(list(store.ListRunsParams{Status: store.RunQueued})))
		// AllTenants (the operator console's admin view): every tenant's
		// runs, in the same order, with the same filters and cursor.
		mine := func(p store.ListRunsParams) []string {
			t.Helper()
			p.AllTenants, p.Tenant = true, newID("ignored")
			runs, err := s.ListRuns(ctx, p)
			require.NoError(t, err)
			out := []string{}
			for _, r := range runs {
				if strings.HasPrefix(r.ID, prefix) {
					out = append(out, r.ID)
				}
			}
			return out
		}
		require.Equal(t, []string{prefix + "0009", id(7)[0], id(6)[0], id(5)[0], id(4)[0], prefix + "0003x", id(3)[0], id(2)[0], id(1)[0]},
			mine(store.ListRunsParams{Cursor: prefix + "9999"}))
		require.Equal(t, []string{prefix + "0009", id(6)[0], id(5)[0], prefix + "0003x", id(3)[0]},
			mine(store.ListRunsParams{Status: store.RunRunning, Cursor: prefix + "9999"}))
		require.Equal(t, []string{prefix + "0003x", id(3)[0]},
			mine(store.ListRunsParams{Status: store.RunRunning, Agent: "a", Cursor: id(5)[0]}))
	})

	t.Run("Pagination", func(t *testing.T) {
		s, ctx := setup(t)
		tenant := newID("tenant")
		prefix := newID("run") + "_"
		const n = 123
		var wantAll []string
		for i := n; i >= 1; i-- {
			wantAll = append(wantAll, fmt.Sprintf("%s%05d", prefix, i))
		}
		// Concurrent inserts, in no particular order.
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					status := store.RunQueued
					if i%3 == 0 {
						status = store.RunSucceeded
					}
					assertNoError(t, s.CreateRun(ctx, store.Run{ID: wantAll[i], Tenant: tenant, Agent: "a", Status: status}))
				}
			})
		}
		wg.Wait()

		page := func(p store.ListRunsParams) []string {
			t.Helper()
			p.Tenant = tenant
			runs, err := s.ListRuns(ctx, p)
			require.NoError(t, err)
			return ids(runs)
		}
		require.Equal(t, wantAll[:50], page(store.ListRunsParams{}), "default limit is 50")

		for _, limit := range []int{1, 7, 50, 122, 123, 1000} {
			var got []string
			cursor := ""
			pages := 0
			for {
				ids := page(store.ListRunsParams{Limit: limit, Cursor: cursor})
				require.LessOrEqual(t, len(ids), limit)
				pages++
				require.LessOrEqual(t, pages, n+1, "pagination does not end")
				if len(ids) == 0 {
					break
				}
				got = append(got, ids...)
				cursor = ids[len(ids)-1]
			}
			require.Equal(t, wantAll, got, "limit %d: every run once, in order", limit)
		}

		// Filters page too.
		var wantDone []string
		for i, id := range wantAll {
			if i%3 == 0 {
				wantDone = append(wantDone, id)
			}
		}
		var got []string
		cursor := ""
		for {
			ids := page(store.ListRunsParams{Status: store.RunSucceeded, Limit: 10, Cursor: cursor})
			if len(ids) == 0 {
				break
			}
			got = append(got, ids...)
			cursor = ids[len(ids)-1]
		}
		require.Equal(t, wantDone, got)
	})
}

func roundTrippedRun(r store.Run) store.Run {
	r.CreatedAt, r.StartedAt, r.FinishedAt = utc(r.CreatedAt), utc(r.StartedAt), utc(r.FinishedAt)
	return r
}

// ---------------------------------------------------------------------------
// idempotency keys

func exerciseIdempotency[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t.Run("GetByKey", func(t *testing.T) {
		s, ctx := setup(t)
		key := newID("idem")
		r := store.Run{
			ID: newID("run"), Tenant: "t1", Agent: "a", Status: store.RunRunning, Input: js(`{"x": 1}`),
			IdempotencyKey: key, CreatedAt: at("2030-01-01T01:02:03.456789Z"),
		}
		require.NoError(t, s.CreateRun(ctx, r))
		require.NoError(t, s.CreateRun(ctx, store.Run{ID: newID("run"), Tenant: "t2", Agent: "a", Status: store.RunQueued,
			IdempotencyKey: newID("idem")}))
		require.NoError(t, s.CreateRun(ctx, store.Run{ID: newID("run"), Tenant: "t1", Agent: "a", Status: store.RunQueued}))

		got, err := s.GetRunByIdempotencyKey(ctx, "t1", key)
		require.NoError(t, err)
		require.Equal(t, roundTrippedRun(r), got)

		_, err = s.GetRunByIdempotencyKey(ctx, "t2", key)
		require.ErrorIs(t, err, store.ErrNotFound, "another tenant's key")
		_, err = s.GetRunByIdempotencyKey(ctx, "t1", newID("idem"))
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.GetRunByIdempotencyKey(ctx, "t1", "")
		require.ErrorIs(t, err, store.ErrNotFound, "the empty key is no key")

		// The key follows the run's updates.
		require.NoError(t, s.UpdateRun(ctx, store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded, Steps: 2}))
		got, err = s.GetRunByIdempotencyKey(ctx, "t1", key)
		require.NoError(t, err)
		require.Equal(t, store.RunSucceeded, got.Status)
		require.Equal(t, 2, got.Steps)
	})

	t.Run("Expire", func(t *testing.T) {
		s, ctx := setup(t)
		tenant := newID("tenant")
		cutoff := at("2001-06-01T00:00:00Z")
		mk := func(key string, created time.Time) store.Run {
			r := store.Run{ID: newID("run"), Tenant: tenant, Agent: "a", Status: store.RunSucceeded,
				IdempotencyKey: key, CreatedAt: created}
			require.NoError(t, s.CreateRun(ctx, r))
			return r
		}
		oldKey, atKey, newKey := newID("idem"), newID("idem"), newID("idem")
		old := mk(oldKey, cutoff.Add(-time.Hour))
		atCutoff := mk(atKey, cutoff) // not before: kept
		recent := mk(newKey, cutoff.Add(time.Microsecond))
		oldNoKey := mk("", cutoff.Add(-2*time.Hour))

		n, err := s.ExpireIdempotencyKeys(ctx, cutoff)
		require.NoError(t, err)
		require.Equal(t, 1, n)

		_, err = s.GetRunByIdempotencyKey(ctx, tenant, oldKey)
		require.ErrorIs(t, err, store.ErrNotFound, "expired key")
		got, err := s.GetRun(ctx, tenant, old.ID)
		require.NoError(t, err, "the run itself stays")
		require.Empty(t, got.IdempotencyKey)
		got, err = s.GetRun(ctx, tenant, oldNoKey.ID)
		require.NoError(t, err)
		for _, r := range []store.Run{atCutoff, recent} {
			got, err := s.GetRunByIdempotencyKey(ctx, tenant, r.IdempotencyKey)
			require.NoError(t, err)
			require.Equal(t, r.ID, got.ID)
		}

		// The expired key can be used again; the others still conflict.
		again := mk(oldKey, time.Time{})
		got, err = s.GetRunByIdempotencyKey(ctx, tenant, oldKey)
		require.NoError(t, err)
		require.Equal(t, again.ID, got.ID)
		require.ErrorIs(t, s.CreateRun(ctx, store.Run{ID: newID("run"), Tenant: tenant, Agent: "a",
			Status: store.RunQueued, IdempotencyKey: atKey}), store.ErrConflict)

		n, err = s.ExpireIdempotencyKeys(ctx, cutoff)
		require.NoError(t, err)
		require.Zero(t, n, "nothing left to expire")
		n, err = s.ExpireIdempotencyKeys(ctx, cutoff.Add(time.Microsecond))
		require.NoError(t, err)
		require.Equal(t, 1, n, "the run at the old cutoff")
	})
}

// ---------------------------------------------------------------------------
// SaveStep, ListEvents, LatestCheckpoint

func exerciseSaveStep[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		evAt := at("2030-01-01T00:00:00.000001Z")
		before := time.Now()
		cp := &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`{"messages":[1, 2]}`)}
		evs := []store.Event{
			{RunID: r.ID, Seq: 1, Type: "run.started", Data: js(`{"a":1}`)},
			{RunID: r.ID, Seq: 2, Type: "message.delta", CreatedAt: evAt},
			{RunID: r.ID, Seq: 3, Type: "step.done", Data: js(`{ "b" : [true] }`)},
		}
		require.NoError(t, s.SaveStep(ctx, cp, evs))
		after := time.Now()

		got, err := s.ListEvents(ctx, r.ID, 0, 100)
		require.NoError(t, err)
		require.Len(t, got, 3)
		require.Equal(t, []int64{1, 2, 3}, eventSeqs(got))
		requireRecent(t, before, after, got[0].CreatedAt)
		require.Equal(t, utc(evAt), got[1].CreatedAt)
		for i := range evs {
			require.Equal(t, r.ID, got[i].RunID)
			require.Equal(t, evs[i].Type, got[i].Type)
			require.Equal(t, evs[i].Data, got[i].Data)
		}
		require.Nil(t, got[1].Data)

		latest, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, r.ID, latest.RunID)
		require.Equal(t, 1, latest.Step)
		require.Equal(t, `{"messages":[1, 2]}`, string(latest.State))
		requireRecent(t, before, after, latest.CreatedAt)

		// The next step continues the sequence.
		cpAt := at("2030-02-02T00:00:00.5Z")
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 2, State: js(`{}`), CreatedAt: cpAt}, events(r.ID, 4, 5)))
		got, err = s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3, 4, 5}, eventSeqs(got))
		latest, err = s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.Checkpoint{RunID: r.ID, Step: 2, State: js(`{}`), CreatedAt: utc(cpAt)}, latest)
	})

	t.Run("CheckpointOnlyAndEventsOnly", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		require.NoError(t, s.SaveStep(ctx, nil, nil))
		require.NoError(t, s.SaveStep(ctx, nil, events(r.ID, 1, 2)))
		_, err := s.LatestCheckpoint(ctx, r.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`1`)}, nil))
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
		got, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, eventSeqs(got))
	})

	t.Run("CheckpointSameStepReplaces", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`"first"`)}, nil))
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`"second"`)}, nil))
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
		require.Equal(t, `"second"`, string(cp.State))
	})

	t.Run("LatestIsHighestStep", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		other := createRun(t, ctx, s, "t1")
		for _, step := range []int{1, 3, 2} {
			require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: step, State: js(fmt.Sprint(step))}, nil))
		}
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: other.ID, Step: 9, State: js(`9`)}, nil))
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 3, cp.Step)
		require.Equal(t, "3", string(cp.State))
	})

	t.Run("LatestCheckpointMissing", func(t *testing.T) {
		s, ctx := setup(t)
		_, err := s.LatestCheckpoint(ctx, "nope")
		require.ErrorIs(t, err, store.ErrNotFound)
		r := createRun(t, ctx, s, "t1")
		_, err = s.LatestCheckpoint(ctx, r.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("DuplicateSeqWritesNothing", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`"one"`)}, events(r.ID, 1, 3)))

		cases := map[string][]store.Event{
			"first is a duplicate": events(r.ID, 3, 4),
			"all duplicates":       events(r.ID, 1, 3),
			"duplicate later":      append(events(r.ID, 4, 5), events(r.ID, 5, 5)...),
		}
		for name, evs := range cases {
			for _, cpStep := range []int{1, 2} { // replace and new checkpoint alike
				err := s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: cpStep, State: js(`"lost"`)}, evs)
				require.ErrorIs(t, err, store.ErrConflict, name)
			}
		}
		got, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3}, eventSeqs(got))
		require.Equal(t, `{"seq":3}`, string(got[2].Data))
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step)
		require.Equal(t, `"one"`, string(cp.State))
	})

	t.Run("GapIsConflict", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		require.ErrorIs(t, s.SaveStep(ctx, nil, events(r.ID, 2, 3)), store.ErrConflict, "first seq is 1")
		require.ErrorIs(t, s.SaveStep(ctx, nil, events(r.ID, 0, 1)), store.ErrConflict, "seq 0")
		require.NoError(t, s.SaveStep(ctx, nil, events(r.ID, 1, 2)))
		require.ErrorIs(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1}, events(r.ID, 4, 4)), store.ErrConflict)
		require.ErrorIs(t, s.SaveStep(ctx, nil, append(events(r.ID, 3, 3), events(r.ID, 5, 5)...)), store.ErrConflict)
		got, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, eventSeqs(got))
		_, err = s.LatestCheckpoint(ctx, r.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("ManyEventsOneStep", func(t *testing.T) {
		// More events than one multi-row insert takes, each with its own
		// data and time; then a step with a duplicate seq in the middle,
		// and one with another run's event between two of this run's.
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		other := createRun(t, ctx, s, "t1")
		evs := events(r.ID, 1, 70)
		base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for i := range evs {
			evs[i].CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
		}
		require.NoError(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`1`)}, evs))
		got, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Len(t, got, 70)
		for i, e := range got {
			require.Equal(t, int64(i+1), e.Seq)
			require.Equal(t, evs[i].Type, e.Type)
			require.JSONEq(t, string(evs[i].Data), string(e.Data))
			require.True(t, evs[i].CreatedAt.Equal(e.CreatedAt), "event %d: %s, want %s", e.Seq, e.CreatedAt, evs[i].CreatedAt)
		}
		dup := append(events(r.ID, 71, 72), events(r.ID, 72, 73)...)
		require.ErrorIs(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 2}, dup), store.ErrConflict)
		mixed := append(append(events(r.ID, 71, 72), events(other.ID, 1, 1)...), events(r.ID, 73, 73)...)
		require.NoError(t, s.SaveStep(ctx, nil, mixed))
		got, err = s.ListEvents(ctx, r.ID, 68, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{69, 70, 71, 72, 73}, eventSeqs(got))
		got, err = s.ListEvents(ctx, other.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, eventSeqs(got))
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 1, cp.Step, "the refused step's checkpoint was not written")
	})

	t.Run("UnknownRun", func(t *testing.T) {
		s, ctx := setup(t)
		require.ErrorIs(t, s.SaveStep(ctx, &store.Checkpoint{RunID: "nope", Step: 1}, nil), store.ErrNotFound)
		require.ErrorIs(t, s.SaveStep(ctx, nil, events("nope", 1, 1)), store.ErrNotFound)
		r := createRun(t, ctx, s, "t1")
		require.ErrorIs(t, s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1}, events("nope", 1, 1)), store.ErrNotFound)
		_, err := s.LatestCheckpoint(ctx, r.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "the known run's checkpoint was not written")
		evs, err := s.ListEvents(ctx, "nope", 0, 0)
		require.NoError(t, err)
		require.Empty(t, evs)
	})

	t.Run("ListEventsAfterAndLimit", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		other := createRun(t, ctx, s, "t1")
		require.NoError(t, s.SaveStep(ctx, nil, events(r.ID, 1, 10)))
		require.NoError(t, s.SaveStep(ctx, nil, events(other.ID, 1, 4)))

		list := func(after int64, limit int) []int64 {
			t.Helper()
			evs, err := s.ListEvents(ctx, r.ID, after, limit)
			require.NoError(t, err)
			return eventSeqs(evs)
		}
		require.Equal(t, []int64{1, 2, 3}, list(0, 3))
		require.Equal(t, []int64{4, 5, 6}, list(3, 3))
		require.Equal(t, []int64{10}, list(9, 5))
		require.Equal(t, []int64{}, list(10, 5))
		require.Equal(t, []int64{}, list(100, 5))
		require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, list(0, 100))
		require.Equal(t, []int64{8, 9, 10}, list(7, 0), "limit <= 0: no limit")
		require.Equal(t, []int64{8, 9, 10}, list(7, -1))

		evs, err := s.ListEvents(ctx, other.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3, 4}, eventSeqs(evs))
	})
}

// ---------------------------------------------------------------------------
// concurrency

func exerciseConcurrency[TTx any](t *testing.T, setup setupFunc[TTx]) {
	const n = 16

	t.Run("AppendSameVersionOneWins", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		appendN(t, ctx, s, c, 0, 1)

		var (
			wg                  sync.WaitGroup
			mu                  sync.Mutex
			ok, conflict, other int
			start               = make(chan struct{})
		)
		for i := range n {
			wg.Go(func() {
				<-start
				_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
					ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 1,
					Messages: []store.Message{textMsg("user", fmt.Sprint("racer ", i)), textMsg("assistant", "reply")},
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, store.ErrConflict):
					conflict++
				default:
					other++
					t.Errorf("racer %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, ok)
		require.Equal(t, n-1, conflict)
		require.Zero(t, other)

		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, int64(2), got.Version)
		require.Equal(t, []int64{1, 2, 3}, seqs(got))
	})

	t.Run("AppendRetryLoop", func(t *testing.T) {
		// n writers each append once, re-reading on conflict: all succeed,
		// seqs are gap-free and versions count the appends.
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				for {
					cur, err := s.GetConversation(ctx, "t1", c.ID)
					if !assertNoError(t, err) {
						return
					}
					_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
						ConversationID: c.ID, Tenant: "t1", ExpectedVersion: cur.Version,
						Messages: []store.Message{textMsg("user", fmt.Sprint(i))},
					})
					if errors.Is(err, store.ErrConflict) {
						continue
					}
					assertNoError(t, err)
					return
				}
			})
		}
		wg.Wait()
		got, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Equal(t, int64(n), got.Version)
		want := []int64{}
		for i := 1; i <= n; i++ {
			want = append(want, int64(i))
		}
		require.Equal(t, want, seqs(got))
	})

	t.Run("SaveStepDifferentRuns", func(t *testing.T) {
		s, ctx := setup(t)
		const steps = 20
		runs := make([]store.Run, 8)
		for i := range runs {
			runs[i] = createRun(t, ctx, s, "t1")
		}
		var wg sync.WaitGroup
		for _, r := range runs {
			wg.Go(func() {
				for step := 1; step <= steps; step++ {
					seq := int64(step-1)*2 + 1
					err := s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: step, State: js(fmt.Sprint(step))},
						events(r.ID, seq, seq+1))
					if !assertNoError(t, err) {
						return
					}
				}
			})
		}
		wg.Wait()
		for _, r := range runs {
			evs, err := s.ListEvents(ctx, r.ID, 0, 0)
			require.NoError(t, err)
			require.Len(t, evs, 2*steps)
			for i, e := range evs {
				require.Equal(t, int64(i+1), e.Seq)
				require.Equal(t, r.ID, e.RunID)
			}
			cp, err := s.LatestCheckpoint(ctx, r.ID)
			require.NoError(t, err)
			require.Equal(t, steps, cp.Step)
		}
	})

	t.Run("SaveStepSameSeqOneWins", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		require.NoError(t, s.SaveStep(ctx, nil, events(r.ID, 1, 1)))
		var (
			wg           sync.WaitGroup
			mu           sync.Mutex
			ok, conflict int
		)
		for i := range n {
			wg.Go(func() {
				evs := events(r.ID, 2, 3)
				evs[0].Data = js(fmt.Sprint(i))
				err := s.SaveStep(ctx, &store.Checkpoint{RunID: r.ID, Step: 1, State: js(fmt.Sprint(i))}, evs)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					ok++
				} else if assertErrorIs(t, err, store.ErrConflict) {
					conflict++
				}
			})
		}
		wg.Wait()
		require.Equal(t, 1, ok)
		require.Equal(t, n-1, conflict)
		evs, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3}, eventSeqs(evs))
		cp, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, string(evs[1].Data), string(cp.State), "the winner's checkpoint and events were written together")
	})

	t.Run("ReadsDuringWrites", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(done)
			v := int64(0)
			for range 50 {
				nv, err := s.AppendMessages(ctx, store.AppendMessagesParams{
					ConversationID: c.ID, Tenant: "t1", ExpectedVersion: v,
					Messages: []store.Message{textMsg("user", "q"), textMsg("assistant", "a")},
				})
				if !assertNoError(t, err) {
					return
				}
				v = nv
			}
		})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					got, err := s.GetConversation(ctx, "t1", c.ID)
					if !assertNoError(t, err) {
						return
					}
					// A snapshot: version and messages agree.
					if len(got.Messages) != int(got.Version)*2 {
						t.Errorf("version %d with %d messages", got.Version, len(got.Messages))
						return
					}
				}
			})
		}
		wg.Wait()
	})
}

// assertNoError and assertErrorIs report from any goroutine (require must
// only be used on the test's own goroutine).
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func assertErrorIs(t *testing.T, err, target error) bool {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error %v, want %v", err, target)
		return false
	}
	return true
}
