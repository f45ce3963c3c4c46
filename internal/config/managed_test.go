package config

import (
	"strings"
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

func TestManagedTenantWebhooks(t *testing.T) {
	const key = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA=="
	const key2 = "whsec_YW5vdGhlci1zaWduaW5nLWtleS1vZi1hZ2VudGQ="
	base := "agents:\n  - name: a\n    model: claude-sonnet-4-5\n"
	parse := func(managed string) (*Config, error) {
		return Parse([]byte(base+managed), "agentd.yaml", t.TempDir(), []string{"ABC_HOOK=https://b.example/h?token=tokB123456"})
	}
	cfg, err := parse(`managed:
  webhook_url: https://all.example/h
  webhook_signing_key: ` + key + `
  tenants:
    acme:
      webhook_url: https://acme.example/h?token=tokA123456
      webhook_signing_key: ` + key2 + `
    beta:
      webhook_url: ${env:ABC_HOOK}
      webhook_signing_key: ` + key + `
    quiet: {}
`)
	require.NoError(t, err)
	m := cfg.ManagedAgents
	require.Len(t, m.Tenants, 3)
	require.Equal(t, "https://acme.example/h?token=tokA123456", m.Tenants["acme"].WebhookURL.Value())
	require.Equal(t, key2, m.Tenants["acme"].WebhookSigningKey.Value())
	require.Equal(t, "https://b.example/h?token=tokB123456", m.Tenants["beta"].WebhookURL.Value())
	require.Empty(t, m.Tenants["quiet"].WebhookURL.Value(), "an entry without a URL: no webhooks for that tenant")
	for _, secret := range []string{"tokA123456", "tokB123456", key2} {
		require.NotContains(t, cfg.Redacted(), secret)
		require.Contains(t, cfg.AllSecretValues(), map[string]string{"tokA123456": "https://acme.example/h?token=tokA123456",
			"tokB123456": "https://b.example/h?token=tokB123456", key2: key2}[secret], "the message guard scrubs them")
	}

	// A tenant's endpoint does not need the top-level one.
	_, err = parse("managed:\n  tenants:\n    acme: {webhook_url: https://acme.example/h, webhook_signing_key: " + key + "}\n")
	require.NoError(t, err)

	for want, tenants := range map[string]string{
		"managed.tenants.acme.webhook_url: must be an absolute http":           "acme: {webhook_url: ftp://acme.example/h, webhook_signing_key: " + key + "}",
		"managed.tenants.acme.webhook_url: must be an absolute http ":          "acme: {webhook_url: acme.example/h, webhook_signing_key: " + key + "}",
		"managed.tenants.acme.webhook_signing_key: required with":              "acme: {webhook_url: https://acme.example/h}",
		"managed.tenants.acme.webhook_signing_key: want \"whsec_\"":            "acme: {webhook_url: https://acme.example/h, webhook_signing_key: c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA==}",
		"managed.tenants.acme.webhook_signing_key: want \"whsec_\" followed":   "acme: {webhook_url: https://acme.example/h, webhook_signing_key: whsec_c2VjcmV0}",
		"managed.tenants.acme.webhook_url: required with":                      "acme: {webhook_signing_key: " + key + "}",
		"managed.tenants: a tenant name must not be empty":                     `"": {webhook_url: https://x.example/h, webhook_signing_key: ` + key + "}",
		"managed.tenants.beta.webhook_signing_key: required with managed.tena": "acme: {}\n    beta: {webhook_url: https://b.example/h}",
	} {
		_, err := parse("managed:\n  tenants:\n    " + tenants + "\n")
		require.ErrorContains(t, err, strings.TrimSpace(want), tenants)
		require.NotContains(t, err.Error(), "acme.example/h", "the URL is not shown")
		require.NotContains(t, err.Error(), "c2VjcmV0", "the key is not shown")
	}
}

// managed.mcp.servers: header values are secrets (masked when printed,
// redacted from logs), from ${env:} or {{secret:NAME}}; every invalid
// field is named, never with its value.
func TestManagedMCPServersConfig(t *testing.T) {
	cfg, err := Load("testdata/managed-mcp-servers.good.yaml", []string{"LINEAR_TOKEN=lin-token-from-env"})
	require.NoError(t, err)
	s := cfg.ManagedAgents.MCP.Servers
	require.Len(t, s, 2)
	require.Equal(t, "https://mcp.linear.app/sse", s[0].URL)
	require.Equal(t, []string{"acme", "globex"}, s[0].Tenants)
	require.Empty(t, s[1].Tenants, "every tenant's")
	require.Equal(t, "Bearer lin-token-from-env", s[0].Headers["Authorization"].Value())
	require.Equal(t, "Bearer {{secret:docs_token}}", s[1].Headers["Authorization"].Value(), "resolved per request")
	require.NotContains(t, cfg.Redacted(), "lin-token-from-env")
	require.NotContains(t, cfg.Redacted(), "platform")
	require.Contains(t, cfg.AllSecretValues(), "Bearer lin-token-from-env", "redacted from logs")

	secrets := map[string]Secret{"tok": "tok-value"}
	h := func(kv ...string) map[string]Secret {
		m := map[string]Secret{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = Secret(kv[i+1])
		}
		return m
	}
	for _, tc := range []struct {
		s    ManagedMCPServer
		want string
	}{
		{ManagedMCPServer{Headers: h("A", "b")}, "managed.mcp.servers[0].url: required"},
		{ManagedMCPServer{URL: "mcp.example.com/x", Headers: h("A", "b")}, "managed.mcp.servers[0].url: must be an absolute"},
		{ManagedMCPServer{URL: "https://u:pw@mcp.example.com", Headers: h("A", "b")}, "servers[0].url: must not have user info"},
		{ManagedMCPServer{URL: "https://mcp.example.com/x?key=1", Headers: h("A", "b")}, "servers[0].url: must not have user info, a query"},
		{ManagedMCPServer{URL: "https://mcp.example.com/a/../b", Headers: h("A", "b")}, "servers[0].url: must not have . or .."},
		{ManagedMCPServer{URL: "https://mcp.example.com/a/%2E%2e/b", Headers: h("A", "b")}, "servers[0].url: must not have . or .."},
		{ManagedMCPServer{URL: "https://mcp.example.com/a%2Fb", Headers: h("A", "b")}, "servers[0].url: must not have . or .."},
		{ManagedMCPServer{URL: "https://mcp.example.com"}, "servers[0].headers: at least one"},
		{ManagedMCPServer{URL: "https://mcp.example.com", Headers: h("Bad Name", "s3cr3t")}, `servers[0].headers.Bad Name: not a valid HTTP header name`},
		{ManagedMCPServer{URL: "https://mcp.example.com", Headers: h("content-type", "s3cr3t")}, "servers[0].headers.content-type: set by agentd"},
		{ManagedMCPServer{URL: "https://mcp.example.com", Headers: h("Authorization", " ")}, "servers[0].headers.Authorization: empty"},
		{ManagedMCPServer{URL: "https://mcp.example.com", Headers: h("Authorization", "s3cr3t\r\nX: y")}, "headers.Authorization: must not contain CR"},
		{ManagedMCPServer{URL: "https://mcp.example.com", Headers: h("Authorization", "s3cr3t {{tok}}")}, "headers.Authorization: malformed {{...}}"},
		{ManagedMCPServer{URL: "https://mcp.example.com", Headers: h("Authorization", "s3cr3t {{secret:nope}}")}, `headers.Authorization: unknown secret "nope"`},
	} {
		c := Config{Secrets: secrets, ManagedAgents: ManagedAgents{MCP: ManagedMCP{Servers: []ManagedMCPServer{tc.s}}}}
		v := &validator{}
		c.validateManaged(v)
		require.Len(t, v.errs, 1, tc.want)
		require.ErrorContains(t, v.errs[0], tc.want)
		require.NotContains(t, v.errs[0].Error(), "s3cr3t", "a header value is never quoted")
	}
	c := Config{Secrets: secrets, ManagedAgents: ManagedAgents{MCP: ManagedMCP{Servers: []ManagedMCPServer{
		{URL: "https://mcp.example.com/v1/", Headers: h("Authorization", "{{secret:tok}}")},
		{URL: "HTTPS://MCP.example.com:443/v1", Headers: h("Authorization", "x")},
	}}}}
	v := &validator{}
	c.validateManaged(v)
	require.Len(t, v.errs, 1)
	require.ErrorContains(t, v.errs[0], "managed.mcp.servers[1].url: the same URL as managed.mcp.servers[0]")

	// tenants: no empty name; the same URL twice only for disjoint,
	// named tenants.
	c.ManagedAgents.MCP.Servers = []ManagedMCPServer{{URL: "https://mcp.example.com", Headers: h("A", "b"), Tenants: []string{"acme", " "}}}
	v = &validator{}
	c.validateManaged(v)
	require.Len(t, v.errs, 1)
	require.ErrorContains(t, v.errs[0], "managed.mcp.servers[0].tenants[1]: a tenant name must not be empty")
	for _, tc := range []struct {
		a, b []string
		ok   bool
	}{
		{[]string{"acme"}, []string{"globex", "initech"}, true},
		{[]string{"acme"}, nil, false},
		{nil, []string{"acme"}, false},
		{[]string{"acme", "globex"}, []string{"globex"}, false},
	} {
		c.ManagedAgents.MCP.Servers = []ManagedMCPServer{
			{URL: "https://mcp.example.com/v1/", Headers: h("A", "b"), Tenants: tc.a},
			{URL: "https://mcp.example.com/v1", Headers: h("A", "c"), Tenants: tc.b},
			{URL: "https://mcp.example.com/v1/x", Headers: h("A", "d")},
		}
		v = &validator{}
		c.validateManaged(v)
		if tc.ok {
			require.Empty(t, v.errs, "%v %v", tc.a, tc.b)
			continue
		}
		require.Len(t, v.errs, 1, "%v %v", tc.a, tc.b)
		require.ErrorContains(t, v.errs[0], "managed.mcp.servers[1].url: the same URL as managed.mcp.servers[0] (allowed only when both name tenants")
	}
}

// breakers.overrides names hosts of MCP servers by URL as mcp-url:HOST
// (host[:port], lower case).
func TestBreakersMCPURL(t *testing.T) {
	for _, good := range []string{"mcp-url:mcp.example.com", "mcp-url:127.0.0.1:8080", "mcp-url:[::1]:9", "mcp-url:[fd00::1]", "mcp-url:svc"} {
		c := Config{Breakers: Breakers{Overrides: map[string]Breaker{good: {OpenTimeout: time.Second}}}}
		v := &validator{}
		c.validateBreakers(v)
		require.Empty(t, v.errs, good)
	}
	for _, bad := range []string{"mcp-url:", "mcp-url:https://a.example", "mcp-url:a.example/mcp", "mcp-url:A.example", "mcp-url:::1:9",
		"mcp-url:a.example:0", "mcp-url:a.example:x", "mcp-url:*.example"} {
		c := Config{Breakers: Breakers{Overrides: map[string]Breaker{bad: {OpenTimeout: time.Second}}}}
		v := &validator{}
		c.validateBreakers(v)
		require.Len(t, v.errs, 1, bad)
		require.ErrorContains(t, v.errs[0], "breakers.overrides."+bad, bad)
	}
}
