package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Benchmark measures the hot path of a chat (append a turn, save a step,
// read a conversation) on the stores newStore returns (migrated, empty,
// closed by b.Cleanup), so that every backend is measured alike.
func Benchmark(b *testing.B, newStore func(tb testing.TB) store.Store) {
	b.Run("AppendMessages", func(b *testing.B) {
		ctx := context.Background()
		s := newStore(b)
		c, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
		require.NoError(b, err)
		content := json.RawMessage(`[{"type":"text","text":"` + strings.Repeat("lorem ipsum ", 20) + `"}]`)
		v := c.Version
		b.ReportAllocs()
		for b.Loop() {
			v, err = s.AppendMessages(ctx, store.AppendMessagesParams{
				ConversationID: c.ID, Tenant: "t", ExpectedVersion: v,
				Messages: []store.Message{{Role: "user", Content: content, Tokens: 60}},
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("SaveStep", func(b *testing.B) {
		ctx := context.Background()
		s := newStore(b)
		require.NoError(b, s.CreateRun(ctx, store.Run{ID: "r", Tenant: "t", Agent: "a", Status: store.RunRunning}))
		state := json.RawMessage(`{"messages":[` + strings.TrimSuffix(strings.Repeat(`{"role":"user","content":"hello"},`, 30), ",") + `]}`)
		data := json.RawMessage(`{"type":"content_block_delta","delta":{"type":"text_delta","text":"hello"}}`)
		seq := int64(0)
		step := 0
		b.ReportAllocs()
		for b.Loop() {
			step++
			evs := make([]store.Event, 5)
			for i := range evs {
				seq++
				evs[i] = store.Event{RunID: "r", Seq: seq, Type: "delta", Data: data}
			}
			if err := s.SaveStep(ctx, &store.Checkpoint{RunID: "r", Step: step, State: state}, evs); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("GetConversation", func(b *testing.B) {
		ctx := context.Background()
		s := newStore(b)
		_, err := s.CreateConversation(ctx, store.CreateConversationParams{ID: "c", Tenant: "t", Agent: "a"})
		require.NoError(b, err)
		msgs := make([]store.Message, 20)
		for i := range msgs {
			msgs[i] = store.Message{Role: "user", Tokens: 60,
				Content: json.RawMessage(fmt.Sprintf(`[{"type":"text","text":"%d %s"}]`, i, strings.Repeat("lorem ipsum ", 20)))}
		}
		_, err = s.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "c", Tenant: "t", Messages: msgs})
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			c, err := s.GetConversation(ctx, "t", "c")
			if err != nil || len(c.Messages) != 20 {
				b.Fatal(err, len(c.Messages))
			}
		}
	})
	b.Run("Feedback", func(b *testing.B) { benchmarkFeedback(b, newStore) })
}
