package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/sim"
)

// TestChatStreamDoneMeansStored: a stream that ends with "done" promises
// the turn was stored. When the turn cannot be stored (here: the
// conversation is deleted while the run executes, so the final append
// fails), the stream must end with "error", not "done". (It once ended
// with "done": the loop now stores done in the commit's transaction.)
func TestChatStreamDoneMeansStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})

	slow := b.setSim(sim.Config{Latency: 2 * time.Second})
	type result struct {
		events []sseEvent
		err    error
	}
	got := make(chan result, 1)
	body := mustJSON(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "again", "stream": true})
	go func() {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+"/v1/chat", strings.NewReader(body))
		if err != nil {
			got <- result{err: err}
			return
		}
		req.Header.Set("Content-Type", jsonType)
		resp, err := b.Client.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		events, err := readSSE(resp.Body)
		got <- result{events: events, err: err}
	}()
	require.Eventually(t, func() bool { return slow.Requests() >= 1 }, 10*time.Second, 2*time.Millisecond)
	resp := b.do(t, http.MethodDelete, "/v1/conversations/"+a.ConversationID, "", nil)
	require.Equal(t, http.StatusNoContent, resp.Status, "body: %s", resp.Body)

	r := <-got
	require.NoError(t, r.err)
	require.NotEmpty(t, r.events)
	requireSeqIDs(t, r.events)
	last := r.events[len(r.events)-1]
	require.Equal(t, "error", last.Event, "the turn was not stored, yet the stream ended with %q: %s", last.Event, last.Data)
}

// TestChatJSONCommitFailure: the JSON path reports a turn that could not
// be stored as an error, and the run id with it.
func TestChatJSONCommitFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.chatOK(t, map[string]any{"agent": demoAgent, "message": "hello"})

	slow := b.setSim(sim.Config{Latency: 2 * time.Second})
	got := make(chan response, 1)
	errc := make(chan error, 1)
	body := mustJSON(t, map[string]any{"agent": demoAgent, "conversation_id": a.ConversationID, "message": "again"})
	go func() {
		resp, err := b.send(t.Context(), http.MethodPost, "/v1/chat", body, nil)
		errc <- err
		got <- resp
	}()
	require.Eventually(t, func() bool { return slow.Requests() >= 1 }, 10*time.Second, 2*time.Millisecond)
	del := b.do(t, http.MethodDelete, "/v1/conversations/"+a.ConversationID, "", nil)
	require.Equal(t, http.StatusNoContent, del.Status)

	require.NoError(t, <-errc)
	resp := <-got
	e := requireError(t, resp, http.StatusNotFound, "not_found")
	require.True(t, strings.HasPrefix(e.Error.RunID, "run_"))
	requireError(t, b.do(t, http.MethodGet, "/v1/conversations/"+a.ConversationID, "", nil), http.StatusNotFound, "not_found")
}
