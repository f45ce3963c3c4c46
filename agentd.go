// Package agentd embeds agentd's runtime in a Go program: agents defined
// in code (the same configuration as agentd's YAML file), tools written
// as Go functions, and either the whole server (the HTTP API, queue
// workers and background loops of `agentd serve`) or single agent turns
// run in-process.
//
// A program builds a [Config] (or loads one with [LoadConfig]), makes its
// tools with [NewTool], and calls [New] then [Server.Run]; [Server.Chat]
// runs one turn in-process while it serves, and [Chat] does all of that
// for one turn. The surface is kept small on purpose: everything else is
// configuration (docs/configuration.md) or the HTTP API (docs/api.md).
//
// Without an Anthropic API key (Config.Providers.Anthropic.APIKey),
// agentd answers from its built-in Claude API simulator and logs that it
// does (providers.anthropic.simulate).
package agentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/config"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// Config is agentd's whole configuration: the struct the YAML file
// decodes into, field for field (yaml tags name them; docs/configuration.md
// documents each). Zero fields take their defaults.
type Config = config.Config

// Agent is one agent of Config.Agents. Its Tools name built-in tools,
// HTTP tools and the Go tools given with [WithTools].
type Agent = config.Agent

// HTTPTool is one HTTP tool of Config.Tools.HTTP (docs/tools.md).
type HTTPTool = config.HTTPTool

// MCPServer is one MCP server of Config.Tools.MCPServers (docs/tools.md).
type MCPServer = config.MCPServer

// AgentMCP gives an agent tools of an MCP server (Agent.MCP).
type AgentMCP = config.AgentMCP

// Secret is a configuration value that is never printed or logged, such
// as Config.Providers.Anthropic.APIKey.
type Secret = config.Secret

// LoadConfig reads a YAML configuration file as `agentd serve -config`
// does, with the AGENTD_* environment overrides and ${env:}/${file:}
// references; path "" means defaults and the environment only. Errors name
// the field.
func LoadConfig(path string) (*Config, error) { return config.Load(path, os.Environ()) }

// Option configures [New].
type Option func(*options)

type options struct {
	tools    []tool.Tool
	logger   *slog.Logger
	registry *prometheus.Registry
	storeURL string
	version  string
}

// WithTools adds Go tools; agents call those whose names their Tools list.
func WithTools(tools ...Tool) Option {
	return func(o *options) {
		for _, t := range tools {
			o.tools = append(o.tools, t.impl)
		}
	}
}

// WithLogger sends agentd's logs to logger (secrets scrubbed) instead of
// JSON on stderr at Config.Log's level.
func WithLogger(logger *slog.Logger) Option { return func(o *options) { o.logger = logger } }

// WithRegistry registers agentd's Prometheus metrics on reg instead of a
// registry of its own; /metrics serves reg. One Server per registry: New
// refuses a registry that holds agentd's metrics already.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// WithStore sets the store: "sqlite:///path/agentd.db" (embedded, the
// default is sqlite://agentd.db in the working directory) or
// "postgres://…" (the cluster tier). It overrides Config.Store.URL.
func WithStore(url string) Option { return func(o *options) { o.storeURL = url } }

// WithVersion names the program's version in logs, metrics and /healthz.
// Defaults to "embedded".
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// Server is an embedded agentd: built by [New], serving from [Server.Run]
// until its context ends or [Server.Shutdown].
type Server struct {
	app  *app.App
	once sync.Once
	done chan struct{}
	err  error
}

// ErrNotServing is returned by [Server.Chat] before Run serves or once it
// drains.
var ErrNotServing = app.ErrNotServing

// New validates cfg (defaults applied to a copy; cfg is not changed),
// listens on Config.Server.Addr, opens and migrates the store and builds
// every component; it starts nothing ([Server.Run] does). Errors name the
// configuration field.
func New(ctx context.Context, cfg *Config, opts ...Option) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("agentd: nil config")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkToolNames(o.tools); err != nil {
		return nil, err
	}
	if err := checkRegistry(o.registry); err != nil {
		return nil, err
	}
	c := copyConfig(cfg)
	if o.storeURL != "" {
		c.Store.URL = o.storeURL
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("agentd: config is invalid:\n%w", err)
	}
	if o.version == "" {
		o.version = "embedded"
	}
	a, err := app.New(ctx, c, app.Options{Version: o.version, Logger: o.logger, Registry: o.registry, Tools: o.tools})
	if err != nil {
		return nil, fmt.Errorf("agentd: %w", err)
	}
	return &Server{app: a, done: make(chan struct{})}, nil
}

// checkToolNames refuses Go tools whose names clash with each other or
// with a built-in tool.
func checkToolNames(tools []tool.Tool) error {
	seen := map[string]bool{}
	for _, b := range tool.Builtins(nil) {
		seen[b.Spec().Name] = true
	}
	builtin := maps.Clone(seen)
	for _, t := range tools {
		name := t.Spec().Name
		switch {
		case builtin[name]:
			return fmt.Errorf("agentd: Go tool %q: a built-in tool has that name", name)
		case seen[name]:
			return fmt.Errorf("agentd: Go tool %q is given twice", name)
		}
		seen[name] = true
	}
	return nil
}

// checkRegistry refuses a registry that holds agentd's metrics already
// (of another Server: they stay registered after it stopped), which
// registering again would panic on.
func checkRegistry(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	families, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("agentd: WithRegistry: %w", err)
	}
	for _, f := range families {
		if f.GetName() == "agentd_build_info" {
			return errors.New("agentd: WithRegistry: the registry holds agentd's metrics already (one Server per registry)")
		}
	}
	return nil
}

