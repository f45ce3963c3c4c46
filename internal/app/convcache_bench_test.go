package app

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// BenchmarkStickySessions: two API instances on one PostgreSQL database,
// conversations of 50 turns (each turn a sync chat with a 1 KiB message,
// answered by the in-process simulator), 8 conversations at a time
// (-sticky.parallel):
//
//   - cache-off: sessions.cache_bytes 0, turns alternate between the
//     instances (as without affinity);
//   - no-affinity: the cache on, turns alternate between the instances
//     (the worst case of a balancer without affinity);
//   - affinity: the cache on, every turn of a conversation on one instance
//     (what upstream-hash-by on Agentd-Conversation-Id does).
//
// Each iteration is one conversation: run with -benchtime=Nx. Reported per
// turn: store bytes read by conversation reads, p50 and p99 latency, the
// cache hit ratio. docs/benchmarks.md#sticky-sessions has the command and
// numbers.
// stickyParallel is how many conversations BenchmarkStickySessions runs at
// a time (go test ... -args -sticky.parallel=1).
var stickyParallel = flag.Int("sticky.parallel", 8, "BenchmarkStickySessions: conversations at a time")

func BenchmarkStickySessions(b *testing.B) {
	base := pgtest.BaseURL(b)
	const turns = 50
	parallel := *stickyParallel
	for _, mode := range []struct {
		name       string
		cacheBytes int64
		affinity   bool
	}{{"cache-off", 0, false}, {"no-affinity", 64 << 20, false}, {"affinity", 64 << 20, true}} {
		b.Run(mode.name, func(b *testing.B) {
			yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: %q
auth:
  mode: none
sessions:
  cache_bytes: %d
admission:
  max_chats: 64
agents:
  - name: demo
    model: claude-sonnet-4-5
`, pgtest.Schema(b, base, 16), mode.cacheBytes)
			apps := []*App{startApp(b, yaml), startApp(b, yaml)}
			pad := strings.Repeat("lorem ipsum ", 1024/12)
			var (
				mu    sync.Mutex
				lat   []time.Duration
				next  int
				fails int
			)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range parallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					client := &http.Client{Timeout: time.Minute}
					for {
						mu.Lock()
						c := next
						next++
						mu.Unlock()
						if c >= b.N {
							return
						}
						convID := ""
						for k := range turns {
							a := apps[(c+k)%2]
							if mode.affinity {
								a = apps[c%2]
							}
							body, _ := json.Marshal(map[string]any{"agent": "demo", "conversation_id": convID,
								"message": fmt.Sprintf("conversation %d, turn %d: %s", c, k, pad)})
							start := time.Now()
							resp, err := client.Post("http://"+a.Addr().String()+"/v1/chat", "application/json", strings.NewReader(string(body)))
							took := time.Since(start)
							if err != nil || resp.StatusCode != http.StatusOK {
								mu.Lock()
								fails++
								mu.Unlock()
								if resp != nil {
									resp.Body.Close()
								}
								return
							}
							convID = resp.Header.Get("Agentd-Conversation-Id")
							resp.Body.Close()
							mu.Lock()
							lat = append(lat, took)
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if fails > 0 {
				b.Fatalf("%d conversations failed", fails)
			}
			var read, hits, misses int64
			for _, a := range apps {
				st := a.convCache.Stats()
				read += st.StoreReadBytes
				hits += st.Hits
				misses += st.Misses
			}
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(float64(read)/float64(len(lat)), "store-B/turn")
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			if hits+misses > 0 {
				b.ReportMetric(float64(hits)/float64(hits+misses), "hit-ratio")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
