package managed

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// AgentConfig is one version of an agent as stored (store.ManagedAgent's
// Config): what the client sent, validated, defaults not yet resolved.
type AgentConfig struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	System      string            `json:"system,omitempty"`
	Model       ModelConfig       `json:"model"`
	Tools       []Tool            `json:"tools"`
	MCPServers  []MCPServer       `json:"mcp_servers"`
	Metadata    map[string]string `json:"metadata"`
	// Source is "config" for agents of agentd's configuration file (read
	// only), empty for agents created through the API.
	Source string `json:"source,omitempty"`
}

// ModelConfig is the agent's model.
type ModelConfig struct {
	ID           string `json:"id"`
	Effort       string `json:"effort,omitempty"`
	Speed        string `json:"speed,omitempty"`
	InferenceGeo string `json:"inference_geo,omitempty"`
}

// Tool is a custom tool (executed by the client: the session pauses with
// requires_action until user.custom_tool_result) or an MCP toolset.
type Tool struct {
	Type string `json:"type"` // ToolCustom or ToolMCPToolset
	// custom
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
	// mcp_toolset
	MCPServerName string       `json:"mcp_server_name,omitempty"`
	DefaultConfig *ToolConfig  `json:"default_config,omitempty"`
	Configs       []ToolConfig `json:"configs,omitempty"`
}

// Tool types.
const (
	ToolCustom     = "custom"
	ToolMCPToolset = "mcp_toolset"
)

// ToolConfig configures the tools of an MCP toolset (Name empty: its
// default_config).
type ToolConfig struct {
	Name             string `json:"name,omitempty"`
	Enabled          *bool  `json:"enabled,omitempty"`
	PermissionPolicy string `json:"permission_policy,omitempty"`
}

// Permission policies.
const (
	PolicyAlwaysAllow = "always_allow"
	PolicyAlwaysAsk   = "always_ask"
)

// MCPServer is an MCP server the agent connects to, by URL.
type MCPServer struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// AgentdToolset is the reserved mcp_server_name of agentd's own built-in
// and HTTP tools (an mcp_toolset with it picks them by name in configs);
// an mcp_server_name naming one of agentd's configured MCP servers picks
// that server's tools. Neither needs an mcp_servers entry.
const AgentdToolset = "agentd"

// Catalog is what agentd's configuration offers to managed agents: tool
// sources by mcp_server_name (AgentdToolset and each configured MCP server)
// and, where known, their tool names (nil: any name is accepted, checked
// when the session runs).
type Catalog map[string][]string

var (
	toolNameRE  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	serverRE    = regexp.MustCompile(`^.{1,255}$`)
	effortLevel = []string{"low", "medium", "high", "xhigh", "max"}
)

const (
	maxTools      = 256
	maxMCPServers = 20
)

// AgentRequest is the body of create and update. Every field is raw so
// that "omitted" (preserve) and null (clear) differ.
type AgentRequest struct {
	Name              json.RawMessage    `json:"name"`
	Description       json.RawMessage    `json:"description"`
	System            json.RawMessage    `json:"system"`
	Model             json.RawMessage    `json:"model"`
	Tools             json.RawMessage    `json:"tools"`
	MCPServers        json.RawMessage    `json:"mcp_servers"`
	Metadata          map[string]*string `json:"metadata"`
	Skills            json.RawMessage    `json:"skills"`
	Multiagent        json.RawMessage    `json:"multiagent"`
	ExecutionIdentity json.RawMessage    `json:"execution_identity"`
	Version           json.RawMessage    `json:"version"`
}