// copyConfig copies what ApplyDefaults changes: the caller's lists stay
// as they were.
func copyConfig(cfg *Config) *Config {
	c := *cfg
	c.Agents = slices.Clone(cfg.Agents)
	c.Tools.HTTP = slices.Clone(cfg.Tools.HTTP)
	c.Tools.MCPServers = slices.Clone(cfg.Tools.MCPServers)
	return &c
}

// Addr is the address the HTTP API listens on, e.g. "127.0.0.1:8080".
func (s *Server) Addr() string { return s.app.Addr().String() }

// Run serves until ctx ends or Shutdown is called, then drains in-flight
// requests and runs (Config.Server.DrainDelay and DrainTimeout) and closes
// everything New opened. It returns nil after ctx ended or Shutdown, else
// the error of the component that stopped first. Call it once.
func (s *Server) Run(ctx context.Context) error {
	ran := false
	s.once.Do(func() {
		ran = true
		s.err = s.app.Run(ctx)
		close(s.done)
	})
	if !ran {
		return errors.New("agentd: Run called twice")
	}
	return s.err
}

// Ready is closed once Run serves.
func (s *Server) Ready() <-chan struct{} { return s.app.Ready() }

// Shutdown starts the drain Run performs on a signal and waits until Run
// has returned, or until ctx ends (its error is returned then; the drain
// goes on).
func (s *Server) Shutdown(ctx context.Context) error {
	s.app.Drain()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ChatRequest is one message to an agent.
type ChatRequest struct {
	// Agent is the agent's name. Required.
	Agent string
	// Message is the user's message. Required.
	Message string
	// ConversationID continues a conversation; "" starts a new one.
	ConversationID string
	// Tenant owns the conversation and the run. Defaults to "default",
	// the tenant of auth.mode none.
	Tenant string
	// MaxCostUSD caps the turn's cost (it can lower the agent's cap, not
	// raise it). Defaults to 0: the agent's cap only.
	MaxCostUSD float64
	// ConcurrencyPolicy says what happens when the conversation is busy
	// with another turn: "reject", "enqueue", "interrupt" or "rollback"
	// (docs/api.md#concurrency-policies). Defaults to "": the agent's
	// concurrency_policy.
	ConcurrencyPolicy string
	// OnEvent, when set, sees every event of the turn as it happens (the
	// model's text as it is generated, tool calls and results), on the
	// run's goroutine: it should not block.
	OnEvent func(Event)
}

// Event is one event of a run, as the streaming API sends it
// (docs/api.md#streaming-stream-true): Type is start, text_delta,
// tool_use, tool_result, usage, done or error (more may come), Data its
// JSON payload, Seq its number in the run (1, 2, 3, ...).
type Event struct {
	Seq  int64
	Type string
	Data json.RawMessage
}

// Answer is the result of a chat turn: the fields of POST /v1/chat's
// answer.
type Answer struct {
	RunID          string
	ConversationID string
	Agent          string
	// Text is the final answer's text.
	Text string
	// StopReason is Claude's of the last model call (end_turn, ...).
	StopReason string
	// Steps is the number of model calls.
	Steps        int
	InputTokens  int64
	OutputTokens int64
	// CostUSD is the turn's cost at agentd's prices, as an exact decimal
	// ("0.001683").
	CostUSD string
}

// Chat runs one turn in-process: the agent loop with its tools, the
// conversation in the store, budgets and the run's events and usage, as
// POST /v1/chat does but without the HTTP layer (no authentication, rate
// limit or admission). Call it while Run serves; it waits for Ready.
func (s *Server) Chat(ctx context.Context, req ChatRequest) (*Answer, error) {
	select {
	case <-s.app.Ready():
	case <-s.done:
		return nil, ErrNotServing
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var onEvent func(store.Event)
	if req.OnEvent != nil {
		onEvent = func(e store.Event) { req.OnEvent(Event{Seq: e.Seq, Type: e.Type, Data: e.Data}) }
	}
	pol, err := agentrun.ParsePolicy(req.ConcurrencyPolicy)
	if err != nil {
		return nil, fmt.Errorf("agentd: chat with %s: %w", req.Agent, err)
	}
	a, err := s.app.Chat(ctx, agentrun.ChatParams{Tenant: req.Tenant, Agent: req.Agent,
		ConversationID: req.ConversationID, Message: req.Message, MaxCostUSD: req.MaxCostUSD,
		ConcurrencyPolicy: pol}, onEvent)
	if err != nil {
		return nil, fmt.Errorf("agentd: chat with %s: %w", req.Agent, err)
	}
	return &Answer{RunID: a.RunID, ConversationID: a.ConversationID, Agent: a.Agent, Text: a.Text,
		StopReason: a.StopReason, Steps: a.Steps, InputTokens: a.Usage.InputTokens,
		OutputTokens: a.Usage.OutputTokens, CostUSD: a.CostUSD.String()}, nil
}

// Chat runs one turn of cfg's agent in a server of its own, listening on
// a loopback port chosen by the system (Config.Server.Addr is ignored), and
// stops it again. For many turns, keep a [Server] running instead.
func Chat(ctx context.Context, cfg *Config, req ChatRequest, opts ...Option) (_ *Answer, err error) {
	if cfg == nil {
		return nil, errors.New("agentd: nil config")
	}
	c := *cfg
	c.Server.Addr = "127.0.0.1:0"
	// Nothing routes to this server: no deregistration to wait for (0
	// would mean the default, 5 s).
	c.Server.DrainDelay = time.Millisecond
	s, err := New(ctx, &c, opts...)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(runCtx) }()
	defer func() {
		stop()
		if rerr := <-errc; rerr != nil && err == nil {
			err = rerr
		}
	}()
	return s.Chat(ctx, req)
}
