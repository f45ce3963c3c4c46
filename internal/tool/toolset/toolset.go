// Package toolset builds every agent's tools from the configuration:
// built-in tools, HTTP tools and the tools of MCP servers, each external tool
// behind the output guard (tool.Guard) and, when consequential, the audit
// log (tool.Audited).
package toolset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/httptool"
	"github.com/agentd/agentd/internal/tool/mcp"
)

// Sources of tools (Info.Source).
const (
	SourceBuiltin = "builtin"
	SourceHTTP    = "http"
	SourceMCP     = "mcp" // Info.Server names the server
)

// Options are the dependencies of Start.
type Options struct {
	Log     *slog.Logger
	Metrics *tool.Metrics
	// Audit records consequential calls; required when a tool is
	// consequential.
	Audit tool.AuditAppender
	// Builtins are the built-in tools; nil: tool.Builtins(nil).
	Builtins []tool.Tool
	// SecretsChanged, when set, is called after tool secrets changed
	// (RefreshSecrets) with every value that is scrubbed, so that other
	// redactors (the log's) follow rotations.
	SecretsChanged func(values []string)
	// Breakers holds the breakers of HTTP tools ("tool:NAME") and MCP
	// servers ("mcp:NAME"); nil: no breakers.
	Breakers *breaker.Set
}

// Info describes one tool of an agent.
type Info struct {
	Name          string
	Description   string
	Source        string // builtin, http, mcp
	Server        string // the MCP server, for Source mcp
	Consequential bool
	// ApprovalRequired: calls wait for a person's decision
	// (tools.http[].approval, tools.mcp_servers[].approval_tools).
	ApprovalRequired bool
}

// Set is every agent's tools and the running MCP servers.
type Set struct {
	secrets   *tool.Secrets
	refresher *tool.SecretRefresher
	servers   []*mcp.Server
	tools     map[string][]tool.Tool
	infos     map[string][]Info
	timeouts  map[string]time.Duration
}

// ToolTimeout is the run loop's per-call bound for the agent: the longest
// timeout of its HTTP and MCP tools plus 5s (so that a tool's own timeout,
// which has a clearer message, fires first); 0 when it has none (the loop's
// default applies).
func (s *Set) ToolTimeout(agent string) time.Duration {
	if d := s.timeouts[agent]; d > 0 {
		return d + 5*time.Second
	}
	return 0
}

// Tools returns the agent's tools in config order: tools (built-in and
// HTTP) then mcp.
func (s *Set) Tools(agent string) []tool.Tool { return s.tools[agent] }

// Infos describes the agent's tools.
func (s *Set) Infos(agent string) []Info { return s.infos[agent] }

// Secrets returns the tool secrets: their Values (current, and replaced
// ones in their grace period) are for the other redactors.
func (s *Set) Secrets() *tool.Secrets { return s.secrets }

// RefreshSecrets re-reads the secrets that come from files
// (secrets_refresh) until ctx ends; a changed value is used by the next
// tool call. It returns nil when ctx ends (with no secret from a file it
// just waits for that).
func (s *Set) RefreshSecrets(ctx context.Context) error { return s.refresher.Run(ctx) }

// Servers returns the MCP servers.
func (s *Set) Servers() []*mcp.Server { return s.servers }

// Stop stops every MCP server (stdio servers are terminated).
func (s *Set) Stop() {
	var wg sync.WaitGroup
	for _, srv := range s.servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.Stop() }()
	}
	wg.Wait()
}

// Check validates what can be checked without starting MCP servers: every
// agents[i].tools[j] names a built-in or HTTP tool, HTTP tool names do not
// clash with built-in ones, and every HTTP tool and MCP server builds.
// Errors carry the field path.
func Check(cfg *config.Config) error { return CheckWith(cfg, nil) }

// CheckWith is Check with builtins as the built-in tools (nil:
// tool.Builtins(nil)), e.g. with the Go tools of a program embedding
// agentd.
func CheckWith(cfg *config.Config, builtins []tool.Tool) error {
	_, _, err := build(cfg, Options{Log: slog.New(slog.DiscardHandler), Builtins: builtins}, false)
	return err
}

// Start builds the tools and starts the MCP servers, in parallel, each
// waiting up to its connect_timeout. A server that does not come up is
// logged and retried in the background: agentd serves without it (its
// literal tool names stay visible; their calls fail as unavailable until
// it is up). Config errors fail Start with the field path. Call Stop on
// shutdown.
func Start(ctx context.Context, cfg *config.Config, o Options) (*Set, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	set, local, err := build(cfg, o, true)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for _, srv := range set.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Start(ctx); err != nil {
				o.Log.Error("MCP server did not start; agentd serves without it and keeps retrying",
					"mcp_server", srv.Name(), "err", err)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		set.Stop()
		return nil, err
	}
	if err := local.assemble(cfg, set); err != nil {
		set.Stop()
		return nil, err
	}
	return set, nil
}