// applyAgentRequest applies req to cur (a copy; the zero config on
// create) and validates the result. create: name and model are required
// and version is not accepted.
func applyAgentRequest(cur AgentConfig, req AgentRequest, create bool, cat Catalog) (AgentConfig, error) {
	c := cur
	c.Metadata = cur.Metadata
	str := func(field string, raw json.RawMessage, dst *string, clearable bool) error {
		if !present(raw) {
			return nil
		}
		if isNull(raw) {
			if !clearable {
				return invalid("%s: cannot be null", field)
			}
			*dst = ""
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return invalid("%s: want a string", field)
		}
		return nil
	}
	if err := str("name", req.Name, &c.Name, false); err != nil {
		return c, err
	}
	if err := str("description", req.Description, &c.Description, true); err != nil {
		return c, err
	}
	if err := str("system", req.System, &c.System, true); err != nil {
		return c, err
	}
	if strings.TrimSpace(c.Name) == "" {
		return c, invalid("name: required, 1 to 256 characters")
	}
	if len(c.Name) > 256 {
		return c, invalid("name: at most 256 characters")
	}
	if present(req.Model) {
		m, err := parseModel(req.Model)
		if err != nil {
			return c, err
		}
		c.Model = m
	} else if create {
		return c, invalid("model: required (a model id string or {\"id\": ...})")
	}
	if present(req.Skills) && !isNull(req.Skills) && strings.TrimSpace(string(req.Skills)) != "[]" {
		return c, unsupported("skills", "Agent Skills")
	}
	if present(req.Multiagent) && !isNull(req.Multiagent) {
		return c, unsupported("multiagent", "multiagent orchestration (threads, subagents, workflows)")
	}
	if present(req.ExecutionIdentity) && !isNull(req.ExecutionIdentity) {
		var ei struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(req.ExecutionIdentity, &ei); err != nil {
			return c, invalid("execution_identity: want an object")
		}
		if ei.Type != "service_account" {
			return c, unsupported("execution_identity", fmt.Sprintf("execution identity %q", ei.Type))
		}
	}
	if present(req.MCPServers) {
		c.MCPServers = nil
		if !isNull(req.MCPServers) {
			var servers []struct {
				Name string `json:"name"`
				URL  string `json:"url"`
				Type string `json:"type"`
			}
			if err := decodeStrict("mcp_servers", req.MCPServers, &servers); err != nil {
				return c, err
			}
			for i, s := range servers {
				f := fmt.Sprintf("mcp_servers[%d]", i)
				if s.Type != "" && s.Type != "url" {
					return c, unsupported(f+".type", fmt.Sprintf("MCP server type %q", s.Type))
				}
				if !serverRE.MatchString(s.Name) {
					return c, invalid("%s.name: 1 to 255 characters", f)
				}
				if !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "http://") {
					return c, invalid("%s.url: want an http(s) URL, got %q", f, s.URL)
				}
				if _, ok := cat[s.Name]; ok || s.Name == AgentdToolset {
					return c, invalid("%s.name: %q names one of agentd's configured tool sources; pick another name", f, s.Name)
				}
				c.MCPServers = append(c.MCPServers, MCPServer{Name: s.Name, URL: s.URL})
			}
		}
	}
	if present(req.Tools) {
		c.Tools = nil
		if !isNull(req.Tools) {
			var raws []json.RawMessage
			if err := json.Unmarshal(req.Tools, &raws); err != nil {
				return c, invalid("tools: want an array")
			}
			for i, raw := range raws {
				t, err := parseTool(fmt.Sprintf("tools[%d]", i), raw)
				if err != nil {
					return c, err
				}
				c.Tools = append(c.Tools, t)
			}
		}
	}
	if req.Metadata != nil {
		m, err := patchMetadata("metadata", cur.Metadata, req.Metadata, false)
		if err != nil {
			return c, err
		}
		c.Metadata = m
	}
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	return c, checkTools(c, cat)
}

