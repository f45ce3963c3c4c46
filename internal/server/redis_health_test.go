package server_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	storeredis "github.com/agentd/agentd/internal/redis"
	"github.com/agentd/agentd/internal/redis/redistest"
)

// Redis is an accelerator: while it is down /healthz says degraded with the
// reason, /readyz stays ready, chats keep working, and health recovers by
// itself when Redis returns.
func TestRedisDownDegradesNotUnready(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	b := setup(t)
	rc, err := storeredis.Open(rs.URL(), storeredis.Options{Timeout: 200 * time.Millisecond, DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { rc.Close() })
	b.Health.Redis = rc
	b.Health.SetReady(true)

	health := func() (string, string) {
		t.Helper()
		b.Health.Check(t.Context())
		resp := b.do(t, http.MethodGet, "/healthz", "", nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var h struct {
			Status     string `json:"status"`
			Components struct {
				Redis struct {
					Status    string `json:"status"`
					LastError string `json:"last_error"`
				} `json:"redis"`
			} `json:"components"`
		}
		require.NoError(t, json.Unmarshal(resp.Body, &h))
		return h.Status, h.Components.Redis.Status
	}
	overall, redis := health()
	require.Equal(t, "ok", overall)
	require.Equal(t, "ok", redis)

	rs.Stop()
	overall, redis = health()
	require.Equal(t, "degraded", overall)
	require.Equal(t, "degraded", redis)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/readyz", "", nil).Status, "a dead Redis never makes the instance unready")
	require.Equal(t, http.StatusOK, b.postChat(t, map[string]any{"agent": demoAgent, "message": "still serving?"}).Status)

	rs.Restart()
	require.Eventually(t, func() bool { o, r := health(); return o == "ok" && r == "ok" }, 10*time.Second, 100*time.Millisecond)
}
