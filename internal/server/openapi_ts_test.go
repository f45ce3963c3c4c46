package server_test

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

// TestOpenAPITypeScriptClient generates a TypeScript client from the
// served /openapi.json (openapi-typescript types, openapi-fetch calls,
// versions pinned by testdata/openapi-ts/package-lock.json), type-checks a
// small program against it with tsc and runs it with node against a live
// agentd: agents, a chat, its run, a 404. It needs npm and its registry,
// so it runs only with AGENTD_TEST_NPM=1.
func TestOpenAPITypeScriptClient(t *testing.T) {
	if os.Getenv("AGENTD_TEST_NPM") == "" {
		t.Skip("set AGENTD_TEST_NPM=1 to generate and run the TypeScript client (needs npm and its registry)")
	}
	for _, tool := range []string{"npm", "npx", "node"} {
		_, err := exec.LookPath(tool)
		require.NoErrorf(t, err, "AGENTD_TEST_NPM is set but %s is not on PATH", tool)
	}
	b := setupRuns(t, "sqlite")

	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "tsconfig.json", "client.ts"} {
		data, err := os.ReadFile(filepath.Join("testdata", "openapi-ts", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), data, 0o600))
	}
	spec := b.do(t, "GET", "/openapi.json", "", nil)
	require.Equal(t, 200, spec.Status)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "agentd.json"), spec.Body, 0o600))

	run := func(name string, args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoErrorf(t, err, "%s %v:\n%s", name, args, out)
		return out
	}
	run("npm", "ci", "--no-audit", "--no-fund")
	run("npx", "--no-install", "openapi-typescript", "agentd.json", "-o", "agentd.d.ts")
	run("npx", "--no-install", "tsc", "-p", ".") // the calls type-check against the generated client
	out := run("node", filepath.Join("out", "client.js"), b.URL)

	var got struct {
		Agents        []string `json:"agents"`
		Text          string   `json:"text"`
		Steps         int      `json:"steps"`
		RunStatus     string   `json:"run_status"`
		MissingStatus int      `json:"missing_status"`
		MissingType   string   `json:"missing_type"`
	}
	require.NoError(t, json.Unmarshal(out, &got), "client output: %s", out)
	require.Contains(t, got.Agents, demoAgent)
	require.NotEmpty(t, got.Text)
	require.Equal(t, 1, got.Steps)
	require.Equal(t, "succeeded", got.RunStatus)
	require.Equal(t, 404, got.MissingStatus)
	require.Equal(t, "not_found", got.MissingType)
}
