package config

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Breakers tunes the circuit breakers of agentd's dependencies other than
// the model (whose breakers providers.anthropic.breaker tunes): one per
// HTTP tool ("tool:NAME"), MCP server ("mcp:NAME"), host of MCP servers
// named by URL ("mcp-url:HOST"), webhook host ("webhook:HOST"), Redis
// ("redis") and the store ("store").
type Breakers struct {
	// Defaults tune every such breaker. count_rate_limits does not apply
	// here. Defaults to the breaker defaults (5 consecutive failures,
	// 0.5 of 20 calls in 1m, open 30s, 3 probes).
	Defaults Breaker `yaml:"defaults"`
	// Overrides replace fields of the defaults (for "model:NAME": of
	// providers.anthropic.breaker) for the dependency they name. Names:
	// "redis", "store", "tool:NAME" (an HTTP tool of tools.http),
	// "mcp:NAME" (a server of tools.mcp_servers), "mcp-url:HOST" (host,
	// or host:port unless the scheme's default, in lower case, of the MCP
	// servers agents name by URL), "webhook:HOST" (host or host:port of a
	// run's webhook URL), "model:NAME". A map: file only. Defaults to
	// none.
	Overrides map[string]Breaker `yaml:"overrides,omitempty"`
}

// validateBreakers checks breakers.* and providers.anthropic.breaker.
func (c *Config) validateBreakers(v *validator) {
	validateBreaker(v, "providers.anthropic.breaker", c.Providers.Anthropic.Breaker, true)
	validateBreaker(v, "breakers.defaults", c.Breakers.Defaults, false)
	httpTools := map[string]bool{}
	for _, h := range c.Tools.HTTP {
		httpTools[h.Name] = true
	}
	servers := map[string]bool{}
	for _, m := range c.Tools.MCPServers {
		servers[m.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(c.Breakers.Overrides)) {
		p := "breakers.overrides." + name
		kind, rest, _ := strings.Cut(name, ":")
		switch {
		case name == "redis", name == "store":
		case kind == "tool" && rest != "":
			if !httpTools[rest] {
				v.add(p, fmt.Sprintf("no HTTP tool %q in tools.http", rest))
			}
		case kind == "mcp" && rest != "":
			if !servers[rest] {
				v.add(p, fmt.Sprintf("no MCP server %q in tools.mcp_servers", rest))
			}
		case kind == "mcp-url" && rest != "":
			if !validHostPort(rest) || rest != strings.ToLower(rest) {
				v.add(p, fmt.Sprintf("want mcp-url:HOST with HOST a host name or IP address and an optional port, in lower case, got %q", rest))
			}
		case (kind == "webhook" || kind == "model") && rest != "":
		default:
			v.add(p, `unknown dependency: use "redis", "store", "tool:NAME", "mcp:NAME", "mcp-url:HOST", "webhook:HOST" or "model:NAME"`)
			continue
		}
		validateBreaker(v, p, c.Breakers.Overrides[name], kind == "model")
	}
}

// validateBreaker checks one breaker's fields (0: the default).
func validateBreaker(v *validator, p string, b Breaker, model bool) {
	atLeast(v, p+".consecutive_failures", b.ConsecutiveFailures, 0, "must be >= 1")
	if b.FailureRatio < 0 || b.FailureRatio > 1 {
		v.add(p+".failure_ratio", "must be in (0, 1]")
	}
	atLeast(v, p+".min_requests", b.MinRequests, 0, "must be >= 1")
	atLeast(v, p+".half_open_probes", b.HalfOpenProbes, 0, "must be >= 1")
	v.nonNegative(p+".window", b.Window)
	v.nonNegative(p+".open_timeout", b.OpenTimeout)
	if b.CountRateLimits && !model {
		v.add(p+".count_rate_limits", "applies to model breakers only (providers.anthropic.breaker)")
	}
}

// validHostPort reports whether s is a host (validHost; an IPv6 literal in
// brackets) with an optional :port.
func validHostPort(s string) bool {
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(port)
		return err == nil && n > 0 && n < 65536 && validHost(h) && (!strings.Contains(h, ":") || strings.HasPrefix(s, "["))
	}
	if strings.HasPrefix(s, "[") {
		return strings.HasSuffix(s, "]") && strings.Contains(s, ":") && validHost(s)
	}
	return !strings.Contains(s, ":") && validHost(s)
}
