package loadgen_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/loadgen"
)

// startAgentd runs an agentd (internal/app) on a fresh SQLite store with
// the built-in simulator and returns its base URL.
func startAgentd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: sqlite://%s
auth:
  mode: none
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(dir, "agentd.db")))
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	a, err := app.New(t.Context(), cfg, app.Options{LogOutput: &bytes.Buffer{}, Version: "test"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return "http://" + a.Addr().String()
}

func TestSmokeAndChatLoadAgainstAgentd(t *testing.T) {
	t.Parallel()
	base := startAgentd(t)
	ctx := t.Context()
	var out bytes.Buffer
	require.Eventually(t, func() bool {
		return loadgen.Smoke(ctx, loadgen.SmokeConfig{BaseURL: base, Agent: "demo", Timeout: 10 * time.Second, Runs: true}, &out) == nil
	}, 20*time.Second, 200*time.Millisecond, "smoke: %s", &out)
	require.Contains(t, out.String(), "all 9 smoke checks passed")

	out.Reset()
	err := loadgen.Smoke(ctx, loadgen.SmokeConfig{BaseURL: base, Agent: "nope", Timeout: 10 * time.Second}, &out)
	require.ErrorContains(t, err, "smoke checks failed", "an unknown agent fails the chat checks")
	require.Contains(t, out.String(), "FAIL")

	out.Reset()
	require.NoError(t, loadgen.RunChatLoad(ctx, loadgen.ChatLoad{
		BaseURL: base, Agent: "demo", Message: "hi", Stream: true, Timeout: 10 * time.Second,
		Rate: 20, Duration: 500 * time.Millisecond, MaxInFlight: 10,
	}, &out))
	require.Contains(t, out.String(), "latency")

	out.Reset()
	require.NoError(t, loadgen.RunChatLoad(ctx, loadgen.ChatLoad{
		BaseURL: base, Messages: true, Model: "claude-sonnet-4-5", MaxTokens: 16, Message: "hi", Timeout: 10 * time.Second,
		Concurrent: 5, Ramp: 100 * time.Millisecond,
	}, &out))
	require.Contains(t, out.String(), "held 5 concurrent chats: 0 failed")
}
