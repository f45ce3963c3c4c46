package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// concApp starts agentd on backend with agent demo under policy (and tools
// calculator and clock), the sim answering after latency.
func concApp(t *testing.T, backend, policy string, latency time.Duration, extra string) (*App, string) {
	t.Helper()
	storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
	if backend == "postgres" {
		storeURL = pgtest.Schema(t, pgtest.BaseURL(t), 0)
	}
	a := startApp(t, fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s}
store: {url: "%s"}
auth: {mode: none}
providers:
  anthropic: {sim_latency: %s}
worker: {poll_interval: 50ms, reclaim_interval: 200ms}
%s
agents:
  - name: demo
    model: claude-sonnet-4-5
    concurrency_policy: %s
    max_messages: 10000
    # A chat waits for the turns ahead of it within its timeout: 100
    # queued turns on SQLite take ~40 s on a quiet machine, over 2 min
    # (the default) on a loaded CI one.
    timeout: 10m
    tools: [calculator, clock]
`, storeURL, latency, extra, policy))
	return a, "http://" + a.Addr().String()
}

type chatAnswer struct {
	RunID          string `json:"run_id"`
	ConversationID string `json:"conversation_id"`
	Text           string `json:"text"`
}

func getRun(t *testing.T, base, id string) runRow {
	t.Helper()
	g := call(t, "GET", base+"/v1/runs/"+id, "")
	require.Equal(t, http.StatusOK, g.status, g.body)
	var rr runRow
	require.NoError(t, json.Unmarshal([]byte(g.body), &rr))
	return rr
}

type convMessage struct {
	Role    string `json:"role"`
	Content []struct {
		Type      string `json:"type"`
		Text      string `json:"text"`
		ToolUseID string `json:"tool_use_id"`
		IsError   bool   `json:"is_error"`
	} `json:"content"`
}

func getHistory(t *testing.T, base, conv string) []convMessage {
	t.Helper()
	g := call(t, "GET", base+"/v1/conversations/"+conv, "")
	require.Equal(t, http.StatusOK, g.status, g.body)
	var c struct {
		Messages []convMessage `json:"messages"`
	}
	require.NoError(t, json.Unmarshal([]byte(g.body), &c))
	return c.Messages
}

// userTexts are the texts of the user messages that are not tool results.
func userTexts(msgs []convMessage) []string {
	var out []string
	for _, m := range msgs {
		if m.Role == "user" && len(m.Content) > 0 && m.Content[0].Type == "text" {
			out = append(out, m.Content[0].Text)
		}
	}
	return out
}

// concurrency_policy enqueue, on both stores: 100 messages sent at once to
// one conversation are all answered (200), each run has its own turn, and
// the conversation holds each turn exactly once, in turn order (the order
// the server accepted them), each user message followed by its answer.
func TestEnqueueHundredConcurrentMessages(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		_, base := concApp(t, backend, "enqueue", 5*time.Millisecond, "")
		first := call(t, "POST", base+"/v1/chat", `{"agent":"demo","message":"first"}`)
		require.Equal(t, http.StatusOK, first.status, first.body)
		var a0 chatAnswer
		require.NoError(t, json.Unmarshal([]byte(first.body), &a0))
		require.EqualValues(t, 1, getRun(t, base, a0.RunID).Turn)

		const n = 100
		answers := make([]answer, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				body := fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"message %d"}`, a0.ConversationID, i)
				resp, err := http.Post(base+"/v1/chat", "application/json", strings.NewReader(body))
				if err != nil {
					answers[i] = answer{body: err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answers[i] = answer{status: resp.StatusCode, body: string(b)}
			}()
		}
		began := time.Now()
		close(start)
		wg.Wait()
		t.Logf("%s: %d concurrent messages answered in %s", backend, n, time.Since(began))

		type turn struct {
			turn int64
			msg  string
		}
		var turns []turn
		seen := map[int64]bool{1: true}
		for i, a := range answers {
			require.Equal(t, http.StatusOK, a.status, "message %d: %s", i, a.body)
			var ca chatAnswer
			require.NoError(t, json.Unmarshal([]byte(a.body), &ca))
			require.Equal(t, a0.ConversationID, ca.ConversationID)
			require.NotEmpty(t, ca.Text)
			rr := getRun(t, base, ca.RunID)
			require.Equal(t, "succeeded", rr.Status)
			require.False(t, seen[rr.Turn], "turn %d handed out twice", rr.Turn)
			seen[rr.Turn] = true
			turns = append(turns, turn{rr.Turn, fmt.Sprintf("message %d", i)})
		}
		slices.SortFunc(turns, func(a, b turn) int { return int(a.turn - b.turn) })
		want := []string{"first"}
		for i, tn := range turns {
			require.EqualValues(t, i+2, tn.turn, "turns are 1..101 without gaps")
			want = append(want, tn.msg)
		}
		msgs := getHistory(t, base, a0.ConversationID)
		require.Equal(t, want, userTexts(msgs), "each turn once, in the order the server accepted them")
		require.Len(t, msgs, 2*(n+1), "each user message with its one answer")
		for i := 0; i < len(msgs); i += 2 {
			require.Equal(t, "user", msgs[i].Role)
			require.Equal(t, "assistant", msgs[i+1].Role)
		}
	})
}

