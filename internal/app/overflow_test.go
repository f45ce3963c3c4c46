package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// admission.overflow: queue, on both stores: a chat refused for
// concurrency (max_chats 1, one chat holding the slot, a 200 ms queue wait)
// becomes a queued run: 202 with the run and Location; a worker runs it and
// the answer is there; a retry of the chat with its Idempotency-Key is
// answered from that run.
func TestChatOverflowToQueue(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
		if backend == "postgres" {
			storeURL = pgtest.Schema(t, pgtest.BaseURL(t), 0)
		}
		a := startApp(t, fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "%s"}
auth: {mode: none}
providers:
  anthropic: {sim_latency: 1500ms}
admission: {max_chats: 1, chat_queue: 1, queue_timeout: 200ms, overflow: queue}
worker: {poll_interval: 50ms}
agents:
  - name: demo
    model: claude-sonnet-4-5
`, storeURL))
		base := "http://" + a.Addr().String()
		held := make(chan answer, 1)
		go func() { // no require off the test's goroutine
			resp, err := http.Post(base+"/v1/chat", "application/json", strings.NewReader(`{"agent":"demo","message":"the first, holding the slot"}`))
			if err != nil {
				held <- answer{body: err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			held <- answer{status: resp.StatusCode, body: string(b)}
		}()
		require.Eventually(t, func() bool { return a.chats.InFlight() == 1 }, 10*time.Second, 5*time.Millisecond)

		req, err := http.NewRequest("POST", base+"/v1/chat", strings.NewReader(`{"agent":"demo","message":"the second, over the limit"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "overflow-1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var rb struct {
			ID, Status, Agent, ConversationID string
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&rb))
		resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
		require.Equal(t, "queue", resp.Header.Get("Agentd-Overflow"))
		require.True(t, strings.HasPrefix(rb.ID, "run_"), rb.ID)
		require.Equal(t, "/v1/runs/"+rb.ID, resp.Header.Get("Location"))
		require.Equal(t, "queued", rb.Status)
		require.Equal(t, "demo", rb.Agent)

		first := <-held
		require.Equal(t, http.StatusOK, first.status, first.body)

		var done struct {
			Status string          `json:"status"`
			Output json.RawMessage `json:"output"`
		}
		require.Eventually(t, func() bool {
			g := call(t, "GET", base+resp.Header.Get("Location"), "")
			require.Equal(t, http.StatusOK, g.status, g.body)
			require.NoError(t, json.Unmarshal([]byte(g.body), &done))
			return done.Status == "succeeded"
		}, 30*time.Second, 50*time.Millisecond, "a worker runs the overflowed chat")
		require.NotEmpty(t, done.Output)

		// The same chat again, with its key, now that there is room: the
		// key names the queued run, whose answer is replayed.
		again := callWithKey(t, base+"/v1/chat", `{"agent":"demo","message":"the second, over the limit"}`, "overflow-1")
		require.Equal(t, http.StatusOK, again.status, again.body)
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	})
}

func callWithKey(t *testing.T, url, body, key string) answer {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start)}
}