func parseModel(raw json.RawMessage) (ModelConfig, error) {
	var m ModelConfig
	if isNull(raw) {
		return m, invalid("model: cannot be null")
	}
	if err := json.Unmarshal(raw, &m.ID); err == nil {
		if strings.TrimSpace(m.ID) == "" {
			return m, invalid("model: empty model id")
		}
		return m, nil
	}
	var obj struct {
		ID           string          `json:"id"`
		Effort       json.RawMessage `json:"effort"`
		Speed        string          `json:"speed"`
		InferenceGeo string          `json:"inference_geo"`
	}
	if err := decodeStrict("model", raw, &obj); err != nil {
		return m, err
	}
	if strings.TrimSpace(obj.ID) == "" {
		return m, invalid("model.id: required")
	}
	m.ID, m.InferenceGeo = obj.ID, obj.InferenceGeo
	switch obj.Speed {
	case "", "standard":
	case "fast":
		return m, unsupported("model.speed", "fast mode")
	default:
		return m, invalid("model.speed: want standard or fast, got %q", obj.Speed)
	}
	if present(obj.Effort) && !isNull(obj.Effort) {
		var level string
		if err := json.Unmarshal(obj.Effort, &level); err != nil {
			var o struct {
				Type string `json:"type"`
			}
			if err := decodeStrict("model.effort", obj.Effort, &o); err != nil {
				return m, err
			}
			level = o.Type
		}
		if !slices.Contains(effortLevel, level) {
			return m, invalid("model.effort: want one of %s, got %q", strings.Join(effortLevel, ", "), level)
		}
		m.Effort = level
	}
	return m, nil
}

