package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestManagedWebhookConfig(t *testing.T) {
	const key = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA=="
	cfg, err := Load("testdata/minimal.good.yaml", []string{
		"AGENTD_MANAGED_WEBHOOK_URL=https://hooks.example.com/s?token=tok123456", "AGENTD_MANAGED_WEBHOOK_SIGNING_KEY=" + key})
	require.NoError(t, err)
	require.Equal(t, "https://hooks.example.com/s?token=tok123456", cfg.ManagedAgents.WebhookURL.Value())
	require.NotContains(t, cfg.Redacted(), "tok123456")
	require.NotContains(t, cfg.Redacted(), key)

	for name, env := range map[string][]string{
		"managed.webhook_signing_key": {"AGENTD_MANAGED_WEBHOOK_URL=https://hooks.example.com/s"},
		"managed.webhook_url":         {"AGENTD_MANAGED_WEBHOOK_URL=ftp://x", "AGENTD_MANAGED_WEBHOOK_SIGNING_KEY=" + key},
	} {
		_, err := Load("testdata/minimal.good.yaml", env)
		require.ErrorContains(t, err, name)
	}
	_, err = Load("testdata/minimal.good.yaml", []string{"AGENTD_MANAGED_WEBHOOK_SIGNING_KEY=c2VjcmV0"})
	require.ErrorContains(t, err, "managed.webhook_signing_key")
	require.NotContains(t, err.Error(), "c2VjcmV0")
}

func TestManagedMCPConfig(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, DefaultManagedMCPConnectTimeout, cfg.ManagedAgents.MCP.ConnectTimeout)
	require.Equal(t, DefaultManagedMCPMaxServers, cfg.ManagedAgents.MCP.MaxServers)
	require.False(t, cfg.ManagedAgents.MCP.AllowPrivate)

	cfg, err = Load("testdata/minimal.good.yaml", []string{"AGENTD_MANAGED_MCP_ALLOW_PRIVATE=true", "AGENTD_MANAGED_MCP_CONNECT_TIMEOUT=3s"})
	require.NoError(t, err)
	require.True(t, cfg.ManagedAgents.MCP.AllowPrivate)
	require.Equal(t, 3*time.Second, cfg.ManagedAgents.MCP.ConnectTimeout)

	for _, good := range []string{"mcp.internal", "127.0.0.1", "::1", "[fd00::1]", "Svc-1.ns.svc.cluster.local."} {
		c := Config{ManagedAgents: ManagedAgents{MCP: ManagedMCP{AllowHosts: []string{good}}}}
		v := &validator{}
		c.validateManaged(v)
		require.Empty(t, v.errs, good)
	}
	for _, bad := range []string{"", "http://mcp.internal", "mcp.internal:8080", "mcp.internal/x", "*.internal", "a b"} {
		c := Config{ManagedAgents: ManagedAgents{MCP: ManagedMCP{AllowHosts: []string{"ok.internal", bad}}}}
		v := &validator{}
		c.validateManaged(v)
		require.Len(t, v.errs, 1, bad)
		require.ErrorContains(t, v.errs[0], "managed.mcp.allow_hosts[1]")
	}
	c := Config{ManagedAgents: ManagedAgents{MCP: ManagedMCP{ConnectTimeout: -1, MaxServers: -1}}}
	v := &validator{}
	c.validateManaged(v)
	require.Len(t, v.errs, 2)
}
