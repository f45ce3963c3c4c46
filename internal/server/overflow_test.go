package server_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/run"
)

func withChats(l *admission.Limiter, overflow bool) runsOption {
	return func(r *runsConfig) { r.chats, r.overflow = l, overflow }
}

// shedding is a chat limiter whose memory guard sheds everything.
func shedding() *admission.Limiter {
	return &admission.Limiter{Name: "chat", Max: 8, Gate: func() *admission.Rejected {
		return &admission.Rejected{Reason: admission.ReasonMemory, RetryAfter: 5 * time.Second, What: "chat"}
	}}
}

// admission.overflow: queue, on both stores: a chat the memory guard
// refuses becomes a queued run (202, Location, the run's body), which a
// worker then runs; without overflow the same chat is 503 overloaded.
func TestChatOverflowOnMemory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withChats(shedding(), true))
		res := b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello while memory is high"})
		require.Equal(t, http.StatusAccepted, res.Status, string(res.Body))
		var rb run.RunBody
		require.NoError(t, json.Unmarshal(res.Body, &rb))
		require.Equal(t, "/v1/runs/"+rb.ID, res.Header.Get("Location"))
		require.Equal(t, "queue", res.Header.Get("Agentd-Overflow"))
		require.Equal(t, "queued", rb.Status)
		require.NotEmpty(t, rb.ConversationID)
		done := b.waitRun(t, rb.ID, "succeeded", "failed")
		require.Equal(t, "succeeded", done.Status, done.Error)

		// A second turn of the same conversation overflows onto it.
		res = b.postChat(t, map[string]any{"agent": demoAgent, "message": "and again", "conversation_id": rb.ConversationID})
		require.Equal(t, http.StatusAccepted, res.Status, string(res.Body))
		var rb2 run.RunBody
		require.NoError(t, json.Unmarshal(res.Body, &rb2))
		require.Equal(t, rb.ConversationID, rb2.ConversationID)
		require.Equal(t, "succeeded", b.waitRun(t, rb2.ID, "succeeded", "failed").Status)
	})
}

func TestChatOverflowOffIs503(t *testing.T) {
	t.Parallel()
	b := setupRuns(t, "sqlite", withChats(shedding(), false))
	res := b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello while memory is high"})
	require.Equal(t, http.StatusServiceUnavailable, res.Status, string(res.Body))
	require.Contains(t, string(res.Body), `"overloaded"`)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	require.Empty(t, res.Header.Get("Location"))
}
