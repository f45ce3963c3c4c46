package managed

import (
	"encoding/json"

	"github.com/agentd/agentd/internal/store"
)

// The answers' JSON, in the shapes anthropic-sdk-go decodes
// (BetaManagedAgentsAgent, BetaEnvironment, BetaManagedAgentsSession).

// Agent is a BetaManagedAgentsAgent.
type Agent struct {
	ID                string            `json:"id"`
	Type              string            `json:"type"`
	Name              string            `json:"name"`
	Description       *string           `json:"description"`
	System            *string           `json:"system"`
	Model             wireModel         `json:"model"`
	Tools             []any             `json:"tools"`
	MCPServers        []wireMCPServer   `json:"mcp_servers"`
	Skills            []any             `json:"skills"`
	Multiagent        any               `json:"multiagent"`
	ExecutionIdentity typeOnly          `json:"execution_identity"`
	Metadata          map[string]string `json:"metadata"`
	Version           int64             `json:"version"`
	CreatedAt         string            `json:"created_at"`
	UpdatedAt         string            `json:"updated_at"`
	ArchivedAt        *string           `json:"archived_at"`
}

// SessionAgent is the agent snapshot of a session
// (BetaManagedAgentsSessionAgent).
type SessionAgent struct {
	ID                string          `json:"id"`
	Type              string          `json:"type"`
	Name              string          `json:"name"`
	Description       *string         `json:"description"`
	System            *string         `json:"system"`
	Model             wireModel       `json:"model"`
	Tools             []any           `json:"tools"`
	MCPServers        []wireMCPServer `json:"mcp_servers"`
	Skills            []any           `json:"skills"`
	Multiagent        any             `json:"multiagent"`
	ExecutionIdentity typeOnly        `json:"execution_identity"`
	Version           int64           `json:"version"`
}

type typeOnly struct {
	Type string `json:"type"`
}

type wireModel struct {
	ID           string    `json:"id"`
	Effort       *typeOnly `json:"effort,omitempty"`
	Speed        string    `json:"speed"`
	InferenceGeo *string   `json:"inference_geo"`
}

type wireMCPServer struct {
	Name string `json:"name"`
	Type string `json:"type"`
	URL  string `json:"url"`
}

type wireCustomTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type wireToolset struct {
	Type          string           `json:"type"`
	MCPServerName string           `json:"mcp_server_name"`
	DefaultConfig wireToolConfig   `json:"default_config"`
	Configs       []wireToolConfig `json:"configs"`
}

type wireToolConfig struct {
	Name             string   `json:"name,omitempty"`
	Enabled          bool     `json:"enabled"`
	PermissionPolicy typeOnly `json:"permission_policy"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ResolvedDefault is an MCP toolset's default config with the API's
// defaults (enabled, always_ask) filled in.
func (t Tool) ResolvedDefault() ToolConfig {
	d := ToolConfig{Enabled: ptr(true), PermissionPolicy: PolicyAlwaysAsk}
	if t.DefaultConfig != nil {
		if t.DefaultConfig.Enabled != nil {
			d.Enabled = t.DefaultConfig.Enabled
		}
		if t.DefaultConfig.PermissionPolicy != "" {
			d.PermissionPolicy = t.DefaultConfig.PermissionPolicy
		}
	}
	return d
}

// Policy is the permission policy and enablement of tool name of an MCP
// toolset.
func (t Tool) Policy(name string) (enabled bool, policy string) {
	d := t.ResolvedDefault()
	enabled, policy = *d.Enabled, d.PermissionPolicy
	for _, c := range t.Configs {
		if c.Name != name {
			continue
		}
		if c.Enabled != nil {
			enabled = *c.Enabled
		}
		if c.PermissionPolicy != "" {
			policy = c.PermissionPolicy
		}
	}
	return enabled, policy
}

func ptr[T any](v T) *T { return &v }

func renderTools(tools []Tool) []any {
	out := make([]any, 0, len(tools))
	for _, t := range tools {
		switch t.Type {
		case ToolCustom:
			out = append(out, wireCustomTool{Type: ToolCustom, Name: t.Name, Description: t.Description, InputSchema: t.InputSchema})
		case ToolMCPToolset:
			d := t.ResolvedDefault()
			w := wireToolset{Type: ToolMCPToolset, MCPServerName: t.MCPServerName,
				DefaultConfig: wireToolConfig{Enabled: *d.Enabled, PermissionPolicy: typeOnly{d.PermissionPolicy}},
				Configs:       []wireToolConfig{}}
			for _, c := range t.Configs {
				en, pol := t.Policy(c.Name)
				w.Configs = append(w.Configs, wireToolConfig{Name: c.Name, Enabled: en, PermissionPolicy: typeOnly{pol}})
			}
			out = append(out, w)
		}
	}
	return out
}

func renderModel(m ModelConfig) wireModel {
	w := wireModel{ID: m.ID, Speed: "standard", InferenceGeo: optString(m.InferenceGeo)}
	if m.Speed != "" {
		w.Speed = m.Speed
	}
	if m.Effort != "" {
		w.Effort = &typeOnly{m.Effort}
	}
	return w
}

func renderServers(s []MCPServer) []wireMCPServer {
	out := make([]wireMCPServer, 0, len(s))
	for _, m := range s {
		out = append(out, wireMCPServer{Name: m.Name, Type: "url", URL: m.URL})
	}
	return out
}

// renderAgent is the wire form of a stored agent version.
func renderAgent(a store.ManagedAgent, c AgentConfig) Agent {
	md := c.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return Agent{
		ID: a.ID, Type: "agent", Name: c.Name, Description: optString(c.Description), System: optString(c.System),
		Model: renderModel(c.Model), Tools: renderTools(c.Tools), MCPServers: renderServers(c.MCPServers),
		Skills: []any{}, ExecutionIdentity: typeOnly{"service_account"}, Metadata: md,
		Version: a.Version, CreatedAt: mustTimestamp(a.CreatedAt), UpdatedAt: mustTimestamp(a.UpdatedAt),
		ArchivedAt: timestamp(a.ArchivedAt),
	}
}

func renderSessionAgent(a store.ManagedAgent, c AgentConfig) SessionAgent {
	return SessionAgent{
		ID: a.ID, Type: "agent", Name: c.Name, Description: optString(c.Description), System: optString(c.System),
		Model: renderModel(c.Model), Tools: renderTools(c.Tools), MCPServers: renderServers(c.MCPServers),
		Skills: []any{}, ExecutionIdentity: typeOnly{"service_account"}, Version: a.Version,
	}
}
