package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
)

const messageSecret = "tool-secret-0123456789"

func TestMessageWithSecretIsRefused(t *testing.T) {
	b := setup(t, func(c *bundleConfig) { c.secrets = run.NewMessageGuard(false, 6, messageSecret) })
	resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "please use " + messageSecret + " for the call"})
	require.Equal(t, http.StatusBadRequest, resp.Status, string(resp.Body))
	require.Contains(t, string(resp.Body), `"type":"secret_in_message"`)
	require.NotContains(t, string(resp.Body), messageSecret, "the answer never echoes the secret")
	require.Zero(t, b.sim.Load().Requests(), "nothing reached the model")
	runs, err := b.Store.ListRuns(t.Context(), store.ListRunsParams{Tenant: server.DefaultTenant})
	require.NoError(t, err)
	require.Empty(t, runs, "no run was recorded")
}

func TestMessageWithSecretIsScrubbed(t *testing.T) {
	b := setup(t, func(c *bundleConfig) { c.secrets = run.NewMessageGuard(true, 6, messageSecret) })
	resp := b.postChat(t, map[string]any{"agent": otherAgent, "message": "please use " + messageSecret + " for the call"})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var ans struct {
		ConversationID string `json:"conversation_id"`
		Text           string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &ans))
	require.NotContains(t, ans.Text, messageSecret, "the model never saw it (the sim echoes the message)")
	require.Contains(t, ans.Text, run.Redacted)
	conv := b.do(t, http.MethodGet, "/v1/conversations/"+ans.ConversationID, "", nil)
	require.Equal(t, http.StatusOK, conv.Status)
	require.False(t, strings.Contains(string(conv.Body), messageSecret), "the stored message is scrubbed")
}
