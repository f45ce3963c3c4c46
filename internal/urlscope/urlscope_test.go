package urlscope

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestCovers(t *testing.T) {
	prefix := mustURL(t, "https://MCP.example.com:443/team-a/")
	scheme, host, path := "https", Host(prefix), "/team-a"
	require.Equal(t, "mcp.example.com", host)
	require.Equal(t, "https://mcp.example.com/team-a", Key(prefix))
	require.Equal(t, Key(prefix), Key(mustURL(t, "https://mcp.example.com/team-a")), "the default port and a trailing / name the same prefix")
	for u, want := range map[string]bool{
		"https://mcp.example.com/team-a":               true,
		"https://mcp.example.com/team-a/mcp":           true,
		"https://mcp.example.com.:443/team-a/mcp":      true,
		"https://mcp.example.com/team-ab":              false,
		"https://mcp.example.com/team-a/../team-b":     false,
		"https://mcp.example.com/team-a/%2e%2E/team-b": false,
		"https://mcp.example.com/team-a/..%2Fteam-b":   false,
		"https://mcp.example.com/team-a/..%5cteam-b":   false,
		"https://mcp.example.com/team-a/x\\..\\team-b": false,
		"http://mcp.example.com/team-a":                false,
		"https://mcp.example.com:8443/team-a":          false,
		"https://mcp.example.com.evil.com/team-a":      false,
		"https://evil.com/team-a?u=mcp.example.com":    false,
	} {
		require.Equal(t, want, Covers(scheme, host, path, mustURL(t, u)), u)
	}
}

func TestHost(t *testing.T) {
	for raw, want := range map[string]string{"http://[::1]:9/mcp": "[::1]:9", "http://[::1]:80/": "[::1]", "https://h.example.:443": "h.example",
		"https://ONE.example:443/mcp?x=q": "one.example", "https://two.example:8443/a": "two.example:8443"} {
		require.Equal(t, want, Host(mustURL(t, raw)), raw)
	}
}
