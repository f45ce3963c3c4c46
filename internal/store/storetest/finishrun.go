package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// exerciseFinishRun checks AppendMessagesParams.FinishRun: the turn and the
// run's final status are written together, or neither is.
func exerciseFinishRun[TTx any](t *testing.T, setup setupFunc[TTx]) {
	t.Run("WrittenTogether", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		r := createRun(t, ctx, s, "t1")
		fin := at("2031-01-01T00:00:00Z")
		v, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", Messages: []store.Message{textMsg("user", "q"), textMsg("assistant", "a")},
			FinishRun: &store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded, Output: js(`[{"type":"text","text":"a"}]`),
				Attempt: 1, Steps: 1, OutputTokens: 5, StartedAt: fin.Add(-time.Second), FinishedAt: fin},
		})
		require.NoError(t, err)
		require.Equal(t, int64(1), v)
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunSucceeded, got.Status)
		require.Equal(t, int64(5), got.OutputTokens)
		require.True(t, fin.Equal(got.FinishedAt), "finished at %v, want %v", got.FinishedAt, fin)
		conv, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Len(t, conv.Messages, 2)
	})
	t.Run("UnknownRunWritesNothing", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", Messages: []store.Message{textMsg("user", "q")},
			FinishRun: &store.UpdateRunParams{ID: "run_missing", Status: store.RunSucceeded},
		})
		require.ErrorIs(t, err, store.ErrNotFound)
		conv, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Empty(t, conv.Messages)
		require.Equal(t, int64(0), conv.Version)
	})
	t.Run("VersionConflictLeavesRunAlone", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		r := createRun(t, ctx, s, "t1")
		_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", ExpectedVersion: 7, Messages: []store.Message{textMsg("user", "q")},
			FinishRun: &store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded},
		})
		require.ErrorIs(t, err, store.ErrConflict)
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunQueued, got.Status)
	})
	t.Run("CreatedWithItsFirstTurn", func(t *testing.T) {
		s, ctx := setup(t)
		r := createRun(t, ctx, s, "t1")
		msgs := []store.Message{textMsg("user", "q"), textMsg("assistant", "a")}
		// The run cannot be finished: no conversation is left behind.
		_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: "conv_new", Tenant: "t1", Create: true, Agent: "demo", Messages: msgs,
			FinishRun: &store.UpdateRunParams{ID: "run_missing", Status: store.RunSucceeded},
		})
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.GetConversation(ctx, "t1", "conv_new")
		require.ErrorIs(t, err, store.ErrNotFound)

		v, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: "conv_new", Tenant: "t1", Create: true, Agent: "demo", Messages: msgs,
			FinishRun: &store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded, Attempt: 1, Steps: 1},
		})
		require.NoError(t, err)
		require.Equal(t, int64(1), v)
		conv, err := s.GetConversation(ctx, "t1", "conv_new")
		require.NoError(t, err)
		require.Equal(t, "demo", conv.Agent)
		require.Equal(t, int64(1), conv.Version)
		require.Len(t, conv.Messages, 2)
		require.True(t, conv.ExpiresAt.IsZero())

		// It exists now: creating it again is a conflict and writes nothing.
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: "conv_new", Tenant: "t1", Create: true, Agent: "demo", Messages: msgs,
		})
		require.ErrorIs(t, err, store.ErrConflict)
		conv, err = s.GetConversation(ctx, "t1", "conv_new")
		require.NoError(t, err)
		require.Len(t, conv.Messages, 2)
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: "conv_other", Tenant: "t1", Create: true, ExpectedVersion: 1, Messages: msgs,
		})
		require.Error(t, err, "a new conversation is at version 0")
	})
	t.Run("WithLastEvents", func(t *testing.T) {
		s, ctx := setup(t)
		c := createConv(t, ctx, s, "t1")
		r := createRun(t, ctx, s, "t1")
		require.NoError(t, s.SaveStep(ctx, nil, []store.Event{{RunID: r.ID, Seq: 1, Type: "start", Data: js(`{}`)}}))
		cp := &store.Checkpoint{RunID: r.ID, Step: 1, State: js(`{"step":1}`)}
		done := []store.Event{{RunID: r.ID, Seq: 2, Type: "done", Data: js(`{"ok":true}`)}}

		// A seq that does not continue the run: nothing at all is written.
		bad := []store.Event{{RunID: r.ID, Seq: 5, Type: "done", Data: js(`{}`)}}
		_, err := s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", Messages: []store.Message{textMsg("user", "q")},
			FinishRun: &store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded}, Checkpoint: cp, Events: bad,
		})
		require.ErrorIs(t, err, store.ErrConflict)
		conv, err := s.GetConversation(ctx, "t1", c.ID)
		require.NoError(t, err)
		require.Empty(t, conv.Messages)
		got, err := s.GetRun(ctx, "t1", r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunQueued, got.Status)
		_, err = s.LatestCheckpoint(ctx, r.ID)
		require.ErrorIs(t, err, store.ErrNotFound)

		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{
			ConversationID: c.ID, Tenant: "t1", Messages: []store.Message{textMsg("user", "q")},
			FinishRun: &store.UpdateRunParams{ID: r.ID, Status: store.RunSucceeded}, Checkpoint: cp, Events: done,
		})
		require.NoError(t, err)
		evs, err := s.ListEvents(ctx, r.ID, 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		require.Equal(t, "done", evs[1].Type)
		gotCP, err := s.LatestCheckpoint(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 1, gotCP.Step)
	})
}