// built is what build prepares before the servers are up.
type built struct {
	o        Options
	secrets  *tool.Secrets
	named    map[string]tool.Tool // built-in and HTTP tools, wrapped
	infos    map[string]Info
	servers  map[string]*mcp.Server
	mcpCfg   map[string]config.MCPServer
	limiters map[string]*tool.Limiter
}

func build(cfg *config.Config, o Options, forStart bool) (*Set, *built, error) {
	if o.Builtins == nil {
		o.Builtins = tool.Builtins(nil)
	}
	b := &built{
		o: o, secrets: tool.NewSecrets(cfg.SecretValues()),
		named: map[string]tool.Tool{}, infos: map[string]Info{},
		servers: map[string]*mcp.Server{}, mcpCfg: map[string]config.MCPServer{}, limiters: map[string]*tool.Limiter{},
	}
	var errs []error
	fail := func(p string, err error) { errs = append(errs, fmt.Errorf("%s: %w", p, err)) }
	for _, t := range o.Builtins {
		s := t.Spec()
		b.named[s.Name] = t
		b.infos[s.Name] = Info{Name: s.Name, Description: s.Description, Source: SourceBuiltin}
	}
	builtinNames := sortedKeys(b.named)
	for i, h := range cfg.Tools.HTTP {
		p := fmt.Sprintf("tools.http[%d]", i)
		if _, clash := b.named[h.Name]; clash {
			fail(p+".name", fmt.Errorf("%q is already a built-in or HTTP tool", h.Name))
			continue
		}
		if h.Consequential && o.Audit == nil && forStart {
			fail(p+".consequential", errors.New("consequential tools need the audit log (no audit store configured)"))
			continue
		}
		var in json.RawMessage
		if h.InputSchema != nil {
			raw, err := json.Marshal(h.InputSchema)
			if err != nil {
				fail(p+".input_schema", err)
				continue
			}
			in = raw
		}
		var out *tool.Schema
		if h.OutputSchema != nil {
			raw, err := json.Marshal(h.OutputSchema)
			if err == nil {
				out, err = tool.ParseSchema(raw)
			}
			if err != nil {
				fail(p+".output_schema", err)
				continue
			}
		}
		ht, err := httptool.New(httptool.Config{
			Name: h.Name, Description: h.Description, Method: h.Method, URL: h.URL, InputSchema: in,
			Headers: h.Headers, AllowPrivate: h.AllowPrivate, Consequential: h.Consequential,
			MaxResponseBytes: int64(h.MaxOutputBytes) + int64(b.secrets.MaxLen()) + 4096,
			Secrets:          b.secrets,
		})
		if err != nil {
			fail(p, err)
			continue
		}
		t := tool.Guard(ht, tool.GuardOptions{
			Source: SourceHTTP, Timeout: h.Timeout, Limiter: tool.NewLimiter(h.MaxConcurrency),
			Breaker:        o.Breakers.Get(breaker.PrefixTool + h.Name),
			MaxOutputBytes: h.MaxOutputBytes, OutputSchema: out, Secrets: b.secrets,
			Log: o.Log.With("tool", h.Name), Metrics: o.Metrics,
		})
		if h.Consequential {
			t = tool.Audited(t, tool.AuditOptions{Store: o.Audit, Secrets: b.secrets, Log: o.Log, Metrics: o.Metrics})
		}
		b.named[h.Name] = t
		b.infos[h.Name] = Info{Name: h.Name, Description: h.Description, Source: SourceHTTP, Consequential: h.Consequential,
			ApprovalRequired: h.Approval == config.ApprovalRequired}
	}
	set := &Set{secrets: b.secrets,
		tools: map[string][]tool.Tool{}, infos: map[string][]Info{}, timeouts: map[string]time.Duration{}}
	for i, m := range cfg.Tools.MCPServers {
		p := fmt.Sprintf("tools.mcp_servers[%d]", i)
		if (m.Consequential || len(m.ConsequentialTools) > 0) && o.Audit == nil && forStart {
			fail(p+".consequential", errors.New("consequential tools need the audit log (no audit store configured)"))
			continue
		}
		prefix := m.Name + "_"
		if m.BareToolNames {
			prefix = ""
		}
		srv, err := mcp.New(mcp.Config{
			Name: m.Name, Command: m.Command, Env: m.Env, Dir: m.Dir, URL: m.URL, Headers: m.Headers,
			ConnectTimeout: m.ConnectTimeout, ToolPrefix: prefix, Secrets: b.secrets,
			Log: o.Log, Metrics: o.Metrics,
		})
		if err != nil {
			fail(p, err)
			continue
		}
		b.servers[m.Name] = srv
		b.mcpCfg[m.Name] = m
		b.limiters[m.Name] = tool.NewLimiter(m.MaxConcurrency)
		set.servers = append(set.servers, srv)
	}
	set.refresher = secretRefresher(cfg, b.secrets, o, set.servers)
	for i, a := range cfg.Agents {
		for j, name := range a.Tools {
			if _, ok := b.named[name]; !ok {
				fail(fmt.Sprintf("agents[%d].tools[%d]", i, j), fmt.Errorf("unknown tool %q (built-in tools: %s; HTTP tools: %s)",
					name, strings.Join(builtinNames, ", "), strings.Join(httpNames(cfg), ", ")))
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("config is invalid:\n%w", errors.Join(errs...))
	}
	return set, b, nil
}

// assemble gives each agent its tools once the servers were started.
func (b *built) assemble(cfg *config.Config, set *Set) error {
	var errs []error
	for i, a := range cfg.Agents {
		var tools []tool.Tool
		var infos []Info
		seen := map[string]string{} // exposed name → field path
		add := func(p string, t tool.Tool, info Info) {
			name := t.Spec().Name
			if prev, dup := seen[name]; dup {
				errs = append(errs, fmt.Errorf("%s: tool name %q clashes with %s (set bare_tool_names: false or narrow the allow-list)", p, name, prev))
				return
			}
			seen[name] = p
			info.Name = name
			tools = append(tools, t)
			infos = append(infos, info)
		}
		for j, name := range a.Tools {
			add(fmt.Sprintf("agents[%d].tools[%d]", i, j), b.named[name], b.infos[name])
			for _, h := range cfg.Tools.HTTP {
				if h.Name == name {
					set.timeouts[a.Name] = max(set.timeouts[a.Name], h.Timeout)
				}
			}
		}
		for j, am := range a.MCP {
			p := fmt.Sprintf("agents[%d].mcp[%d]", i, j)
			srv, m := b.servers[am.Server], b.mcpCfg[am.Server]
			set.timeouts[a.Name] = max(set.timeouts[a.Name], m.Timeout)
			consequential := func(n string) bool { return m.Consequential || matchAny(m.ConsequentialTools, n) }
			ts, err := srv.Tools(mcp.ToolOptions{Allow: am.Tools, Consequential: consequential})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.tools: %w", p, err))
				continue
			}
			if len(ts) == 0 {
				b.o.Log.Warn("MCP allow-list matches no tool of the server (yet)", "agent", a.Name, "mcp_server", am.Server,
					"allow", am.Tools, "offered", srv.ToolNames())
			}
			for _, t := range ts {
				orig := t.(interface{ ServerToolName() string }).ServerToolName()
				isCons := consequential(orig)
				wrapped := tool.Guard(t, tool.GuardOptions{
					Source: "mcp server " + am.Server, Timeout: m.Timeout, Limiter: b.limiters[am.Server],
					Breaker:        b.o.Breakers.Get(breaker.PrefixMCP + am.Server),
					MaxOutputBytes: m.MaxOutputBytes, Secrets: b.secrets,
					Log: b.o.Log.With("tool", t.Spec().Name, "mcp_server", am.Server), Metrics: b.o.Metrics,
				})
				if isCons {
					wrapped = tool.Audited(wrapped, tool.AuditOptions{Store: b.o.Audit, Secrets: b.secrets, Log: b.o.Log, Metrics: b.o.Metrics})
				}
				add(p, wrapped, Info{Description: t.Spec().Description, Source: SourceMCP, Server: am.Server, Consequential: isCons,
					ApprovalRequired: matchAny(m.ApprovalTools, orig)})
			}
		}
		set.tools[a.Name] = tools
		set.infos[a.Name] = infos
	}
	if len(errs) > 0 {
		return fmt.Errorf("config is invalid:\n%w", errors.Join(errs...))
	}
	return nil
}

// secretRefresher re-reads the secrets of cfg that come from files.
func secretRefresher(cfg *config.Config, secrets *tool.Secrets, o Options, servers []*mcp.Server) *tool.SecretRefresher {
	var sources []tool.SecretSource
	for _, rs := range cfg.RefreshableSecrets() {
		sources = append(sources, tool.SecretSource{
			Name: rs.Name, Origin: "file:" + strings.Join(rs.Files, ","),
			Read: func(context.Context) (string, error) { return rs.Read() },
		})
	}
	return tool.NewSecretRefresher(secrets, sources, tool.SecretRefreshConfig{
		PollInterval: cfg.SecretsRefresh.PollInterval, Grace: cfg.SecretsRefresh.Grace,
	}, tool.SecretRefreshOptions{
		Log: o.Log, Metrics: o.Metrics, Changed: o.SecretsChanged,
		Rotated: func(name string) {
			for _, srv := range servers {
				srv.SecretRotated(name)
			}
		},
	})
}

func httpNames(cfg *config.Config) []string {
	var names []string
	for _, h := range cfg.Tools.HTTP {
		names = append(names, h.Name)
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// matchAny reports whether name matches one of the path.Match patterns.
func matchAny(patterns []string, name string) bool {
	for _, g := range patterns {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}
