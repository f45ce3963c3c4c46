package managed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// Resolver makes the agents created through the API runnable: it is the
// run service's run.AgentResolver, so that a session's turn is an ordinary
// durable run whose agent is a stored agent version. The run's Agent (also
// its metrics label) is the agent's id: bounded by the agents created, as a
// configured agent's name is bounded by the configuration.
//
//	model          Model(model.id): the process's resilience stack for it
//	system         the system prompt
//	custom tools   tool.Client: a call pauses the run (requires_action)
//	               until the client's user.custom_tool_result
//	mcp_toolset    agentd's configured tools of that source (AgentdToolset
//	               or a configured MCP server), those enabled; always_ask
//	               ones wait for a user.tool_confirmation
//	mcp_servers    refused: agentd does not connect to an agent's own MCP
//	               servers by URL yet
type Resolver struct {
	Store store.Managed
	// Model returns the model client (resilience stack) of a model id.
	Model func(model string) (llm.Model, error)
	// Tools returns agentd's configured tools of a source: AgentdToolset
	// or a configured MCP server's name.
	Tools func(server string) []tool.Tool
	// Defaults are the run limits of every API-created agent (MaxSteps,
	// MaxTokens, Timeout, ToolTimeout, Approval.Timeout).
	Defaults run.Agent
	// MaxMessages caps a session's stored conversation.
	MaxMessages int
}

// ResolveAgent implements run.AgentResolver: agent id at version (0: the
// latest) of the tenant.
func (r *Resolver) ResolveAgent(ctx context.Context, tenant, id string, version int) (*run.ChatAgent, error) {
	a, err := r.Store.GetManagedAgent(ctx, tenant, id, int64(version))
	if errors.Is(err, store.ErrNotFound) {
		if version == 0 {
			return nil, fmt.Errorf("%w: %q", run.ErrAgentNotFound, id)
		}
		return nil, fmt.Errorf("%w: %q (version %d)", run.ErrAgentNotFound, id, version)
	}
	if err != nil {
		return nil, err
	}
	c, err := decodeAgent(a)
	if err != nil {
		return nil, err
	}
	return r.Build(a.ID, c)
}

// Build returns the run agent of an agent version; an agent this server
// cannot run is an InvalidError saying why.
func (r *Resolver) Build(id string, c AgentConfig) (*run.ChatAgent, error) {
	if len(c.MCPServers) > 0 {
		return nil, invalid("agent %s: mcp_servers (%s, by URL): connecting to an agent's own MCP servers is not supported by this "+
			"server yet; use agentd's configured MCP servers (an mcp_toolset naming one) instead (see docs/managed-agents.md)",
			id, c.MCPServers[0].URL)
	}
	if r.Model == nil {
		return nil, errors.New("managed agents: no model source")
	}
	model, err := r.Model(c.Model.ID)
	if err != nil {
		return nil, fmt.Errorf("agent %s: model %s: %w", id, c.Model.ID, err)
	}
	a := r.Defaults
	a.Name, a.Model, a.System, a.Client = id, c.Model.ID, c.System, model
	a.Tools, a.FallbackModels, a.Approval.Tools = nil, nil, nil
	seen := map[string]bool{}
	for _, t := range c.Tools {
		switch t.Type {
		case ToolCustom:
			schema := t.InputSchema
			if len(schema) == 0 {
				schema = json.RawMessage(`{"type":"object"}`)
			}
			a.Tools = append(a.Tools, tool.Client{S: llm.ToolSpec{Name: t.Name, Description: t.Description, InputSchema: schema}})
			seen[t.Name] = true
		case ToolMCPToolset:
			var offered []tool.Tool
			if r.Tools != nil {
				offered = r.Tools(t.MCPServerName)
			}
			for _, ct := range t.Configs { // a named tool the source does not have: refused, not ignored
				if on, _ := t.Policy(ct.Name); on && !hasTool(offered, ct.Name) {
					return nil, invalid("agent %s: tool %q of mcp_toolset %q is not available on this server (agentd offers only the "+
						"tools its configuration attaches to an agent)", id, ct.Name, t.MCPServerName)
				}
			}
			for _, ot := range offered {
				name := ot.Spec().Name
				on, policy := t.Policy(name)
				if !on || seen[name] {
					continue
				}
				seen[name] = true
				a.Tools = append(a.Tools, ot)
				if policy == PolicyAlwaysAsk {
					a.Approval.Tools = append(a.Approval.Tools, name)
				}
			}
		}
	}
	return &run.ChatAgent{Agent: a, MaxMessages: r.MaxMessages}, nil
}

func hasTool(ts []tool.Tool, name string) bool {
	for _, t := range ts {
		if t.Spec().Name == name {
			return true
		}
	}
	return false
}
