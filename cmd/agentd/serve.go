package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/observe"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/tool"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer, environ []string) error {
	started := time.Now()
	cfg, _, err := loadConfig("serve", args, stderr, environ)
	if err != nil {
		return err
	}
	log, err := observe.NewLogger(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	log.Info("starting agentd", "version", buildVersion(), "addr", cfg.Server.Addr, "store", cfg.Store.URL, "agents", len(cfg.Agents))
	log.Info("config loaded (secrets masked)", "config", cfg.Redacted())

	reg, err := tool.NewRegistry(tool.Builtins(nil)...)
	if err != nil {
		return err
	}
	agents, infos, err := buildAgents(cfg, reg)
	if err != nil {
		return err
	}

	// Start-up order: listener (a taken port fails first) → store (and
	// schema) → model upstream → service → HTTP serving → ready.
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("server.addr: listen: %w", err)
	}
	defer ln.Close() // no-op once Serve owns it
	st, err := openStore(ctx, cfg.Store.URL)
	if err != nil {
		return err
	}
	defer st.Close() // last: everything above has stopped using it
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate store: %w", err)
	}

	// ctx ends on SIGINT/SIGTERM; bg ends when serve returns, stopping
	// the background actors (sweeper, health checks, simulator).
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		wg.Wait()
	}()
	goActor := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(bg); err != nil {
				log.Error("background actor stopped", "actor", name, "err", err)
			}
		}()
	}

	model, err := buildModel(bg, cfg, log, goActor)
	if err != nil {
		return err
	}

	metrics := observe.NewMetrics(buildVersion())
	loop := &agentrun.Loop{Model: model, Store: st, Log: log, Metrics: metrics}
	svc := &agentrun.Service{Loop: loop, Store: st, Agents: agents, ConversationTTL: cfg.Store.ConversationTTL, Log: log, Metrics: metrics}
	health := &server.Health{Store: st, Version: buildVersion(), Log: log}
	health.MarkStarted(started)
	health.Check(ctx)
	goActor("health", health.Run)
	sweeper := &agentrun.Sweeper{Store: st, Interval: cfg.Store.SweepInterval, Log: log, Metrics: metrics}
	goActor("sweeper", sweeper.Run)

	api := server.New(server.Config{
		Chat: svc, Conversations: st, Agents: infos, Health: health, Metrics: metrics, Log: log,
		MaxBodyBytes: cfg.Server.MaxBodyBytes, SSEPingInterval: cfg.Server.SSEPingInterval,
	})
	srv := &http.Server{
		Addr:              cfg.Server.Addr,
		Handler:           api,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Handlers see the signal context's values but not its end: a
		// shutdown drains requests instead of cancelling them.
		BaseContext: func(net.Listener) context.Context { return bg },
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	health.SetReady(true)
	log.Info("agentd ready", "addr", ln.Addr().String(), "startup_ms", time.Since(started).Milliseconds())

	select {
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	// Shutdown order: readiness false (load balancers stop sending) →
	// stop accepting and let in-flight requests and streams finish within
	// drain_timeout → stop background actors → close the store (deferred).
	log.Info("shutting down", "drain_timeout", cfg.Server.DrainTimeout)
	health.SetReady(false)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain timed out; closing remaining connections", "err", err)
		_ = srv.Close()
	}
	log.Info("agentd stopped")
	return nil
}

// buildModel returns the Claude client: against the real API when a key is
// configured, else against an in-process simulator (never silently).
func buildModel(bg context.Context, cfg *config.Config, log *slog.Logger, goActor func(string, func(context.Context) error)) (llm.Model, error) {
	a := cfg.Providers.Anthropic
	simulate := a.Simulate == config.SimulateAlways || (a.Simulate == config.SimulateAuto && a.APIKey.Value() == "")
	if !simulate {
		return anthropic.New(anthropic.Config{BaseURL: a.BaseURL, APIKey: a.APIKey.Value(), RequestTimeout: a.RequestTimeout}), nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	const simKey = "sim-key"
	simCfg := sim.Config{APIKey: simKey, Latency: a.SimLatency}
	goActor("simulator", func(ctx context.Context) error {
		return sim.Serve(ctx, ln, simCfg, log.With("component", "sim"))
	})
	base := "http://" + ln.Addr().String()
	log.Warn("SIMULATED MODEL: no Anthropic API key is configured, answers come from agentd's built-in Claude API simulator, not from Claude; set ANTHROPIC_API_KEY (providers.anthropic.api_key) for real answers",
		"simulator", base, "simulate", a.Simulate)
	return anthropic.New(anthropic.Config{BaseURL: base, APIKey: simKey, RequestTimeout: a.RequestTimeout}), nil
}

// buildAgents resolves each agent's tools and returns the loop's agents and
// their public descriptions.
func buildAgents(cfg *config.Config, reg *tool.Registry) (map[string]*agentrun.ChatAgent, []server.AgentInfo, error) {
	if err := checkTools(cfg); err != nil {
		return nil, nil, err
	}
	agents := make(map[string]*agentrun.ChatAgent, len(cfg.Agents))
	infos := make([]server.AgentInfo, 0, len(cfg.Agents))
	for _, a := range cfg.Agents {
		ca := &agentrun.ChatAgent{
			Agent: agentrun.Agent{
				Name: a.Name, Model: a.Model, System: a.System,
				MaxSteps: a.MaxSteps, MaxTokens: a.MaxTokens, Timeout: a.Timeout,
			},
			MaxMessages: a.MaxMessages,
		}
		info := server.AgentInfo{Name: a.Name, Model: a.Model, Tools: []server.ToolInfo{}}
		for _, name := range a.Tools {
			t, _ := reg.Get(name) // checked by checkTools
			ca.Tools = append(ca.Tools, t)
			spec := t.Spec()
			info.Tools = append(info.Tools, server.ToolInfo{Name: spec.Name, Description: spec.Description, Source: "builtin"})
		}
		agents[a.Name] = ca
		infos = append(infos, info)
	}
	return agents, infos, nil
}

// checkTools fails on a tool name no registry knows, naming the field.
func checkTools(cfg *config.Config) error {
	reg, err := tool.NewRegistry(tool.Builtins(nil)...)
	if err != nil {
		return err
	}
	var errs []error
	for i, a := range cfg.Agents {
		for j, name := range a.Tools {
			if _, err := reg.Get(name); err != nil {
				errs = append(errs, fmt.Errorf("agents[%d].tools[%d]: unknown tool %q (built-in tools: %v)", i, j, name, reg.Names()))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config is invalid:\n%w", errors.Join(errs...))
	}
	return nil
}
