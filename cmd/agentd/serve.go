package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/queue"
	storeredis "github.com/agentd/agentd/internal/redis"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/toolset"
	"github.com/agentd/agentd/internal/usagelog"
)

// Roles of `agentd serve --role`.
const (
	roleAll    = "all"
	roleAPI    = "api"
	roleWorker = "worker"
)

// usageCloseTimeout bounds the flush of buffered usage rows at shutdown
// (a full buffer, 10,000 rows, takes well under a second on SQLite).
const usageCloseTimeout = 15 * time.Second

func cmdServe(ctx context.Context, args []string, stderr io.Writer, environ []string) error {
	started := time.Now()
	role := getenvDefault(environ, "AGENTD_ROLE", roleAll)
	cfg, err := loadConfigFlags("serve", args, stderr, environ, func(fs *flag.FlagSet) {
		fs.StringVar(&role, "role", role, "all (API and worker), api (never executes queued runs) or worker (health and metrics HTTP only)")
	})
	if err != nil {
		return err
	}
	if role != roleAll && role != roleAPI && role != roleWorker {
		return fmt.Errorf("%w: -role must be all, api or worker, not %q", errUsage, role)
	}
	serveAPI, runWorker := role != roleWorker, role != roleAPI
	// Every configured secret (and anything shaped like a key or bearer
	// token) is scrubbed from every log line and span error.
	redactor := observe.NewRedactor(cfg.AllSecretValues()...)
	log, err := observe.NewLogger(stderr, cfg.Log.Format, cfg.Log.Level, observe.WithRedaction(redactor))
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	shutdownTracing, err := observe.SetupTracing(ctx, observe.TracingConfig{
		Endpoint: cfg.Observability.OTLPEndpoint, ServiceName: cfg.Observability.Service(),
		Version: buildVersion(), SampleRatio: cfg.Observability.Ratio(), Redactor: redactor,
		Log: log.With("component", "tracing"),
	})
	if err != nil {
		return fmt.Errorf("observability.otlp_endpoint: %w", err)
	}
	defer func() { // last: flushes the spans of the drain too
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}()
	if ep := cfg.Observability.OTLPEndpoint; ep != "" {
		log.Info("tracing on", "otlp_endpoint", redactURL(ep), "sample_ratio", cfg.Observability.Ratio())
	}
	log.Info("starting agentd", "version", buildVersion(), "role", role, "addr", cfg.Server.Addr,
		"store", redactURL(cfg.Store.URL), "agents", len(cfg.Agents))
	log.Info("config loaded (secrets masked)", "config", cfg.Redacted())

	// Tool config errors (unknown tool, HTTP tool that does not build)
	// fail before anything starts; MCP servers start once the store (the
	// audit log) is up.
	if err := checkTools(cfg); err != nil {
		return err
	}

	// Start-up order: listener (a taken port fails first) → store (and
	// schema) → model upstream → services → queue → HTTP serving → ready.
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("server.addr: listen: %w", err)
	}
	defer ln.Close() // no-op once Serve owns it
	be, err := openBackend(ctx, cfg.Store.URL, log)
	if err != nil {
		return err
	}
	st := be.Store
	defer st.Close() // last: everything above has stopped using it
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate store: %w", err)
	}
	authn, err := setupAuth(ctx, cfg, st, log)
	if err != nil {
		return err
	}

	// Redis is optional and never a single point of failure: Open makes
	// no network call, and while Redis is down agentd serves degraded.
	var rc *storeredis.Client
	if u := cfg.Redis.URL.Value(); u != "" {
		storeredis.RouteLibraryLogs(log.With("component", "redis"))
		rc, err = storeredis.Open(u, storeredis.Options{PoolSize: cfg.Redis.PoolSize,
			DialTimeout: cfg.Redis.DialTimeout, Timeout: cfg.Redis.Timeout, Log: log.With("component", "redis")})
		if err != nil {
			return fmt.Errorf("redis.url: %w", err)
		}
		defer rc.Close()
	}

	// ctx ends on SIGINT/SIGTERM; bg ends when serve returns, stopping
	// the background actors (sweeper, health checks, reclaimer, event
	// listener, simulator).
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

	metrics := observe.NewMetrics(buildVersion())
	tools, err := toolset.Start(ctx, cfg, toolset.Options{
		Log: log.With("component", "tools"), Metrics: tool.NewMetrics(metrics.Registry), Audit: st,
	})
	if err != nil {
		return err
	}
	defer tools.Stop() // before the store closes: stdio MCP servers are terminated
	agents, infos := buildAgents(cfg, tools)
	provider, err := buildModels(bg, cfg, agents, rc, metrics, log, goActor)
	if err != nil {
		return err
	}
	rateLimit := buildRateLimiter(cfg, rc, metrics, log) // nil (no limits) is safe to use
	// Abuse detection sees every request (server) and the spend of every
	// model call (the usage recorder); nil when it is off.
	detector := buildAbuse(cfg, rc, metrics, log)
	defer detector.Close() // waits for alert webhooks being sent
	// Usage rows (one per model call, of runs and gateway calls) are
	// buffered and written in batches: under load the store takes one
	// write per batch, not per call, and a slow or failing write is
	// retried instead of losing the row. Closed at shutdown once nothing
	// appends any more (see below); the deferred close is for early exits.
	usageLog := usagelog.New(st, usagelog.Options{
		Metrics: usagelog.NewMetrics(metrics.Registry), Log: log.With("component", "usage"),
	})
	closeUsage := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), usageCloseTimeout)
		defer cancel()
		if err := usageLog.Close(cctx); err != nil {
			log.Error("flush usage rows", "err", err)
		}
	}
	defer closeUsage() // before the store closes; a no-op after the first
	var usage agentrun.UsageRecorder = usageLog
	var abuseGuard server.AbuseGuard
	if detector != nil {
		usage = &abuse.Recorder{Next: usageLog, Detector: detector}
		abuseGuard = detector
		if rc != nil {
			goActor("abuse-sync", detector.Run) // shares throttles and lifts
		}
	}
	pricing := pricingTable(cfg, log)
	loop := &agentrun.Loop{Store: st, Log: log, Metrics: metrics, Pricing: pricing, Usage: usage, Tokens: rateLimit}
	// Budgets: counters in the store, shared by every instance. Always
	// on, since a request may cap its run (max_cost_usd); a call without
	// any budget never reaches the store. The sweeper only reclaims rows:
	// expired reservations stop counting at once.
	budgets := budget.New(cfg.Budgets, st, pricing, metrics, log.With("component", "budget"))
	loop.Budget = budgets
	goActor("budget-sweeper", func(ctx context.Context) error { return budgets.Run(ctx, cfg.Store.SweepInterval) })
	if cfg.AnyBudget() {
		log.Info("budgets on", "alert_fractions", cfg.Budgets.AlertFractions,
			"alert_webhook", cfg.Budgets.AlertWebhook.Value() != "", "reservation_ttl", cfg.Budgets.ReservationTTL)
	}
	svc := &agentrun.Service{Loop: loop, Store: st, Agents: agents, ConversationTTL: cfg.Store.ConversationTTL,
		Log: log, Metrics: metrics, Hub: be.Hub, IdempotencyTTL: cfg.Runs.IdempotencyTTL}
	if cfg.Redaction.Messages != config.MessageSecretsOff {
		svc.Secrets = agentrun.NewMessageGuard(cfg.Redaction.Messages == config.MessageSecretsScrub,
			observe.MinSecretLen, cfg.AllSecretValues()...)
		// The pool's keys too: from env, file or command sources, and
		// rotated in at run time.
		svc.Secrets.Dynamic = provider.KeyPool().Values
	}
	limits := make(map[string]int, len(cfg.Agents))
	for _, a := range cfg.Agents {
		limits[a.Name] = a.MaxConcurrentRuns
	}
	runs := &agentrun.Runs{Service: svc, Store: st, Owner: workerID(), LeaseTTL: cfg.Worker.LeaseTTL,
		IdempotencyTTL: cfg.Runs.IdempotencyTTL, AgentLimits: limits, Log: log}
	qcfg := queue.Config{Workers: cfg.Worker.Concurrency, FetchPollInterval: cfg.Worker.PollInterval, Log: log.With("component", "river")}
	if runWorker {
		qcfg.Executor = runs
		qcfg.Webhooks = &agentrun.Webhook{Store: st, Secret: cfg.Runs.WebhookSecret.Value(),
			Client: &http.Client{Timeout: cfg.Runs.WebhookTimeout}}
	}
	q, err := be.NewQueue(ctx, qcfg)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	runs.Queue, runs.Webhooks = q, q

	// Admission: chat and stream slots, and the memory guard in front of
	// everything new (chats, streams, submissions).
	am := admission.NewMetrics(metrics.Registry)
	burst := &admission.BurstLog{Log: log.With("component", "admission")}
	mem := &admission.MemoryGuard{HighWater: cfg.Admission.MemoryHighWater, LowWater: cfg.Admission.MemoryLowWater}
	goActor("memory-guard", func(ctx context.Context) error { return mem.Run(ctx, time.Second) })
	chats := &admission.Limiter{Name: "chat", Max: cfg.Admission.MaxChats, Queue: cfg.Admission.ChatQueue,
		MaxWait: cfg.Admission.QueueTimeout, Metrics: am, Log: burst, Gate: mem.Gate}
	// Streams do not queue: one over the limit is refused at once.
	streams := &admission.Limiter{Name: "stream", Max: cfg.Admission.MaxStreams, Metrics: am, Log: burst, Gate: mem.Gate}
	submits := &admission.Limiter{Name: "submit", Metrics: am, Log: burst, Gate: mem.Gate}
	// Per-tenant caps on chats and event streams, checked before the
	// instance's slots.
	tenantCaps := make(map[string]int, len(cfg.Admission.Tenants))
	for name, t := range cfg.Admission.Tenants {
		tenantCaps[name] = t.MaxInFlight
	}
	tenants := &admission.TenantLimiter{Default: cfg.Admission.Tenant.MaxInFlight, Overrides: tenantCaps, Metrics: am, Log: burst}

	agentNames := make([]string, 0, len(cfg.Agents))
	for _, a := range cfg.Agents {
		agentNames = append(agentNames, a.Name)
	}
	health := &server.Health{
		Store: st, Version: buildVersion(), Log: log, Breakers: provider.Breakers, Keys: provider.Keys, Memory: mem,
		Queue: st.QueueStats,
		OnQueueStats: func(qs store.QueueStats) {
			metrics.SetQueue(qs.Depth, agentNames, qs.OldestQueuedAt, qs.Running)
		},
		InFlight: func() map[string]int {
			return map[string]int{"chats": chats.InFlight(), "streams": streams.InFlight(), "runs": runs.Executing()}
		},
	}
	if rc != nil {
		health.Redis = rc // only when set: a nil *Client in the interface is not nil
	}
	health.MarkStarted(started)
	health.Check(ctx)
	goActor("health", health.Run)
	goActor("watchdog", health.RunWatchdog)
	sweeper := &agentrun.Sweeper{Store: st, Interval: cfg.Store.SweepInterval, Log: log, Metrics: metrics}
	goActor("sweeper", sweeper.Run)
	if serveAPI {
		for name, fn := range be.Actors {
			goActor(name, fn)
		}
	}
	if runWorker {
		goActor("reclaimer", func(ctx context.Context) error { return runs.Reclaim(ctx, cfg.Worker.ReclaimInterval) })
		if err := q.Start(bg); err != nil {
			return err
		}
	}

	var gw http.Handler
	var gwWait func() // waits for the gateway's accounting after answers
	if serveAPI && !cfg.Gateway.Disabled {
		g, err := buildGateway(cfg, provider, pricing, usage, rateLimit, budgets, metrics, log)
		if err != nil {
			return err
		}
		gw, gwWait = g, g.Wait
	}

	drainRequested := make(chan struct{})
	var drainOnce sync.Once
	drain := func() { drainOnce.Do(func() { close(drainRequested) }) }
	api := server.New(server.Config{
		Chat: svc, Runs: runs, Hub: be.Hub, HealthOnly: !serveAPI,
		Conversations: st, Agents: infos, Health: health, Metrics: metrics, Log: log,
		MaxBodyBytes: cfg.Server.MaxBodyBytes, SSEPingInterval: cfg.Server.SSEPingInterval,
		AdminToken: cfg.Server.AdminToken.Value(), Keys: provider.Keys, Drain: drain, Audit: st, Usage: st,
		Chats: chats, Streams: streams, Submits: submits, Tenants: tenants, Auth: authn, RateLimit: rateLimit, Gateway: gw,
		Abuse: abuseGuard,
	})
	srv := &http.Server{
		Addr:              cfg.Server.Addr,
		Handler:           api,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Handlers do not see the signal: a shutdown drains requests
		// instead of cancelling them.
		BaseContext: func(net.Listener) context.Context { return bg },
	}
	srv.RegisterOnShutdown(api.EndFollowers)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	health.SetReady(true)
	log.Info("agentd ready", "addr", ln.Addr().String(), "role", role, "startup_ms", time.Since(started).Milliseconds())

	select {
	case err := <-serveErr:
		// Still hand running runs back before leaving.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.DrainTimeout)
		defer cancel()
		if qerr := q.Stop(dctx); qerr != nil {
			log.Warn("queue stop", "err", qerr)
		}
		if gwWait != nil {
			gwWait()
		}
		closeUsage()
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
		log.Info("signal received: draining")
	case <-drainRequested:
		log.Info("drain requested through the admin API")
	}
	// Shutdown order:
	//  1. readiness goes false at once (load balancers stop sending);
	//  2. for drain_delay the instance keeps serving (deregistration takes
	//     that long), then
	//  3. in parallel: the HTTP server stops accepting and lets in-flight
	//     requests and streams finish, and the queue stops fetching and
	//     lets running runs finish, both within drain_timeout; runs still
	//     running then are suspended (checkpointed, lease released, job
	//     requeued) so another worker resumes them;
	//  4. chat handlers a drain timeout cut off get up to 5 s to end,
	//     and the gateway's accounting of answered calls (usage rows,
	//     budget settlements) finishes;
	//  5. the usage writer writes the rows it still buffers (nothing
	//     appends any more: runs and gateway calls are done);
	//  6. background actors stop; 7. the store closes (deferred); exit 0.
	health.SetDraining()
	log.Info("draining", "drain_delay", cfg.Server.DrainDelay, "drain_timeout", cfg.Server.DrainTimeout)
	select {
	case <-time.After(cfg.Server.DrainDelay):
	case <-serveErr:
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.DrainTimeout)
	defer cancel()
	var stopping sync.WaitGroup
	stopping.Add(2)
	go func() {
		defer stopping.Done()
		if err := srv.Shutdown(dctx); err != nil {
			log.Warn("HTTP drain timed out; closing remaining connections", "err", err)
			_ = srv.Close()
		}
	}()
	go func() {
		defer stopping.Done()
		if err := q.Stop(dctx); err != nil {
			log.Warn("queue stop", "err", err)
		}
	}()
	stopping.Wait()
	// After a drain timeout srv.Close does not wait for the handlers still
	// running; their chats may yet record usage. Give them a moment
	// before the usage writer closes.
	for deadline := time.Now().Add(5 * time.Second); chats.InFlight()+streams.InFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if gwWait != nil {
		gwWait()
	}
	closeUsage()
	log.Info("agentd stopped")
	return nil
}

