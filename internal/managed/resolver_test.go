package managed

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/tool"
)

// Build turns an agent version into a run agent: custom tools executed by
// the client, the enabled tools of its agentd toolset with their
// permission policies, the defaults' limits; what it cannot run it refuses.
func TestResolverBuild(t *testing.T) {
	t.Parallel()
	var asked []string
	r := &Resolver{
		Model: func(m string) (llm.Model, error) { asked = append(asked, m); return nil, nil },
		Tools: func(server string) []tool.Tool {
			if server == AgentdToolset {
				return tool.Builtins(nil) // clock, calculator, word_count
			}
			return nil
		},
		Defaults:    run.Agent{MaxSteps: 7, MaxTokens: 99},
		MaxMessages: 5,
	}
	on, off := true, false
	c := AgentConfig{Name: "n", System: "be brief", Model: ModelConfig{ID: "claude-x"}, Tools: []Tool{
		{Type: ToolCustom, Name: "lookup", InputSchema: raw(`{"type":"object","properties":{"q":{"type":"string"}}}`)},
		{Type: ToolCustom, Name: "bare"},
		{Type: ToolMCPToolset, MCPServerName: AgentdToolset, DefaultConfig: &ToolConfig{Enabled: &on, PermissionPolicy: PolicyAlwaysAllow},
			Configs: []ToolConfig{{Name: "calculator", PermissionPolicy: PolicyAlwaysAsk}, {Name: "word_count", Enabled: &off}}},
	}}
	a, err := r.Build("t", "agent_1", c)
	require.NoError(t, err)
	require.Equal(t, []string{"claude-x"}, asked)
	require.Equal(t, "agent_1", a.Name, "the run's agent (and metrics label) is the agent id")
	require.Equal(t, "claude-x", a.Model)
	require.Equal(t, "be brief", a.System)
	require.Equal(t, 7, a.MaxSteps)
	require.Equal(t, 99, a.MaxTokens)
	require.Equal(t, 5, a.MaxMessages)
	var names []string
	for _, tl := range a.Tools {
		names = append(names, tl.Spec().Name)
	}
	require.Equal(t, []string{"lookup", "bare", "clock", "calculator"}, names)
	require.True(t, tool.IsClient(a.Tools[0]))
	require.JSONEq(t, `{"type":"object","properties":{"q":{"type":"string"}}}`, string(a.Tools[0].Spec().InputSchema))
	require.JSONEq(t, `{"type":"object"}`, string(a.Tools[1].Spec().InputSchema))
	require.False(t, tool.IsClient(a.Tools[2]))
	require.Equal(t, []string{"calculator"}, a.Approval.Tools, "always_ask waits for a confirmation")

	// MCP servers by URL, and a configured tool the source lacks: refused.
	_, err = r.Build("t", "agent_2", AgentConfig{Model: ModelConfig{ID: "m"}, MCPServers: []MCPServer{{Name: "docs", URL: "https://mcp.example.com"}}})
	e, ok := AsInvalid(err)
	require.True(t, ok, "%v", err)
	require.Contains(t, e.Message, "https://mcp.example.com")
	_, err = r.Build("t", "agent_3", AgentConfig{Model: ModelConfig{ID: "m"}, Tools: []Tool{{Type: ToolMCPToolset, MCPServerName: "kv",
		Configs: []ToolConfig{{Name: "get", Enabled: &on}}}}})
	e, ok = AsInvalid(err)
	require.True(t, ok, "%v", err)
	require.Contains(t, e.Message, `"get"`)
}
