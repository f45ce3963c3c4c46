package server_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/sim"
)

// The last rung of the fallback ladder: with on_unavailable: enqueue, a chat
// whose models are all unavailable is accepted as a queued run that
// succeeds once capacity returns.
func TestChatEnqueuedWhenModelsUnavailable(t *testing.T) {
	t.Parallel()
	b := setupRuns(t, "sqlite", withRunsSim(sim.Config{Rate529: 1}), withoutWorkers())
	b.Runs.Service.Agents[demoAgent].EnqueueWhenUnavailable = true

	resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "are you there?"})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	queued := decodeRun(t, resp.Body)
	require.Equal(t, "queued", queued.Status)
	require.Equal(t, "/v1/runs/"+queued.ID, resp.Header.Get("Location"))

	// A stream ends with its error event, then a queued event naming the run.
	sresp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "still there?", "stream": true})
	require.Equal(t, http.StatusOK, sresp.Status)
	evs := parseSSE(t, bytes.NewReader(sresp.Body))
	require.GreaterOrEqual(t, len(evs), 2)
	require.Equal(t, "error", evs[len(evs)-2].Event)
	require.Equal(t, "queued", evs[len(evs)-1].Event)
	require.Empty(t, evs[len(evs)-1].ID, "not one of the chat run's numbered events")
	streamed := decodeRun(t, []byte(evs[len(evs)-1].Data))

	// Capacity returns: both runs execute.
	b.setSim(sim.Config{})
	b.startWorkers(t)
	for _, id := range []string{queued.ID, streamed.ID} {
		done := b.waitRun(t, id, "succeeded")
		require.Equal(t, 1, done.Attempt)
	}

	// Without the option the same failure is a 503 with Retry-After.
	b.Runs.Service.Agents[demoAgent].EnqueueWhenUnavailable = false
	b.setSim(sim.Config{Rate529: 1})
	resp = b.postChat(t, map[string]any{"agent": demoAgent, "message": "and now?"})
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
}
