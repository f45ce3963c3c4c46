package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

var (
	secretNameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	httpToolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	// secretRefRE finds {{secret:NAME}} in tool URLs, headers and env.
	secretRefRE = regexp.MustCompile(`\{\{\s*secret:([^}\s]*)\s*\}\}`)
	httpMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
)

// SecretValues returns the secrets by name with their values, for the tool
// layer.
func (c *Config) SecretValues() map[string]string {
	m := make(map[string]string, len(c.Secrets))
	for k, v := range c.Secrets {
		m[k] = v.Value()
	}
	return m
}

func (v *validator) secrets(secrets map[string]Secret) {
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := "secrets." + n
		if !secretNameRE.MatchString(n) {
			v.add(p, "name must match [A-Za-z0-9_.-]{1,64}")
		}
		if strings.TrimSpace(secrets[n].Value()) == "" {
			v.add(p, "empty (is the referenced environment variable or file set?)")
		}
	}
}

// secretRefs checks the {{secret:NAME}} references of s.
func (v *validator) secretRefs(p, s string, secrets map[string]Secret) {
	for _, m := range secretRefRE.FindAllStringSubmatch(s, -1) {
		if _, ok := secrets[m[1]]; !ok {
			v.add(p, fmt.Sprintf("unknown secret %q (define it under secrets)", m[1]))
		}
	}
}

func (v *validator) secretRefsMap(p string, m map[string]string, secrets map[string]Secret) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			v.add(p, "empty name")
			continue
		}
		v.secretRefs(p+"."+k, m[k], secrets)
	}
}

func (v *validator) globs(p string, patterns []string) {
	for j, g := range patterns {
		gp := fmt.Sprintf("%s[%d]", p, j)
		if strings.TrimSpace(g) == "" {
			v.add(gp, "must not be empty")
			continue
		}
		if _, err := path.Match(g, ""); err != nil {
			v.add(gp, fmt.Sprintf("bad pattern %q: %v", g, err))
		}
	}
}

func (v *validator) tools(t Tools, secrets map[string]Secret) {
	servers := map[string]int{}
	for i, m := range t.MCPServers {
		p := fmt.Sprintf("tools.mcp_servers[%d]", i)
		switch {
		case m.Name == "":
			v.add(p+".name", "required")
		case !agentNameRE.MatchString(m.Name):
			v.add(p+".name", fmt.Sprintf("%q must match %s", m.Name, agentNamePattern))
		default:
			if j, dup := servers[m.Name]; dup {
				v.add(p+".name", fmt.Sprintf("duplicate name %q (also tools.mcp_servers[%d])", m.Name, j))
			} else {
				servers[m.Name] = i
			}
		}
		switch {
		case len(m.Command) > 0 && m.URL != "":
			v.add(p, "set either command (stdio) or url (streamable HTTP), not both")
		case len(m.Command) == 0 && m.URL == "":
			v.add(p, "set command (stdio) or url (streamable HTTP)")
		case len(m.Command) > 0 && strings.TrimSpace(m.Command[0]) == "":
			v.add(p+".command[0]", "must not be empty")
		case m.URL != "":
			v.check(p+".url", validBaseURL(m.URL))
		}
		if m.URL != "" && len(m.Env) > 0 {
			v.add(p+".env", "only for stdio servers (command)")
		}
		if len(m.Command) > 0 && len(m.Headers) > 0 {
			v.add(p+".headers", "only for streamable-HTTP servers (url)")
		}
		v.secretRefsMap(p+".env", m.Env, secrets)
		v.secretRefsMap(p+".headers", m.Headers, secrets)
		v.positive(p+".timeout", m.Timeout)
		v.positive(p+".connect_timeout", m.ConnectTimeout)
		atLeast(v, p+".max_concurrency", m.MaxConcurrency, 1, "must be > 0")
		atLeast(v, p+".max_output_bytes", m.MaxOutputBytes, 1, "must be > 0")
		v.globs(p+".consequential_tools", m.ConsequentialTools)
		v.globs(p+".approval_tools", m.ApprovalTools)
	}
	names := map[string]int{}
	for i, h := range t.HTTP {
		p := fmt.Sprintf("tools.http[%d]", i)
		switch {
		case h.Name == "":
			v.add(p+".name", "required")
		case !httpToolNameRE.MatchString(h.Name):
			v.add(p+".name", fmt.Sprintf("%q must match [a-zA-Z0-9_-]{1,64}", h.Name))
		default:
			if j, dup := names[h.Name]; dup {
				v.add(p+".name", fmt.Sprintf("duplicate name %q (also tools.http[%d])", h.Name, j))
			} else {
				names[h.Name] = i
			}
		}
		if !slices.Contains(httpMethods, strings.ToUpper(h.Method)) {
			v.add(p+".method", "must be one of "+strings.Join(httpMethods, ", ")+fmt.Sprintf(" (got %q)", h.Method))
		}
		if h.URL == "" {
			v.add(p+".url", "required")
		} else {
			probe := regexp.MustCompile(`\{\{[^}]*\}\}`).ReplaceAllString(h.URL, "x")
			if !isHTTPURL(probe) {
				v.add(p+".url", "must be an absolute http(s) URL template")
			}
			v.secretRefs(p+".url", h.URL, secrets)
		}
		v.secretRefsMap(p+".headers", h.Headers, secrets)
		v.positive(p+".timeout", h.Timeout)
		atLeast(v, p+".max_concurrency", h.MaxConcurrency, 1, "must be > 0")
		atLeast(v, p+".max_output_bytes", h.MaxOutputBytes, 1, "must be > 0")
		if h.Approval != "" {
			v.oneOf(p+".approval", h.Approval, []string{ApprovalRequired})
		}
	}
}

func (v *validator) agentMCP(p string, list []AgentMCP, servers []MCPServer) {
	known := make([]string, 0, len(servers))
	for _, s := range servers {
		known = append(known, s.Name)
	}
	seen := map[string]int{}
	for j, m := range list {
		mp := fmt.Sprintf("%s.mcp[%d]", p, j)
		switch {
		case m.Server == "":
			v.add(mp+".server", "required")
		case !slices.Contains(known, m.Server):
			v.add(mp+".server", fmt.Sprintf("unknown MCP server %q (tools.mcp_servers: %s)", m.Server, strings.Join(known, ", ")))
		default:
			if k, dup := seen[m.Server]; dup {
				v.add(mp+".server", fmt.Sprintf("duplicate server %q (also mcp[%d])", m.Server, k))
			}
			seen[m.Server] = j
		}
		if len(m.Tools) == 0 {
			v.add(mp+".tools", `at least one tool name or pattern is required ("*" for all)`)
		}
		v.globs(mp+".tools", m.Tools)
	}
}