// postAsync starts a chat in the background; its answer arrives on the
// channel.
func postAsync(base, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		start := time.Now()
		resp, err := http.Post(base+"/v1/chat", "application/json", strings.NewReader(body))
		if err != nil {
			ch <- answer{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- answer{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start)}
	}()
	return ch
}

// startSlowTurn creates a conversation, then starts a chat on it whose
// model calls take the sim's latency each: it asks for the clock, so its
// first call answers with a tool_use, the tool result is checkpointed,
// and its second call is in flight when this returns. It returns the
// conversation, the slow run and the channel of its answer.
func startSlowTurn(t *testing.T, base string) (conv, runID string, slow <-chan answer) {
	t.Helper()
	first := call(t, "POST", base+"/v1/chat", `{"agent":"demo","message":"hello"}`)
	require.Equal(t, http.StatusOK, first.status, first.body)
	var a0 chatAnswer
	require.NoError(t, json.Unmarshal([]byte(first.body), &a0))
	slow = postAsync(base, fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"what does the clock say"}`, a0.ConversationID))
	// Its run: the conversation's running run.
	require.Eventually(t, func() bool {
		g := call(t, "GET", base+"/v1/runs?status=running", "")
		var page struct {
			Runs []runRow `json:"runs"`
		}
		if json.Unmarshal([]byte(g.body), &page) != nil {
			return false
		}
		for _, r := range page.Runs {
			if r.ConversationID == a0.ConversationID {
				runID = r.ID
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
	// The tool result is checkpointed: its events say so.
	require.Eventually(t, func() bool {
		return strings.Contains(readFor(base+"/v1/runs/"+runID+"/events", 200*time.Millisecond), "tool_result")
	}, 20*time.Second, 10*time.Millisecond)
	return a0.ConversationID, runID, slow
}

// concurrency_policy interrupt through the HTTP API, on both stores: a
// message to a conversation whose run is in its second (slow) model call
// stops that run at once; it ends interrupted and keeps what it
// checkpointed (its tool_use and result), and the new message is answered
// on that history, long before the slow call would have returned.
func TestInterruptPolicyOverHTTP(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		_, base := concApp(t, backend, "reject", 1500*time.Millisecond, "")
		conv, slowID, slow := startSlowTurn(t, base)

		sent := time.Now()
		next := call(t, "POST", base+"/v1/chat",
			fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"never mind","concurrency_policy":"interrupt"}`, conv))
		require.Equal(t, http.StatusOK, next.status, next.body)
		require.Less(t, time.Since(sent), 3*time.Second, "one model call, not the rest of the slow run")

		s := <-slow
		require.NotEqual(t, http.StatusOK, s.status, s.body)
		require.Contains(t, s.body, "interrupted")
		rr := getRun(t, base, slowID)
		require.Equal(t, "interrupted", rr.Status, rr.Error)

		msgs := getHistory(t, base, conv)
		require.Equal(t, []string{"hello", "what does the clock say", "never mind"}, userTexts(msgs))
		// hello, answer, the slow turn's question, its tool_use, the tool
		// result, never mind, answer.
		require.Len(t, msgs, 7)
		require.Equal(t, "tool_use", msgs[3].Content[len(msgs[3].Content)-1].Type)
		require.Equal(t, "tool_result", msgs[4].Content[0].Type)
		require.Equal(t, "assistant", msgs[6].Role)

		// The same through /v1/runs: a run a worker executes (its
		// conversation not created yet), interrupted by an async message.
		r1 := call(t, "POST", base+"/v1/runs", `{"agent":"demo","message":"what does the clock say"}`)
		require.Equal(t, http.StatusAccepted, r1.status, r1.body)
		var run1 runRow
		require.NoError(t, json.Unmarshal([]byte(r1.body), &run1))
		require.Eventually(t, func() bool {
			return strings.Contains(readFor(base+"/v1/runs/"+run1.ID+"/events", 200*time.Millisecond), "tool_result")
		}, 20*time.Second, 10*time.Millisecond)
		r2 := call(t, "POST", base+"/v1/runs",
			fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"stop that","concurrency_policy":"interrupt"}`, run1.ConversationID))
		require.Equal(t, http.StatusAccepted, r2.status, r2.body)
		var run2 runRow
		require.NoError(t, json.Unmarshal([]byte(r2.body), &run2))
		require.Eventually(t, func() bool { return getRun(t, base, run2.ID).Status == "succeeded" }, 20*time.Second, 20*time.Millisecond)
		require.Equal(t, "interrupted", getRun(t, base, run1.ID).Status)
		msgs = getHistory(t, base, run1.ConversationID)
		require.Equal(t, []string{"what does the clock say", "stop that"}, userTexts(msgs))
		require.Len(t, msgs, 5, "the interrupted turn as checkpointed (question, tool_use, result), then the new one")
	})
}

// concurrency_policy rollback through the HTTP API, on both stores: the
// slow run is canceled and nothing of its turn reaches the conversation;
// the new message runs as if it had not been sent.
func TestRollbackPolicyOverHTTP(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		_, base := concApp(t, backend, "rollback", 1500*time.Millisecond, "")
		conv, slowID, slow := startSlowTurn(t, base)

		sent := time.Now()
		next := call(t, "POST", base+"/v1/chat",
			fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"start over"}`, conv))
		require.Equal(t, http.StatusOK, next.status, next.body)
		require.Less(t, time.Since(sent), 3*time.Second)

		s := <-slow
		require.NotEqual(t, http.StatusOK, s.status, s.body)
		rr := getRun(t, base, slowID)
		require.Equal(t, "canceled", rr.Status, rr.Error)

		msgs := getHistory(t, base, conv)
		require.Equal(t, []string{"hello", "start over"}, userTexts(msgs))
		require.Len(t, msgs, 4, "nothing of the canceled turn")
	})
}

