package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// exerciseFinishRun checks AppendMessagesParams.FinishRun: the turn and the
// run's final status are written together, or neither is.
func exerciseFinishRun(t *testing.T, setup setupFunc) {
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
}