// workerID names this process in run leases.
func workerID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// buildModels returns each agent's model: its resilience stack (cache,
// fallback chain, breaker, concurrency limit, retry, key pool) over the
// Claude client. The client talks to the real API when a key is configured,
// else to an in-process simulator (never silently).
func buildModels(bg context.Context, cfg *config.Config, agents map[string]*agentrun.ChatAgent, rc *storeredis.Client, metrics *observe.Metrics, log *slog.Logger, goActor func(string, func(context.Context) error)) (*resilience.Provider, error) {
	a := cfg.Providers.Anthropic
	pcfg := resilience.ProviderConfig{
		Name:  "anthropic",
		Keys:  resilience.KeysConfig{Grace: a.Keys.Grace, PollInterval: a.Keys.PollInterval, CommandTimeout: a.Keys.CommandTimeout},
		Retry: resilience.RetryConfig{MaxAttempts: a.Retry.MaxAttempts, BaseDelay: a.Retry.BaseDelay, MaxDelay: a.Retry.MaxDelay},
		Breaker: resilience.BreakerConfig{
			Disabled: a.Breaker.Disabled, ConsecutiveFailures: uint32(a.Breaker.ConsecutiveFailures),
			FailureRatio: a.Breaker.FailureRatio, MinRequests: uint32(a.Breaker.MinRequests), Window: a.Breaker.Window,
			OpenTimeout: a.Breaker.OpenTimeout, HalfOpenProbes: uint32(a.Breaker.HalfOpenProbes), CountRateLimits: a.Breaker.CountRateLimits,
		},
		Concurrency: resilience.ConcurrencyConfig{MaxInFlight: a.Concurrency.MaxInFlight, QueueSize: a.Concurrency.QueueSize},
	}
	for _, src := range a.Keys.Sources {
		pcfg.Keys.Sources = append(pcfg.Keys.Sources, resilience.KeySourceConfig{
			Value: src.Value.Value(), Env: src.Env, File: src.File, Command: src.Command, TTL: src.TTL,
		})
	}
	simulate := a.Simulate == config.SimulateAlways || (a.Simulate == config.SimulateAuto && a.APIKey.Value() == "" && len(a.Keys.Sources) == 0)
	var client llm.Model
	if simulate {
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
		client = anthropic.New(anthropic.Config{BaseURL: base, RequestTimeout: a.RequestTimeout, H2C: true})
		pcfg.Keys.Sources = []resilience.KeySourceConfig{{Value: simKey}}
	} else {
		client = anthropic.New(anthropic.Config{BaseURL: a.BaseURL, RequestTimeout: a.RequestTimeout, H2C: a.H2C})
		if k := a.APIKey.Value(); k != "" {
			pcfg.Keys.Sources = append([]resilience.KeySourceConfig{{Value: k}}, pcfg.Keys.Sources...)
		}
	}
	rm := resilience.NewMetrics(metrics.Registry)
	provider, err := resilience.NewProvider(bg, pcfg, client, rm, log.With("component", "keys"))
	if err != nil {
		return nil, fmt.Errorf("providers.anthropic: %w", err)
	}
	goActor("keypool", provider.Run)
	// One cache for all agents: memory, in front of Redis when configured
	// (shared by the cluster; one circuit around Redis).
	var cache resilience.Cache = resilience.NewMemoryCache(resilience.MemoryCacheConfig{MaxEntries: cfg.Cache.MaxEntries, MaxBytes: cfg.Cache.MaxBytes})
	if rc != nil {
		cache = resilience.NewLayeredCache(cache, resilience.NewRedisCache(rc, resilience.RedisCacheConfig{}, rm, log.With("component", "redis-cache")))
	}
	for i, ac := range cfg.Agents {
		m, err := resilience.Build(resilience.AgentConfig{
			Name: ac.Name, Model: ac.Model, FallbackModels: ac.FallbackModels,
			Cache: resilience.CacheConfig{
				Enabled: ac.Cache.Enabled, TTL: ac.Cache.TTL, StaleTTL: ac.Cache.StaleTTL,
				ServeStaleOnError: ac.Cache.ServeStaleOnError, CacheToolResults: ac.Cache.CacheToolResults,
			},
		}, provider, cache, rm, log)
		if err != nil {
			return nil, fmt.Errorf("agents[%d]: %w", i, err)
		}
		agents[ac.Name].Client = m
	}
	return provider, nil
}

