package config

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/urlscope"
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
	// Tenants replace webhook_url and webhook_signing_key for the sessions
	// of the tenants they name; an entry is taken whole (one without a
	// webhook_url gives the tenant no webhooks). A map: file only.
	// Defaults to none: every tenant's go to webhook_url.
	Tenants map[string]ManagedTenant `yaml:"tenants,omitempty"`
	// MCP configures the connections to the MCP servers that agents
	// created through the API name by URL (mcp_servers).
	MCP ManagedMCP `yaml:"mcp"`
}

// ManagedTenant is one tenant's session webhook endpoint.
type ManagedTenant struct {
	// WebhookURL as in ManagedAgents, for this tenant's sessions.
	WebhookURL Secret `yaml:"webhook_url"`
	// WebhookSigningKey as in ManagedAgents; required with webhook_url.
	WebhookSigningKey Secret `yaml:"webhook_signing_key"`
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
	// recently used is closed to make room), and the hosts with a circuit
	// breaker ("mcp-url:HOST") and metrics label of their own (further
	// hosts share the label "other" and have no breaker; the hosts of
	// servers are not counted). Defaults to 64.
	MaxServers int `yaml:"max_servers"`
	// Servers are the operator's credentials for MCP servers by URL:
	// headers agentd sends to every server under a URL. Agents and their
	// API clients never see them (an agent shows only its server's URL).
	// Defaults to none.
	Servers []ManagedMCPServer `yaml:"servers,omitempty"`
}

// ManagedMCPServer is the credentials of the MCP servers under one URL.
type ManagedMCPServer struct {
	// URL is an absolute http(s) URL without user info, query or
	// fragment: it applies to an agent's server URL of the same scheme,
	// host and port whose path is its path or below it, on "/"
	// boundaries (https://mcp.example.com/v1 covers .../v1 and .../v1/x,
	// not .../v1x nor https://mcp.example.com.evil.net/v1). Of several
	// entries, the longest path wins. Required.
	URL string `yaml:"url"`
	// Headers are set on every request to a server the entry applies to
	// (and on nothing else: not on a redirect to another host or path).
	// Values are secrets: never printed or logged; they may hold
	// ${env:NAME}, ${file:PATH} (read at start-up) or {{secret:NAME}} of
	// secrets (re-read by secrets_refresh, scrubbed from tool output).
	// At least one.
	Headers map[string]Secret `yaml:"headers,omitempty"`
	// Tenants are the tenants whose agents' runs the entry serves: for
	// another tenant's it does not exist (the longest entry that serves
	// the tenant applies, if any). Such a server is connected once per
	// tenant. Two entries may have the same URL only if both name tenants
	// and none is in both. Defaults to every tenant.
	Tenants []string `yaml:"tenants,omitempty"`
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
	c.validateManagedMCPServers(v)
	checkSessionWebhook(v, "managed.", m.WebhookURL, m.WebhookSigningKey)
	for _, name := range slices.Sorted(maps.Keys(m.Tenants)) {
		t := m.Tenants[name]
		if name == "" {
			v.add("managed.tenants", "a tenant name must not be empty")
		}
		path := "managed.tenants." + name + "."
		if t.WebhookURL == "" && t.WebhookSigningKey != "" {
			// Not a key for the top-level URL: an entry is taken whole.
			v.add(path+"webhook_url", "required with "+path+"webhook_signing_key (an entry without webhook_url gives the tenant no webhooks)")
		}
		checkSessionWebhook(v, path, t.WebhookURL, t.WebhookSigningKey)
	}
}

// checkSessionWebhook checks a session webhook endpoint, its fields named
// prefix+"webhook_url" and prefix+"webhook_signing_key". Neither value is
// shown: the URL may carry a token.
func checkSessionWebhook(v *validator, prefix string, urlSecret, keySecret Secret) {
	url, key := urlSecret.Value(), keySecret.Value()
	if url != "" && !isHTTPURL(url) {
		v.add(prefix+"webhook_url", "must be an absolute http:// or https:// URL")
	}
	switch {
	case url != "" && key == "":
		v.add(prefix+"webhook_signing_key", "required with "+prefix+"webhook_url")
	case key != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whsec_"))
		if err != nil || !strings.HasPrefix(key, "whsec_") || len(b) < 16 {
			v.add(prefix+"webhook_signing_key", `want "whsec_" followed by the base64 of at least 16 random bytes`)
		}
	}
}

// headerTokenRE is an HTTP header name (RFC 9110 token).
var headerTokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// reservedMCPHeaders are set by agentd or the MCP transport.
var reservedMCPHeaders = []string{"Host", "Content-Type", "Content-Length", "Accept", "Connection", "Transfer-Encoding",
	"Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-Id"}

// validateManagedMCPServers checks managed.mcp.servers. Messages never
// quote a header value.
func (c *Config) validateManagedMCPServers(v *validator) {
	seen := map[string][]int{} // entries by URL (urlscope.Key)
	servers := c.ManagedAgents.MCP.Servers
	for i, s := range servers {
		p := fmt.Sprintf("managed.mcp.servers[%d]", i)
		u, err := url.Parse(s.URL)
		switch {
		case s.URL == "":
			v.add(p+".url", "required")
		case err != nil || !isHTTPURL(s.URL) || u.Opaque != "":
			v.add(p+".url", "must be an absolute http:// or https:// URL")
		case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			v.add(p+".url", "must not have user info, a query or a fragment (it is a URL prefix)")
		case urlscope.Ambiguous(u.EscapedPath()):
			v.add(p+".url", `must not have . or .. path segments, an encoded "/" or "\\", or a backslash`)
		default:
			key := urlscope.Key(u) // the pool's: a default port is no port
			for _, j := range seen[key] {
				// At most one entry of a URL may serve a tenant.
				if o := servers[j].Tenants; len(o) == 0 || len(s.Tenants) == 0 || slices.ContainsFunc(s.Tenants, func(t string) bool { return slices.Contains(o, t) }) {
					v.add(p+".url", fmt.Sprintf("the same URL as managed.mcp.servers[%d] (allowed only when both name tenants, none in both)", j))
					break
				}
			}
			seen[key] = append(seen[key], i)
		}
		for j, t := range s.Tenants {
			if strings.TrimSpace(t) == "" {
				v.add(fmt.Sprintf("%s.tenants[%d]", p, j), "a tenant name must not be empty")
			}
		}
		if len(s.Headers) == 0 {
			v.add(p+".headers", "at least one header (the credentials to send)")
		}
		for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
			hp := p + ".headers." + k
			val := s.Headers[k].Value()
			switch {
			case !headerTokenRE.MatchString(k):
				v.add(hp, "not a valid HTTP header name")
			case slices.ContainsFunc(reservedMCPHeaders, func(r string) bool { return strings.EqualFold(r, k) }):
				v.add(hp, "set by agentd or the MCP transport; not configurable")
			case strings.TrimSpace(val) == "":
				v.add(hp, "empty (is the referenced environment variable or file set?)")
			case strings.ContainsAny(val, "\r\n\x00"):
				v.add(hp, "must not contain CR, LF or NUL")
			case strings.Contains(secretRefRE.ReplaceAllString(val, ""), "{{"):
				v.add(hp, "malformed {{...}}: use {{secret:NAME}}")
			default:
				v.secretRefs(hp, val, c.Secrets)
			}
		}
	}
}
