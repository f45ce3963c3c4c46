package managed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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
//	mcp_servers    by URL, through MCP (the process's pool of MCP clients,
//	               with the operator's credentials, a breaker and metrics
//	               per host): the URL is checked against the private-address policy
//	               when the agent is resolved; the server is connected and
//	               its tools listed when a run executes (run.ChatAgent's
//	               Prepare, on the executing process, again at every
//	               resume), its toolset's enabled tools offered as above
type Resolver struct {
	Store store.Managed
	// Model returns the model client (resilience stack) of a model id.
	Model func(model string) (llm.Model, error)
	// Tools returns agentd's configured tools of a source: AgentdToolset
	// or a configured MCP server's name.
	Tools func(server string) []tool.Tool
	// MCP connects to the MCP servers agents name by URL; nil: agents
	// with mcp_servers are refused.
	MCP MCPClients
	// MCPGuard are the options of the output guard around each tool of an
	// MCP server by URL (Source is set per server).
	MCPGuard tool.GuardOptions
	// Defaults are the run limits of every API-created agent (MaxSteps,
	// MaxTokens, Timeout, ToolTimeout, Approval.Timeout).
	Defaults run.Agent
	// MaxMessages caps a session's stored conversation.
	MaxMessages int
}

// MCPClients are the process's MCP clients of servers by URL (mcp.Pool).
type MCPClients interface {
	// CheckURL checks a URL against the private-address policy, without
	// connecting.
	CheckURL(url string) error
	// Tools connects (if need be, bounded) and returns the server's tools
	// for a run of tenant (whose credentials the connection sends).
	Tools(ctx context.Context, tenant, url string) ([]tool.Tool, error)
	// Known returns the tool names the server offered tenant when last
	// listed, without connecting (nil: not connected on this process).
	Known(tenant, url string) []string
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
	return r.Build(tenant, a.ID, c)
}

// Build returns the run agent of an agent version of tenant; an agent
// this server cannot run is an InvalidError saying why. It does not
// connect to the agent's MCP servers by URL: the agent's Prepare does,
// when a run of it executes, as tenant (the credentials it may use).
func (r *Resolver) Build(tenant, id string, c AgentConfig) (*run.ChatAgent, error) {
	if err := r.CheckMCPServers(c); err != nil {
		return nil, invalid("agent %s: %s", id, err.Message)
	}
	a, err := r.build(context.Background(), tenant, id, c, false)
	if err != nil {
		return nil, err
	}
	if len(c.MCPServers) > 0 {
		a.Prepare = func(ctx context.Context) (*run.ChatAgent, error) { return r.build(ctx, tenant, id, c, true) }
	}
	return a, nil
}

// CheckMCPServers checks the URLs of c's MCP servers against the process's
// policy (no connection): an InvalidError naming the first refused.
func (r *Resolver) CheckMCPServers(c AgentConfig) *InvalidError {
	if len(c.MCPServers) == 0 {
		return nil
	}
	if r == nil || r.MCP == nil {
		return &InvalidError{Message: fmt.Sprintf("mcp_servers (%s, by URL): this process does not connect to MCP servers by URL", c.MCPServers[0].URL)}
	}
	for i, s := range c.MCPServers {
		if err := r.MCP.CheckURL(s.URL); err != nil {
			return &InvalidError{Message: fmt.Sprintf("mcp_servers[%d].url (%s): %v", i, s.URL, err)}
		}
	}
	return nil
}

// build is Build; with connect, the tools of its MCP servers by URL are
// listed (connecting as needed) and offered per their toolsets, else they
// are left out.
func (r *Resolver) build(ctx context.Context, tenant, id string, c AgentConfig, connect bool) (*run.ChatAgent, error) {
	if r.Model == nil {
		return nil, errors.New("managed agents: no model source")
	}
	model, err := r.Model(c.Model.ID)
	if err != nil {
		return nil, fmt.Errorf("agent %s: model %s: %w", id, c.Model.ID, err)
	}
	urls := map[string]string{}
	for _, s := range c.MCPServers {
		urls[s.Name] = s.URL
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
			url, byURL := urls[t.MCPServerName]
			switch {
			case byURL && !connect:
				continue
			case byURL:
				ts, err := r.MCP.Tools(ctx, tenant, url)
				if err != nil {
					return nil, fmt.Errorf("mcp_servers %q (%s) of agent %s: %w", t.MCPServerName, url, id, err)
				}
				g := r.MCPGuard
				g.Source = fmt.Sprintf("mcp server %s (%s)", t.MCPServerName, url)
				for _, x := range ts {
					offered = append(offered, tool.Guard(x, g))
				}
				for _, ct := range t.Configs {
					if on, _ := t.Policy(ct.Name); on && !hasTool(offered, ct.Name) {
						return nil, fmt.Errorf("mcp_servers %q (%s) of agent %s offers no tool %q, which its mcp_toolset enables (it offers: %s)",
							t.MCPServerName, url, id, ct.Name, strings.Join(toolNames(offered), ", "))
					}
				}
			default:
				if r.Tools != nil {
					offered = r.Tools(t.MCPServerName)
				}
				for _, ct := range t.Configs { // a named tool the source does not have: refused, not ignored
					if on, _ := t.Policy(ct.Name); on && !hasTool(offered, ct.Name) {
						return nil, invalid("agent %s: tool %q of mcp_toolset %q is not available on this server (agentd offers only the "+
							"tools its configuration attaches to an agent)", id, ct.Name, t.MCPServerName)
					}
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

// MCPServerOf returns, for the session stream of agent c of tenant, the MCP server
// (mcp_server_name) a tool name belongs to, among c's MCP servers by URL:
// the one whose tools, as this process last listed them, include it;
// else, when c has a single toolset of a server by URL and no other
// toolset offers the name, that one.
func (r *Resolver) MCPServerOf(tenant string, c AgentConfig) func(name string) (string, bool) {
	if r == nil || r.MCP == nil || len(c.MCPServers) == 0 {
		return func(string) (string, bool) { return "", false }
	}
	urls := map[string]string{}
	for _, s := range c.MCPServers {
		urls[s.Name] = s.URL
	}
	var byURL, others []string
	for _, t := range c.Tools {
		if t.Type != ToolMCPToolset {
			continue
		}
		if _, ok := urls[t.MCPServerName]; ok {
			byURL = append(byURL, t.MCPServerName)
		} else {
			others = append(others, t.MCPServerName)
		}
	}
	return func(name string) (string, bool) {
		for _, s := range byURL {
			if slices.Contains(r.MCP.Known(tenant, urls[s]), name) {
				return s, true
			}
		}
		if len(byURL) != 1 {
			return "", false
		}
		for _, o := range others {
			if r.Tools != nil && hasTool(r.Tools(o), name) {
				return "", false
			}
		}
		return byURL[0], true
	}
}

func toolNames(ts []tool.Tool) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Spec().Name)
	}
	return out
}

func hasTool(ts []tool.Tool, name string) bool {
	for _, t := range ts {
		if t.Spec().Name == name {
			return true
		}
	}
	return false
}