// readFor reads what a stream sends within d.
func readFor(url string, d time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A chat that waits for its turn longer than its agent's timeout is
// answered 409 turn_timeout with its run and Location; its message is not
// lost: it stays queued and a worker runs it in its turn, after the
// messages accepted before it. A bad policy is a 400 naming the field.
func TestEnqueueTurnTimeoutKeepsTheMessage(t *testing.T) {
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
worker: {poll_interval: 50ms, reclaim_interval: 200ms, lease_ttl: 3s}
agents:
  - name: demo
    model: claude-sonnet-4-5
    concurrency_policy: enqueue
    timeout: 2s
`, storeURL))
		base := "http://" + a.Addr().String()

		bad := call(t, "POST", base+"/v1/chat", `{"agent":"demo","message":"x","concurrency_policy":"queue"}`)
		require.Equal(t, http.StatusBadRequest, bad.status, bad.body)
		require.Contains(t, bad.body, "concurrency_policy")
		bad = call(t, "POST", base+"/v1/runs", `{"agent":"demo","message":"x","concurrency_policy":"later"}`)
		require.Equal(t, http.StatusBadRequest, bad.status, bad.body)
		require.Contains(t, bad.body, "concurrency_policy")

		// Two async messages, one after the other: 3 s of model calls.
		r1 := call(t, "POST", base+"/v1/runs", `{"agent":"demo","message":"one"}`)
		require.Equal(t, http.StatusAccepted, r1.status, r1.body)
		var run1 runRow
		require.NoError(t, json.Unmarshal([]byte(r1.body), &run1))
		require.EqualValues(t, 1, run1.Turn)
		r2 := call(t, "POST", base+"/v1/runs", fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"two"}`, run1.ConversationID))
		require.Equal(t, http.StatusAccepted, r2.status, r2.body, "queued behind the first, whose conversation does not exist yet")
		var run2 runRow
		require.NoError(t, json.Unmarshal([]byte(r2.body), &run2))
		require.EqualValues(t, 2, run2.Turn)

		pending := postAsync(base, fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"three"}`, run1.ConversationID))

		// Once the conversation exists, a message under reject is refused
		// at once while turns are unfinished: run now, it would make a
		// queued turn fail at its commit.
		require.Eventually(t, func() bool { return getRun(t, base, run1.ID).Status == "succeeded" }, 30*time.Second, 10*time.Millisecond)
		rj := call(t, "POST", base+"/v1/chat",
			fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"rejected","concurrency_policy":"reject"}`, run1.ConversationID))
		require.Equal(t, http.StatusConflict, rj.status, rj.body)
		require.Contains(t, rj.body, "concurrency_policy enqueue")

		c := <-pending
		require.Equal(t, http.StatusConflict, c.status, c.body)
		var e struct {
			Error struct{ Type, Message, RunID string } `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.body), &e))
		require.Equal(t, "turn_timeout", e.Error.Type)
		require.Contains(t, e.Error.Message, "queued as run")
		var body struct {
			Error struct {
				RunID string `json:"run_id"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.body), &body))
		require.NotEmpty(t, body.Error.RunID)
		require.Equal(t, "/v1/runs/"+body.Error.RunID, c.header.Get("Location"))
		require.GreaterOrEqual(t, c.took, 2*time.Second)

		require.Eventually(t, func() bool {
			return getRun(t, base, body.Error.RunID).Status == "succeeded"
		}, 30*time.Second, 50*time.Millisecond, "the timed-out chat's message runs in its turn")
		require.Equal(t, "succeeded", getRun(t, base, run1.ID).Status)
		require.Equal(t, "succeeded", getRun(t, base, run2.ID).Status)
		require.Equal(t, []string{"one", "two", "three"}, userTexts(getHistory(t, base, run1.ConversationID)))
	})
}

