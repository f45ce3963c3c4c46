package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// ManagedAgents configures the Managed Agents face (docs/managed-agents.md).
type ManagedAgents struct {
	// WebhookURL receives the sessions' webhooks (session.status_idled,
	// session.status_terminated, session.budget_reached) as signed JSON
	// POSTs, queued and retried like run webhooks. A secret: it often
	// carries a token. Defaults to empty (no webhooks).
	WebhookURL Secret `yaml:"webhook_url"`
	// WebhookSigningKey signs them (Standard Webhooks, what the SDKs'
	// webhooks.unwrap verifies): "whsec_" and the base64 of at least 16
	// random bytes. Required with webhook_url.
	WebhookSigningKey Secret `yaml:"webhook_signing_key"`
	// MCP configures the connections to the MCP servers that agents
	// created through the API name by URL (mcp_servers).
	MCP ManagedMCP `yaml:"mcp"`
}

// ManagedMCP configures the process's MCP clients of servers by URL. Every
// connection goes through the SSRF guard of HTTP tools: loopback, private,
// link-local and reserved addresses are refused (at agent create for an IP
// literal or localhost, when dialing for a name), unless allowed here.
type ManagedMCP struct {
	// AllowPrivate lets agents' MCP servers be at any address. Defaults
	// to false.
	AllowPrivate bool `yaml:"allow_private"`
	// AllowHosts are host names or IP literals (no scheme, port or path)
	// whose MCP servers may be at private addresses, e.g. an in-cluster
	// "mcp.internal" or "127.0.0.1". Defaults to none.
	AllowHosts []string `yaml:"allow_hosts,omitempty"`
	// ConnectTimeout bounds connecting to a server and listing its tools
	// when a run needs them; a run whose server does not answer in time
	// fails with a session.error. Defaults to 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxServers caps the servers a process keeps connected (the least
	// recently used is closed to make room). Defaults to 64.
	MaxServers int `yaml:"max_servers"`
}

// Defaults of ManagedMCP.
const (
	DefaultManagedMCPConnectTimeout = 10 * time.Second
	DefaultManagedMCPMaxServers     = 64
)

var hostLabelRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$`)

// validHost reports whether h is an IP literal or a DNS host name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// validateManaged checks the managed_agents section.
func (c *Config) validateManaged(v *validator) {
	m := c.ManagedAgents
	for i, h := range m.MCP.AllowHosts {
		if !validHost(h) {
			v.add(fmt.Sprintf("managed.mcp.allow_hosts[%d]", i), fmt.Sprintf("want a host name or IP address (no scheme, port or path), got %q", h))
		}
	}
	if m.MCP.ConnectTimeout < 0 {
		v.add("managed.mcp.connect_timeout", "must not be negative")
	}
	if m.MCP.MaxServers < 0 {
		v.add("managed.mcp.max_servers", "must not be negative")
	}
	url, key := m.WebhookURL.Value(), m.WebhookSigningKey.Value()
	if url != "" && !isHTTPURL(url) {
		v.add("managed.webhook_url", "must be an absolute http:// or https:// URL") // not shown: it may carry a token
	}
	switch {
	case url != "" && key == "":
		v.add("managed.webhook_signing_key", "required with managed.webhook_url")
	case key != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whsec_"))
		if err != nil || !strings.HasPrefix(key, "whsec_") || len(b) < 16 {
			v.add("managed.webhook_signing_key", `want "whsec_" followed by the base64 of at least 16 random bytes`)
		}
	}
}
