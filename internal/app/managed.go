package app

import (
	"context"
	"path"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/toolset"
)

// buildManaged returns the Managed Agents face over st. With sync (the API
// role) it records the configuration's agents as shared, read-only managed
// agents, a new version when one changed.
func buildManaged(ctx context.Context, cfg *config.Config, st store.Managed, tools *toolset.Set, sync bool) (*managed.Service, error) {
	agentd := []string{}
	for _, t := range tool.Builtins(nil) {
		agentd = append(agentd, t.Spec().Name)
	}
	for _, h := range cfg.Tools.HTTP {
		agentd = append(agentd, h.Name)
	}
	cat := managed.Catalog{managed.AgentdToolset: agentd}
	for _, m := range cfg.Tools.MCPServers {
		cat[m.Name] = nil // its tools are known once it runs: checked when a session calls one
	}
	svc := &managed.Service{Store: st, Catalog: cat}
	if !sync {
		return svc, nil
	}
	var agents []managed.AgentConfig
	for _, a := range cfg.Agents {
		c := managed.AgentConfig{Name: a.Name, System: a.System, Model: managed.ModelConfig{ID: a.Model}}
		sets := map[string]*managed.Tool{}
		var order []string
		for _, ti := range tools.Infos(a.Name) {
			server := managed.AgentdToolset
			if ti.Source == "mcp" {
				server = ti.Server
			}
			ts, ok := sets[server]
			if !ok {
				off := false
				ts = &managed.Tool{Type: managed.ToolMCPToolset, MCPServerName: server,
					DefaultConfig: &managed.ToolConfig{Enabled: &off, PermissionPolicy: managed.PolicyAlwaysAllow}}
				sets[server] = ts
				order = append(order, server)
			}
			on, policy := true, managed.PolicyAlwaysAllow
			if ti.ApprovalRequired || matchAny(a.ApprovalRequired, ti.Name) {
				policy = managed.PolicyAlwaysAsk // the run pauses for a user.tool_confirmation
			}
			ts.Configs = append(ts.Configs, managed.ToolConfig{Name: ti.Name, Enabled: &on, PermissionPolicy: policy})
		}
		for _, s := range order {
			c.Tools = append(c.Tools, *sets[s])
		}
		agents = append(agents, c)
	}
	if err := svc.SyncConfigAgents(ctx, agents); err != nil {
		return nil, err
	}
	return svc, nil
}

// matchAny reports whether name matches one of the path.Match globs.
func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// sessionWebhooks is the lookup of the sessions' webhook endpoints:
// managed.tenants, else managed.webhook_url.
func sessionWebhooks(m config.ManagedAgents) *managed.WebhookEndpoints {
	tenants := make(map[string]managed.WebhookEndpoint, len(m.Tenants))
	for name, t := range m.Tenants {
		tenants[name] = managed.WebhookEndpoint{URL: t.WebhookURL.Value(), Key: t.WebhookSigningKey.Value()}
	}
	return managed.NewWebhookEndpoints(managed.WebhookEndpoint{URL: m.WebhookURL.Value(), Key: m.WebhookSigningKey.Value()}, tenants)
}