// startRole starts agentd in role with yaml; stop ends it (a drain: runs in
// flight are suspended and resumed elsewhere).
func startRole(t *testing.T, yaml, role string) (*App, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	a, err := New(t.Context(), cfg, Options{LogOutput: &syncLog{}, Version: "test", Role: role})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-errc:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	waitReady(t, a)
	return a, stop
}

// The order of enqueued messages is durable and holds across processes:
// async messages queued behind each other survive the stop of the process
// that executes them (SQLite: the single binary restarted on its file;
// PostgreSQL: the cluster tier, an API instance and a worker replaced by
// another one), and run in their turns; a synchronous chat sent last
// through the API instance waits for all of them and is answered.
func TestEnqueueSurvivesRestartAcrossProcesses(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
		if backend == "postgres" {
			storeURL = pgtest.Schema(t, pgtest.BaseURL(t), 0)
		}
		yaml := fmt.Sprintf(`server: {addr: "127.0.0.1:0", drain_delay: 0s, drain_timeout: 1s}
store: {url: "%s"}
auth: {mode: none}
providers:
  anthropic: {sim_latency: 600ms}
worker: {poll_interval: 50ms, reclaim_interval: 200ms, lease_ttl: 3s}
agents:
  - name: demo
    model: claude-sonnet-4-5
    concurrency_policy: enqueue
`, storeURL)
		var api *App
		var stopWorker func()
		if backend == "postgres" {
			api, _ = startRole(t, yaml, RoleAPI)
			_, stopWorker = startRole(t, yaml, RoleWorker)
		} else {
			api, stopWorker = startRole(t, yaml, RoleAll)
		}
		base := "http://" + api.Addr().String()

		const n = 6
		var runs []runRow
		conv := ""
		for i := range n {
			body := fmt.Sprintf(`{"agent":"demo","message":"m%d"}`, i)
			if conv != "" {
				body = fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"m%d"}`, conv, i)
			}
			r := call(t, "POST", base+"/v1/runs", body)
			require.Equal(t, http.StatusAccepted, r.status, r.body)
			var rr runRow
			require.NoError(t, json.Unmarshal([]byte(r.body), &rr))
			require.EqualValues(t, i+1, rr.Turn)
			conv = rr.ConversationID
			runs = append(runs, rr)
		}
		// Two turns done, the rest queued (one perhaps running): stop the
		// process that executes them.
		require.Eventually(t, func() bool { return getRun(t, base, runs[1].ID).Status == "succeeded" },
			30*time.Second, 20*time.Millisecond)
		stopWorker()
		if backend == "postgres" {
			_, _ = startRole(t, yaml, RoleWorker)
		} else {
			api, _ = startRole(t, yaml, RoleAll)
			base = "http://" + api.Addr().String()
		}
		last := call(t, "POST", base+"/v1/chat", fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"last"}`, conv))
		require.Equal(t, http.StatusOK, last.status, last.body)
		for _, r := range runs {
			require.Equal(t, "succeeded", getRun(t, base, r.ID).Status, r.ID)
		}
		want := []string{}
		for i := range n {
			want = append(want, fmt.Sprintf("m%d", i))
		}
		want = append(want, "last")
		require.Equal(t, want, userTexts(getHistory(t, base, conv)), "each turn once, in order, across the restart")
	})
}

