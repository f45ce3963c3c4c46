package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/convcache"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// recordingModel is the simulator behind a recorder of the messages each
// model call carried: the test's oracle for the history a turn saw.
type recordingModel struct {
	mu    sync.Mutex
	calls [][]wireMessage
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

func startRecordingModel(t *testing.T) (*recordingModel, string) {
	t.Helper()
	m := &recordingModel{}
	s := sim.New(sim.Config{}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Messages []wireMessage `json:"messages"`
		}
		if strings.HasSuffix(r.URL.Path, "/v1/messages") && json.Unmarshal(body, &req) == nil {
			m.mu.Lock()
			m.calls = append(m.calls, req.Messages)
			m.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return m, srv.URL
}

func (m *recordingModel) last() []wireMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[len(m.calls)-1]
}

// textOf is the text of a message's content (a string or text blocks).
func textOf(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(raw, &blocks), string(raw))
	var sb strings.Builder
	for _, b := range blocks {
		sb.WriteString(b.Text)
	}
	return sb.String()
}

// TestConversationCacheAcrossInstances: two agentd instances on one store
// take turns of one conversation, alternating, then on one instance only.
// Every model call carries the whole, current history (the model's own
// record is the oracle: never a stale read), the responses carry
// Agentd-Conversation-Id, and each instance counts a miss when the other
// one wrote last and a hit when it wrote last itself.
func TestConversationCacheAcrossInstances(t *testing.T) {
	t.Parallel()
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		model, modelURL := startRecordingModel(t)
		storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
		if backend == "postgres" {
			storeURL = pgtest.Schema(t, pgtest.BaseURL(t), 8)
		}
		yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: %q
auth:
  mode: none
providers:
  anthropic:
    base_url: %q
    api_key: sk-test
    simulate: never
agents:
  - name: demo
    model: claude-sonnet-4-5
`, storeURL, modelURL)
		apps := []*App{startApp(t, yaml), startApp(t, yaml)}

		type turnRec struct{ question, answer string }
		var history []turnRec
		convID := ""
		// Turns 0-5 alternate between the instances, 6-9 stay on the
		// first one.
		for k := range 10 {
			a := apps[0]
			if k < 6 && k%2 == 1 {
				a = apps[1]
			}
			q := fmt.Sprintf("question number %d", k)
			body, _ := json.Marshal(map[string]any{"agent": "demo", "message": q, "conversation_id": convID})
			res := call(t, "POST", "http://"+a.Addr().String()+"/v1/chat", string(body))
			require.Equal(t, http.StatusOK, res.status, res.body)
			var ans struct {
				ConversationID string          `json:"conversation_id"`
				Content        json.RawMessage `json:"content"`
			}
			require.NoError(t, json.Unmarshal([]byte(res.body), &ans))
			if convID == "" {
				convID = ans.ConversationID
			}
			require.Equal(t, convID, ans.ConversationID)
			require.Equal(t, convID, res.header.Get("Agentd-Conversation-Id"))

			// The model saw every earlier turn, in order, and this one.
			got := model.last()
			require.Len(t, got, 2*k+1, "turn %d: the model got a history of another length", k)
			for i, tr := range history {
				require.Equal(t, "user", got[2*i].Role)
				require.Equal(t, tr.question, textOf(t, got[2*i].Content), "turn %d, message %d", k, 2*i)
				require.Equal(t, "assistant", got[2*i+1].Role)
				require.Equal(t, tr.answer, textOf(t, got[2*i+1].Content), "turn %d, message %d", k, 2*i+1)
			}
			require.Equal(t, q, textOf(t, got[2*k].Content))
			history = append(history, turnRec{question: q, answer: textOf(t, ans.Content)})
		}

		// Instance 0 created the conversation (turn 0: cached at once) and
		// took turns 2, 4 (the other one wrote last: misses), 6 (a miss:
		// turn 5 was on instance 1) and 7-9 (hits). Instance 1 took
		// turns 1, 3 and 5: misses.
		s0, s1 := apps[0].convCache.Stats(), apps[1].convCache.Stats()
		require.Equal(t, [2]int64{3, 3}, [2]int64{s0.Hits, s0.Misses}, "instance 0: hits, misses")
		require.Equal(t, [2]int64{0, 3}, [2]int64{s1.Hits, s1.Misses}, "instance 1: hits, misses")
		require.Equal(t, 1, s0.Entries)

		// The same numbers on /metrics.
		res := call(t, "GET", "http://"+apps[0].Addr().String()+"/metrics", "")
		require.Contains(t, res.body, "agentd_conversation_cache_hits_total 3\n")
		require.Contains(t, res.body, "agentd_conversation_cache_misses_total 3\n")
		require.Contains(t, res.body, "agentd_conversation_cache_evictions_total 0\n")
		require.Contains(t, res.body, fmt.Sprintf("agentd_conversation_cache_bytes %d\n", s0.Bytes))

		// GET /v1/conversations/{id} through the cache is the history.
		conv := call(t, "GET", "http://"+apps[0].Addr().String()+"/v1/conversations/"+convID, "")
		require.Equal(t, http.StatusOK, conv.status, conv.body)
		var cb struct {
			Version  int64 `json:"version"`
			Messages []struct {
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		require.NoError(t, json.Unmarshal([]byte(conv.body), &cb))
		require.Equal(t, int64(10), cb.Version)
		require.Len(t, cb.Messages, 20)
		require.Equal(t, history[9].answer, textOf(t, cb.Messages[19].Content))

		// A conversation cached on instance 0, deleted through instance 1:
		// instance 0 no longer serves it.
		other := ""
		for k := range 2 {
			body, _ := json.Marshal(map[string]any{"agent": "demo", "message": fmt.Sprintf("other %d", k), "conversation_id": other})
			res := call(t, "POST", "http://"+apps[0].Addr().String()+"/v1/chat", string(body))
			require.Equal(t, http.StatusOK, res.status, res.body)
			other = res.header.Get("Agentd-Conversation-Id")
		}
		del := call(t, "DELETE", "http://"+apps[1].Addr().String()+"/v1/conversations/"+other, "")
		require.Equal(t, http.StatusNoContent, del.status, del.body)
		body, _ := json.Marshal(map[string]any{"agent": "demo", "message": "after the delete", "conversation_id": other})
		gone := call(t, "POST", "http://"+apps[0].Addr().String()+"/v1/chat", string(body))
		require.Equal(t, http.StatusNotFound, gone.status, gone.body)
		gone = call(t, "GET", "http://"+apps[0].Addr().String()+"/v1/conversations/"+other, "")
		require.Equal(t, http.StatusNotFound, gone.status, gone.body)

		// GET /v1/runs/{id} names the conversation too.
		sub := call(t, "POST", "http://"+apps[1].Addr().String()+"/v1/runs",
			fmt.Sprintf(`{"agent":"demo","message":"queued turn","conversation_id":%q}`, convID))
		require.Equal(t, http.StatusAccepted, sub.status, sub.body)
		require.Equal(t, convID, sub.header.Get("Agentd-Conversation-Id"))
		got := call(t, "GET", "http://"+apps[0].Addr().String()+sub.header.Get("Location"), "")
		require.Equal(t, http.StatusOK, got.status, got.body)
		require.Equal(t, convID, got.header.Get("Agentd-Conversation-Id"))
	})
}

// The cache is off with sessions.cache_bytes 0: every read is a miss.
func TestConversationCacheOff(t *testing.T) {
	t.Parallel()
	a := startApp(t, fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: sqlite://%s
auth:
  mode: none
sessions:
  cache_bytes: 0
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))))
	convID := ""
	for k := range 3 {
		body, _ := json.Marshal(map[string]any{"agent": "demo", "message": fmt.Sprintf("q%d", k), "conversation_id": convID})
		res := call(t, "POST", "http://"+a.Addr().String()+"/v1/chat", string(body))
		require.Equal(t, http.StatusOK, res.status, res.body)
		convID = res.header.Get("Agentd-Conversation-Id")
		require.NotEmpty(t, convID)
	}
	st := a.convCache.Stats()
	require.Equal(t, convcache.Stats{Misses: 2, StoreReadBytes: st.StoreReadBytes}, st)

	// A streamed turn names its conversation in the stream's headers too.
	body, _ := json.Marshal(map[string]any{"agent": "demo", "message": "streamed", "conversation_id": convID, "stream": true})
	res := call(t, "POST", "http://"+a.Addr().String()+"/v1/chat", string(body))
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Equal(t, "text/event-stream", res.header.Get("Content-Type"))
	require.Equal(t, convID, res.header.Get("Agentd-Conversation-Id"))
	require.Contains(t, res.body, "event: done")
}