// buildAgents returns the loop's agents, with their tools from the tool
// set, and their public descriptions.
func buildAgents(cfg *config.Config, tools *toolset.Set) (map[string]*agentrun.ChatAgent, []server.AgentInfo) {
	agents := make(map[string]*agentrun.ChatAgent, len(cfg.Agents))
	infos := make([]server.AgentInfo, 0, len(cfg.Agents))
	for _, a := range cfg.Agents {
		ca := &agentrun.ChatAgent{
			Agent: agentrun.Agent{
				Name: a.Name, Model: a.Model, System: a.System,
				MaxSteps: a.MaxSteps, MaxTokens: a.MaxTokens, Timeout: a.Timeout, MaxCostUSD: a.MaxCostUSD,
				Tools: tools.Tools(a.Name), ToolTimeout: tools.ToolTimeout(a.Name), FallbackModels: a.FallbackModels,
			},
			MaxMessages:            a.MaxMessages,
			EnqueueWhenUnavailable: a.OnUnavailable == config.OnUnavailableEnqueue,
		}
		info := server.AgentInfo{Name: a.Name, Model: a.Model, Tools: []server.ToolInfo{}}
		for _, ti := range tools.Infos(a.Name) {
			src := ti.Source
			if ti.Server != "" {
				src += ":" + ti.Server // "mcp:demo"
			}
			info.Tools = append(info.Tools, server.ToolInfo{Name: ti.Name, Description: ti.Description, Source: src})
		}
		agents[a.Name] = ca
		infos = append(infos, info)
	}
	return agents, infos
}

// checkTools fails on a tool name no built-in or HTTP tool has, or an HTTP
// tool or MCP server that does not build, naming the field.
func checkTools(cfg *config.Config) error { return toolset.Check(cfg) }
