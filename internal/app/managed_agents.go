package app

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/managed"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/mcp"
	"github.com/agentd/agentd/internal/tool/toolset"
)

// maxManagedModels bounds the distinct model ids API-created agents may
// use on one process: each gets a resilience stack (and a breaker and
// metrics series), so a client cannot grow them without bound.
const maxManagedModels = 64

// managedModels builds, once per model id, the resilience stack (fallback
// chain, breaker, retries, key pool; the agents' shared cache off) of the
// models that agents created through the Managed Agents API name.
type managedModels struct {
	provider *resilience.Provider
	metrics  *resilience.Metrics
	log      *slog.Logger

	mu     sync.Mutex
	models map[string]llm.Model
}

func (m *managedModels) model(id string) (llm.Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.models[id]; ok {
		return c, nil
	}
	if len(m.models) >= maxManagedModels {
		return nil, &managed.InvalidError{Message: fmt.Sprintf("model %q: this process already serves %d distinct models for "+
			"agents created through the API (the limit); use one of those", id, maxManagedModels)}
	}
	c, err := resilience.Build(resilience.AgentConfig{Name: "managed:" + id, Model: id}, m.provider, nil, m.metrics, m.log)
	if err != nil {
		return nil, err
	}
	if m.models == nil {
		m.models = map[string]llm.Model{}
	}
	m.models[id] = c
	return c, nil
}

// managedResolver runs the agents created through the Managed Agents API
// (the run service's Resolver): their models through the process's
// resilience stack, their mcp_toolsets from agentd's configured tools.
func managedResolver(cfg *config.Config, st store.Managed, tools *toolset.Set, models *managedModels, pool *mcp.Pool, log *slog.Logger) *managed.Resolver {
	// agentd's configured tools by source, as the toolset built them
	// (guarded, audited): a built-in or HTTP tool is in AgentdToolset, an
	// MCP server's under its name. Built-ins no agent uses come bare.
	bySource := map[string][]tool.Tool{}
	seen := map[string]bool{}
	add := func(src string, t tool.Tool) {
		if k := src + "\x00" + t.Spec().Name; !seen[k] {
			seen[k] = true
			bySource[src] = append(bySource[src], t)
		}
	}
	for _, a := range cfg.Agents {
		infos := tools.Infos(a.Name)
		for i, t := range tools.Tools(a.Name) {
			src := managed.AgentdToolset
			if i < len(infos) && infos[i].Source == toolset.SourceMCP {
				src = infos[i].Server
			}
			add(src, t)
		}
	}
	for _, t := range tool.Builtins(nil) {
		add(managed.AgentdToolset, t)
	}
	return &managed.Resolver{
		Store: st,
		Model: models.model,
		Tools: func(server string) []tool.Tool { return bySource[server] },
		MCP:   pool,
		// The output guard of configured MCP tools, without per-tool
		// metrics (the tools are the clients', their names unbounded;
		// the pool counts calls by host) nor a breaker (the pool's
		// transport has one per host).
		MCPGuard: tool.GuardOptions{Secrets: tools.Secrets(), Log: log.With("component", "mcp-pool")},
		Defaults: agentrun.Agent{MaxSteps: config.DefaultAgentMaxSteps, MaxTokens: config.DefaultAgentMaxTokens,
			Timeout: config.DefaultAgentTimeout},
		MaxMessages: config.DefaultAgentMaxMessages,
	}
}
