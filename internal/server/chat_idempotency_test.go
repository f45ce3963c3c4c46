package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/sim"
)

// TestChatIdempotency: POST /v1/chat with an Idempotency-Key executes
// once; the same request again gets the stored answer (JSON or the stored
// events as a stream) with Idempotent-Replayed: true and no model call; a
// different request under the key is 422; a request while the key's chat
// still runs is 409; a failed chat replays its error.
func TestChatIdempotency(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withoutWorkers())
		simSrv := b.setSim(sim.Config{})
		key := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
		req := map[string]any{"agent": demoAgent, "message": "charge my card once"}

		first := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, req), key("pay-1"))
		require.Equal(t, http.StatusOK, first.Status, "body: %s", first.Body)
		require.Empty(t, first.Header.Get("Idempotent-Replayed"))
		var a1 map[string]any
		require.NoError(t, json.Unmarshal(first.Body, &a1))
		calls := simSrv.Requests()

		again := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, req), key("pay-1"))
		require.Equal(t, http.StatusOK, again.Status, "body: %s", again.Body)
		require.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		var a2 map[string]any
		require.NoError(t, json.Unmarshal(again.Body, &a2))
		require.Equal(t, a1, a2, "the same answer")
		require.Equal(t, calls, simSrv.Requests(), "no model call for a replay")
		conv := b.getConversation(t, a1["conversation_id"].(string))
		require.Len(t, conv.Messages, 2, "one turn in the conversation")

		// The same request streamed: the stored events, ending with done.
		sreq := map[string]any{"agent": demoAgent, "message": "charge my card once", "stream": true}
		st := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, sreq), key("pay-1"))
		require.Equal(t, http.StatusOK, st.Status, "body: %s", st.Body)
		require.Equal(t, "text/event-stream", st.Header.Get("Content-Type"))
		require.Equal(t, "true", st.Header.Get("Idempotent-Replayed"))
		require.Contains(t, string(st.Body), "id: 1\nevent: start\n")
		require.Contains(t, string(st.Body), "event: done\n")
		require.Contains(t, string(st.Body), a1["run_id"].(string))
		require.Equal(t, calls, simSrv.Requests())

		// Another request under the key: 422 naming the key.
		for _, other := range []map[string]any{
			{"agent": demoAgent, "message": "charge my card twice"},
			{"agent": otherAgent, "message": "charge my card once"},
			{"agent": demoAgent, "message": "charge my card once", "conversation_id": a1["conversation_id"]},
			{"agent": demoAgent, "message": "charge my card once", "max_cost_usd": 1},
		} {
			e := requireError(t, b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, other), key("pay-1")),
				http.StatusUnprocessableEntity, "idempotency_key_reused")
			require.Contains(t, e.Error.Message, `"pay-1"`)
		}
		// A key too long is refused before anything runs.
		requireError(t, b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, req), key(strings.Repeat("k", 256))),
			http.StatusBadRequest, "invalid_request")
		// A key is the tenant's, not shared with /v1/runs' keys of other
		// requests: a run under the chat's key with another body is 422.
		requireError(t, b.submit(t, map[string]any{"agent": demoAgent, "message": "other"}, "pay-1"),
			http.StatusUnprocessableEntity, "idempotency_key_reused")

		// While the key's chat runs, the same request is 409 (retry later).
		b.setSim(sim.Config{Latency: 1500 * time.Millisecond})
		slow := map[string]any{"agent": demoAgent, "message": "slow one"}
		done := make(chan response, 1)
		go func() {
			resp, err := b.send(t.Context(), http.MethodPost, "/v1/chat", mustJSON(t, slow), key("slow-1"))
			if err != nil {
				t.Error(err)
			}
			done <- resp
		}()
		waitFor(t, "the slow chat's run row", func() bool {
			return len(b.listRuns(t, "status=running").Runs) == 1
		})
		busy := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, slow), key("slow-1"))
		e := requireError(t, busy, http.StatusConflict, "idempotency_key_in_use")
		require.Contains(t, e.Error.Message, `"slow-1"`)
		require.Equal(t, "1", busy.Header.Get("Retry-After"))
		require.Equal(t, http.StatusOK, (<-done).Status)

		// A failed chat replays its error, with its run id.
		b.setSim(sim.Config{Rate500: 1})
		bad := map[string]any{"agent": demoAgent, "message": "this one fails"}
		f1 := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, bad), key("fail-1"))
		require.GreaterOrEqual(t, f1.Status, 500, "body: %s", f1.Body)
		f2 := b.do(t, http.MethodPost, "/v1/chat", mustJSON(t, bad), key("fail-1"))
		require.Equal(t, f1.Status, f2.Status, "body: %s", f2.Body)
		require.Equal(t, "true", f2.Header.Get("Idempotent-Replayed"))
		var e1, e2 map[string]map[string]any
		require.NoError(t, json.Unmarshal(f1.Body, &e1))
		require.NoError(t, json.Unmarshal(f2.Body, &e2))
		require.Equal(t, e1["error"]["type"], e2["error"]["type"])
		require.Equal(t, e1["error"]["run_id"], e2["error"]["run_id"])
	})
}
