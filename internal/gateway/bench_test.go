package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/ratelimit"
)

// BenchmarkGatewayProxiedRequest tracks what the gateway costs per proxied
// request, with auth, rate limits (requests and tokens), the key pool and
// usage accounting (a SQLite row per call) on. allocs/op counts every
// allocation in the process (client, gateway, sim), so it also measures b.N
// direct calls to the sim and reports the difference as
// gateway-allocs/req: the gateway's own share.
func BenchmarkGatewayProxiedRequest(b *testing.B) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"json", `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hello benchmark"}]}`},
		{"stream", `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello benchmark"}]}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lim := ratelimit.New(ratelimit.Config{Key: ratelimit.Limits{RequestsPerMinute: 1e12, TokensPerMinute: 1e15}})
			h := newHarness(b, func(c *harnessConfig) { c.rateLimit = lim })
			h.recordOff()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			post := func(url, key string) {
				req, err := http.NewRequest(http.MethodPost, url+"/v1/messages", bytes.NewReader([]byte(tc.body)))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Api-Key", key)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			post(h.SimURL, primary) // warm both paths
			post(h.URL, h.Token)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.Mallocs
			n := 0
			for b.Loop() {
				post(h.URL, h.Token)
				n++
			}
			runtime.ReadMemStats(&ms)
			through := ms.Mallocs - before
			// The same number of calls straight to the sim: the client's
			// and the sim's share of the allocations.
			runtime.ReadMemStats(&ms)
			before = ms.Mallocs
			start := time.Now()
			for range n {
				post(h.SimURL, primary)
			}
			directNs := time.Since(start).Nanoseconds()
			runtime.ReadMemStats(&ms)
			direct := ms.Mallocs - before
			b.ReportMetric(float64(directNs)/float64(n), "direct-ns/req")
			b.ReportMetric(float64(direct)/float64(n), "direct-allocs/req")
			b.ReportMetric((float64(through)-float64(direct))/float64(n), "gateway-allocs/req")
		})
	}
}
