package storetest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
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

	// SaveStep: a checkpoint and 5 events a step; SaveStep16: 16 events,
	// about what one streamed chat turn stores.
	for _, n := range []int{5, 16} {
		name := "SaveStep"
		if n != 5 {
			name = fmt.Sprintf("SaveStep%d", n)
		}
		b.Run(name, func(b *testing.B) { benchmarkSaveStep(b, newStore, n) })
	}

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
	b.Run("AppendUsageBatch", func(b *testing.B) { benchmarkUsageBatch(b, newStore) })
}

// benchmarkUsageBatch writes batches of 100 gateway rows (no run), as
// internal/usagelog does at 1,000 calls a second, into a table that
// already holds 20,000 rows; time-ordered uids (what usagelog assigns)
// and random ones (what it assigned before).
func benchmarkUsageBatch(b *testing.B, newStore func(tb testing.TB) store.Store) {
	const batch, held = 100, 20_000
	for _, ids := range []struct {
		name string
		uid  func() string
	}{
		{"uid=time", func() string { u := uuid.Must(uuid.NewV7()); return hex.EncodeToString(u[:]) }},
		{"uid=random", func() string { u := uuid.New(); return hex.EncodeToString(u[:]) }},
	} {
		b.Run(ids.name, func(b *testing.B) {
			ctx := context.Background()
			s, ok := newStore(b).(store.Usage)
			if !ok {
				b.Skip("the store keeps no usage ledger")
			}
			rows := func() []store.UsageRecord {
				rs := make([]store.UsageRecord, batch)
				for i := range rs {
					rs[i] = store.UsageRecord{Tenant: "bench", Key: "key_1", Agent: "gateway", Model: "claude-sonnet-4-5",
						InputTokens: 12, OutputTokens: 40, CostUSD: 630_000, UID: ids.uid()}
				}
				return rs
			}
			for range held / batch {
				require.NoError(b, s.AppendUsageBatch(ctx, rows()))
			}
			b.ReportAllocs()
			var n int
			for b.Loop() {
				b.StopTimer()
				rs := rows()
				b.StartTimer()
				if err := s.AppendUsageBatch(ctx, rs); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*batch), "ns/row")
		})
	}
}

func benchmarkSaveStep(b *testing.B, newStore func(tb testing.TB) store.Store, events int) {
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
		evs := make([]store.Event, events)
		for i := range evs {
			seq++
			evs[i] = store.Event{RunID: "r", Seq: seq, Type: "delta", Data: data}
		}
		if err := s.SaveStep(ctx, &store.Checkpoint{RunID: "r", Step: step, State: state}, evs); err != nil {
			b.Fatal(err)
		}
	}
}