func parseTool(field string, raw json.RawMessage) (Tool, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return Tool{}, invalid("%s: want an object with a type", field)
	}
	switch head.Type {
	case ToolCustom:
		var t struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"input_schema"`
		}
		if err := decodeStrict(field, raw, &t); err != nil {
			return Tool{}, err
		}
		if !toolNameRE.MatchString(t.Name) {
			return Tool{}, invalid("%s.name: 1 to 128 letters, digits, underscores and hyphens, got %q", field, t.Name)
		}
		if t.Description == "" {
			return Tool{}, invalid("%s.description: required", field)
		}
		var schema struct {
			Type string `json:"type"`
		}
		if !present(t.InputSchema) || json.Unmarshal(t.InputSchema, &schema) != nil || (schema.Type != "" && schema.Type != "object") {
			return Tool{}, invalid("%s.input_schema: required, a JSON Schema object with type \"object\"", field)
		}
		return Tool{Type: ToolCustom, Name: t.Name, Description: t.Description, InputSchema: t.InputSchema}, nil
	case ToolMCPToolset:
		var t struct {
			Type          string          `json:"type"`
			MCPServerName string          `json:"mcp_server_name"`
			DefaultConfig json.RawMessage `json:"default_config"`
			Configs       json.RawMessage `json:"configs"`
		}
		if err := decodeStrict(field, raw, &t); err != nil {
			return Tool{}, err
		}
		out := Tool{Type: ToolMCPToolset, MCPServerName: t.MCPServerName}
		if present(t.DefaultConfig) && !isNull(t.DefaultConfig) {
			tc, err := parseToolConfig(field+".default_config", t.DefaultConfig, false)
			if err != nil {
				return Tool{}, err
			}
			out.DefaultConfig = &tc
		}
		if present(t.Configs) && !isNull(t.Configs) {
			var raws []json.RawMessage
			if err := json.Unmarshal(t.Configs, &raws); err != nil {
				return Tool{}, invalid("%s.configs: want an array", field)
			}
			seen := map[string]bool{}
			for i, r := range raws {
				tc, err := parseToolConfig(fmt.Sprintf("%s.configs[%d]", field, i), r, true)
				if err != nil {
					return Tool{}, err
				}
				if seen[tc.Name] {
					return Tool{}, invalid("%s.configs[%d].name: %q appears twice", field, i, tc.Name)
				}
				seen[tc.Name] = true
				out.Configs = append(out.Configs, tc)
			}
		}
		return out, nil
	case "agent_toolset_20260401":
		return Tool{}, unsupported(field, "the prebuilt agent toolset (agent_toolset_20260401: bash and file tools in a sandbox container)")
	case "":
		return Tool{}, invalid("%s.type: required (custom or mcp_toolset)", field)
	}
	return Tool{}, unsupported(field+".type", fmt.Sprintf("tool type %q", head.Type))
}

func parseToolConfig(field string, raw json.RawMessage, named bool) (ToolConfig, error) {
	var c struct {
		Name             string          `json:"name"`
		Enabled          *bool           `json:"enabled"`
		PermissionPolicy json.RawMessage `json:"permission_policy"`
	}
	if err := decodeStrict(field, raw, &c); err != nil {
		return ToolConfig{}, err
	}
	if named && !toolNameRE.MatchString(c.Name) {
		return ToolConfig{}, invalid("%s.name: a tool name, got %q", field, c.Name)
	}
	if !named && c.Name != "" {
		return ToolConfig{}, invalid("%s: unknown field \"name\"", field)
	}
	out := ToolConfig{Name: c.Name, Enabled: c.Enabled}
	if present(c.PermissionPolicy) && !isNull(c.PermissionPolicy) {
		var p struct {
			Type string `json:"type"`
		}
		if err := decodeStrict(field+".permission_policy", c.PermissionPolicy, &p); err != nil {
			return ToolConfig{}, err
		}
		switch p.Type {
		case PolicyAlwaysAllow, PolicyAlwaysAsk:
			out.PermissionPolicy = p.Type
		case "auto":
			return ToolConfig{}, unsupported(field+".permission_policy", "the auto permission policy (a classifier decides)")
		default:
			return ToolConfig{}, invalid("%s.permission_policy.type: want always_allow or always_ask, got %q", field, p.Type)
		}
	}
	return out, nil
}

// checkTools checks the agent's tools against each other, its MCP servers
// and agentd's catalog.
func checkTools(c AgentConfig, cat Catalog) error {
	if len(c.Tools) > maxTools {
		return invalid("tools: at most %d", maxTools)
	}
	if len(c.MCPServers) > maxMCPServers {
		return invalid("mcp_servers: at most %d", maxMCPServers)
	}
	servers := map[string]bool{}
	for i, s := range c.MCPServers {
		if servers[s.Name] {
			return invalid("mcp_servers[%d].name: %q appears twice", i, s.Name)
		}
		servers[s.Name] = true
	}
	used := map[string]bool{}
	names := map[string]bool{}
	for i, t := range c.Tools {
		f := fmt.Sprintf("tools[%d]", i)
		switch t.Type {
		case ToolCustom:
			if names[t.Name] {
				return invalid("%s.name: %q appears twice", f, t.Name)
			}
			names[t.Name] = true
		case ToolMCPToolset:
			if used[t.MCPServerName] {
				return invalid("%s.mcp_server_name: %q has two toolsets", f, t.MCPServerName)
			}
			used[t.MCPServerName] = true
			if servers[t.MCPServerName] {
				continue
			}
			known, ok := cat[t.MCPServerName]
			if !ok {
				return invalid("%s.mcp_server_name: %q is neither in mcp_servers nor one of agentd's configured tool sources (%s)",
					f, t.MCPServerName, strings.Join(cat.names(), ", "))
			}
			for j, tc := range t.Configs {
				if known != nil && !slices.Contains(known, tc.Name) {
					return invalid("%s.configs[%d].name: agentd's %q has no tool %q (it has: %s)", f, j, t.MCPServerName, tc.Name, strings.Join(known, ", "))
				}
			}
		}
	}
	for i, s := range c.MCPServers {
		if !used[s.Name] {
			return invalid("mcp_servers[%d]: %q is not referenced by an mcp_toolset in tools", i, s.Name)
		}
	}
	return nil
}

func (c Catalog) names() []string {
	out := make([]string, 0, len(c))
	for n := range c {
		out = append(out, n)
	}
	slices.Sort(out)
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}
