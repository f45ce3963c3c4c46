package app

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// exampleSummary is what both examples/managed-agents programs print.
type exampleSummary struct {
	SessionID    string   `json:"session_id"`
	ToolCalls    []string `json:"tool_calls"`
	Text         string   `json:"text"`
	StopReason   string   `json:"stop_reason"`
	Status       string   `json:"status"`
	InputTokens  int64    `json:"input_tokens"`
	OutputTokens int64    `json:"output_tokens"`
}

func checkExample(t *testing.T, out []byte) {
	t.Helper()
	var got exampleSummary
	require.NoError(t, json.Unmarshal(out, &got), "output: %s", out)
	require.Regexp(t, `^sesn_`, got.SessionID)
	require.Equal(t, []string{"lookup"}, got.ToolCalls, "the custom tool was called once and answered")
	require.Contains(t, got.Text, "sunny, 21 degrees", "the answer uses the tool's result")
	require.Equal(t, "end_turn", got.StopReason)
	require.Contains(t, []string{"idle", "running"}, got.Status) // the run's row is final a moment after its last event
}

func runExample(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoErrorf(t, err, "%s %v:\n%s\n%s", name, args, out, stderr)
	return out
}

// examples/managed-agents/go, built and run against a real agentd (the
// simulator as its model).
func TestManagedExampleGo(t *testing.T) {
	b := startManagedWith(t, "sqlite", eventAgents)
	bin := filepath.Join(t.TempDir(), "managed-agents")
	runExample(t, ".", nil, "go", "build", "-o", bin, "../../examples/managed-agents/go")
	out := runExample(t, ".", []string{"AGENTD_URL=" + b.URL, "AGENTD_API_KEY=" + b.Key}, bin)
	checkExample(t, out)
}

// examples/managed-agents/ts (@anthropic-ai/sdk, versions pinned by its
// package-lock.json), installed with npm ci, type-checked with tsc and run
// with node against a real agentd. It needs npm and its registry, so it
// runs only with AGENTD_TEST_NPM=1.
func TestManagedExampleTypeScript(t *testing.T) {
	if os.Getenv("AGENTD_TEST_NPM") == "" {
		t.Skip("set AGENTD_TEST_NPM=1 to install and run the TypeScript example (needs npm and its registry)")
	}
	for _, tool := range []string{"npm", "npx", "node"} {
		_, err := exec.LookPath(tool)
		require.NoErrorf(t, err, "AGENTD_TEST_NPM is set but %s is not on PATH", tool)
	}
	b := startManagedWith(t, "sqlite", eventAgents)
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "tsconfig.json", "main.ts"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "managed-agents", "ts", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), data, 0o600))
	}
	runExample(t, dir, nil, "npm", "ci", "--no-audit", "--no-fund")
	runExample(t, dir, nil, "npx", "--no-install", "tsc", "-p", ".")
	out := runExample(t, dir, []string{"AGENTD_URL=" + b.URL, "AGENTD_API_KEY=" + b.Key}, "node", filepath.Join("out", "main.js"))
	checkExample(t, out)
}
