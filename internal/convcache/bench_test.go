package convcache_test

import (
	"context"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/convcache"
	"github.com/agentd/agentd/internal/store"
)

// BenchmarkRead isolates what a turn's conversation read costs on
// PostgreSQL (AGENTD_TEST_POSTGRES_URL) for a conversation of 100 messages
// of about 1 KiB (a 50-turn conversation): the history from the store
// (a miss, or the cache off) against the version check and the cached
// history (a hit).
func BenchmarkRead(b *testing.B) {
	for _, backend := range []string{"postgres", "sqlite"} {
		b.Run(backend, func(b *testing.B) {
			st := openStore(b, backend)
			ctx := context.Background()
			create(b, st, "t1", "conv1")
			msgs := make([]store.Message, 100)
			for i := range msgs {
				msgs[i] = store.Message{Role: []string{"user", "assistant"}[i%2], Content: text(strings.Repeat("lorem ipsum ", 85))}
			}
			_, err := st.AppendMessages(ctx, store.AppendMessagesParams{ConversationID: "conv1", Tenant: "t1", Messages: msgs})
			if err != nil {
				b.Fatal(err)
			}
			for _, mode := range []struct {
				name  string
				bytes int64
			}{{"store", 0}, {"cache-hit", 1 << 20}} {
				b.Run(mode.name, func(b *testing.B) {
					c := convcache.New(mode.bytes, nil)
					if _, err := c.GetConversation(ctx, st, "t1", "conv1"); err != nil {
						b.Fatal(err)
					}
					before := c.Stats().StoreReadBytes
					b.ResetTimer()
					for range b.N {
						conv, err := c.GetConversation(ctx, st, "t1", "conv1")
						if err != nil || len(conv.Messages) != 100 {
							b.Fatal(err, len(conv.Messages))
						}
					}
					b.ReportMetric(float64(c.Stats().StoreReadBytes-before)/float64(b.N), "store-B/read")
				})
			}
		})
	}
}
