package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServeBudgets: serve wires budgets from the config: a chat whose
// worst case does not fit the tenant's daily budget is refused with 429
// budget_exceeded, and the refusal shows in the metrics (and raises the
// 100 % alert).
func TestServeBudgets(t *testing.T) {
	t.Parallel()
	dbURL := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
	config := fmt.Sprintf(`server:
  addr: ADDR
store:
  url: %s
providers:
  anthropic:
    simulate: always
auth:
  mode: none
budgets:
  tenant: {daily_usd: 0.001}
agents:
  - name: demo
    model: claude-sonnet-4-5
`, dbURL)
	s := startServe(t, config, nil)
	resp, err := http.Post(s.base+"/v1/chat", "application/json", strings.NewReader(`{"agent":"demo","message":"hi"}`))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "body: %s", body)
	require.Contains(t, string(body), `"type":"budget_exceeded"`)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.base + "/metrics")
		require.NoError(t, err)
		m, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		if strings.Contains(string(m), `agentd_budget_rejected_total{scope="tenant"} 1`) &&
			strings.Contains(string(m), `agentd_budget_alerts_total{fraction="1",scope="tenant"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("budget metrics missing:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop(t)
}
