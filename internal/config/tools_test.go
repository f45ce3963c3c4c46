package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestToolsFile(t *testing.T) {
	cfg, err := Load("testdata/tools.good.yaml", []string{"WEATHER_API_KEY=wk-123456"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"weather_key": "wk-123456", "mcp_token": "literal-token"}, cfg.SecretValues())

	require.Len(t, cfg.Tools.MCPServers, 2)
	demo := cfg.Tools.MCPServers[0]
	assert.Equal(t, []string{"./bin/mcp-demo", "-seed", "1"}, demo.Command)
	assert.Equal(t, "{{secret:mcp_token}}", demo.Env["DEMO_TOKEN"])
	assert.Equal(t, 5*time.Second, demo.Timeout)
	assert.Equal(t, DefaultMCPConnectTimeout, demo.ConnectTimeout)
	assert.Equal(t, 2, demo.MaxConcurrency)
	assert.Equal(t, DefaultToolMaxOutput, demo.MaxOutputBytes)
	assert.Equal(t, []string{"kv_put"}, demo.ConsequentialTools)
	remote := cfg.Tools.MCPServers[1]
	assert.True(t, remote.Consequential)
	assert.True(t, remote.BareToolNames)
	assert.Equal(t, DefaultMCPTimeout, remote.Timeout)
	assert.Equal(t, DefaultMCPMaxConcurrency, remote.MaxConcurrency)

	require.Len(t, cfg.Tools.HTTP, 2)
	w := cfg.Tools.HTTP[0]
	assert.Equal(t, "GET", w.Method)
	assert.Equal(t, DefaultHTTPToolTimeout, w.Timeout)
	assert.Equal(t, DefaultToolMaxConcurrent, w.MaxConcurrency)
	assert.Equal(t, "object", w.InputSchema["type"])
	assert.Equal(t, []any{"city"}, w.InputSchema["required"])
	assert.Equal(t, []any{"temp"}, w.OutputSchema["required"])
	tk := cfg.Tools.HTTP[1]
	assert.Equal(t, "post", tk.Method)
	assert.True(t, tk.AllowPrivate)
	assert.True(t, tk.Consequential)
	assert.Equal(t, 1024, tk.MaxOutputBytes)

	a := cfg.Agents[0]
	assert.Equal(t, []AgentMCP{{Server: "demo", Tools: []string{"echo", "kv_*"}}, {Server: "remote", Tools: []string{"*"}}}, a.MCP)

	red := cfg.Redacted()
	assert.NotContains(t, red, "wk-123456")
	assert.NotContains(t, red, "literal-token")
	assert.Contains(t, red, "weather_key: '[redacted]'")
}

func TestMapReferencesResolved(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	writeFile(t, path, `secrets: {k: "${env:K}"}
tools:
  http:
    - name: h
      url: https://example.com/
      headers: {X-Env: "${env:PLAIN}", X-Bad: "${env:}"}
agents: [{name: a, model: m}]
`)
	_, err := Load(path, []string{"K=v1234", "PLAIN=p"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tools.http[0].headers.X-Bad: ${env:}: invalid environment variable name")

	writeFile(t, path, `secrets: {k: "${env:K}"}
tools:
  http:
    - {name: h, url: "https://example.com/", headers: {X-Env: "${env:PLAIN}"}}
agents: [{name: a, model: m}]
`)
	cfg, err := Load(path, []string{"K=v1234", "PLAIN=p"})
	require.NoError(t, err)
	assert.Equal(t, "v1234", cfg.Secrets["k"].Value())
	assert.Equal(t, "p", cfg.Tools.HTTP[0].Headers["X-Env"])
}