// A streaming chat under enqueue waits for its turn and then streams its
// run's events as any chat does, ending with done; the turn before it is
// answered first.
func TestEnqueueStreamingChat(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		_, base := concApp(t, backend, "enqueue", 800*time.Millisecond, "")
		first := call(t, "POST", base+"/v1/chat", `{"agent":"demo","message":"hello"}`)
		require.Equal(t, http.StatusOK, first.status, first.body)
		var a0 chatAnswer
		require.NoError(t, json.Unmarshal([]byte(first.body), &a0))

		busy := postAsync(base, fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"busy one"}`, a0.ConversationID))
		require.Eventually(t, func() bool {
			return len(userTexts(getHistory(t, base, a0.ConversationID))) == 1 &&
				strings.Contains(call(t, "GET", base+"/v1/runs?status=running", "").body, a0.ConversationID)
		}, 10*time.Second, 10*time.Millisecond)
		st := call(t, "POST", base+"/v1/chat",
			fmt.Sprintf(`{"agent":"demo","conversation_id":%q,"message":"streamed one","stream":true}`, a0.ConversationID))
		require.Equal(t, http.StatusOK, st.status, st.body)
		require.Equal(t, "text/event-stream", st.header.Get("Content-Type"))
		require.Contains(t, st.body, "event: start")
		require.Contains(t, st.body, "event: done")
		require.NotContains(t, st.body, "event: error")
		b := <-busy
		require.Equal(t, http.StatusOK, b.status, b.body)
		require.Equal(t, []string{"hello", "busy one", "streamed one"}, userTexts(getHistory(t, base, a0.ConversationID)))
	})
}
