// Package app builds and runs the agentd process: the backend chosen by the
// store URL, the model stacks, the agents, authentication, the HTTP server,
// the queue's workers and the background loops, started and stopped as one
// group. cmd/agentd parses flags and calls New and Run; tests and programs
// that embed agentd do the same.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/convcache"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/queue"
	storeredis "github.com/agentd/agentd/internal/redis"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/httptool"
	"github.com/agentd/agentd/internal/tool/mcp"
	"github.com/agentd/agentd/internal/tool/toolset"
	"github.com/agentd/agentd/internal/usagelog"
)

// Roles of a process (`agentd serve --role`).
const (
	// RoleAll serves the API and executes queued runs.
	RoleAll = "all"
	// RoleAPI serves the API and never executes queued runs.
	RoleAPI = "api"
	// RoleWorker executes queued runs; its HTTP serves health and metrics only.
	RoleWorker = "worker"
)

// usageCloseTimeout bounds the flush of buffered usage rows at shutdown
// (a full buffer, 10,000 rows, takes well under a second on SQLite).
const usageCloseTimeout = 15 * time.Second

// Options are the process's settings that are not in the config file.
type Options struct {
	// Role is RoleAll, RoleAPI or RoleWorker. Defaults to RoleAll.
	Role string
	// Version is reported in logs, metrics, traces and /healthz. Defaults
	// to "dev".
	Version string
	// LogOutput receives the logs. Defaults to os.Stderr.
	LogOutput io.Writer
	// Started is when the process started (startup_ms in the logs).
	// Defaults to the time New is called.
	Started time.Time
	// Logger, when set, receives the logs instead of LogOutput (in its
	// own format and level); secrets are scrubbed from it as from ours.
	Logger *slog.Logger
	// Registry, when set, holds agentd's metrics instead of a registry
	// of its own (served at /metrics either way).
	Registry *prometheus.Registry
	// Tools are Go tools added to the built-in ones: agents[].tools name
	// them. Defaults to none.
	Tools []tool.Tool
}

// App is one agentd process, built by New and run by Run.
type App struct {
	cfg                 *config.Config
	opts                Options
	log                 *slog.Logger
	serveAPI, runWorker bool

	// base is New's context without its cancellation: the timeouts of
	// the shutdown run on it. bg is the handlers' and the queue's context,
	// cancelled once everything has stopped.
	base, bg context.Context
	stopBG   context.CancelFunc
	closers  []func() // run in reverse order by release
	loops    []loop   // background loops, in start order

	metrics    *observe.Metrics
	breakers   *breaker.Set
	convCache  *convcache.Cache
	redis      *storeredis.Client
	ln         net.Listener
	srv        *http.Server
	health     *server.Health
	queue      queue.Queue
	chats      *admission.Limiter
	streams    *admission.Limiter
	gwWait     func() // waits for the gateway's accounting after answers; nil without a gateway
	closeUsage func()

	drainRequested chan struct{}
	drainOnce      sync.Once
	svc            *agentrun.Service // in-process chat (embed.go)
	runs           *agentrun.Runs    // in-process chat under a concurrency policy (embed.go)
	managedModels  *managedModels    // models of API-created agents (managed_agents.go)
	ready          chan struct{}     // closed once serving
}

type loop struct {
	name string
	fn   func(context.Context) error
}

// addLoop adds a background loop to the group Run starts.
func (a *App) addLoop(name string, fn func(context.Context) error) {
	a.loops = append(a.loops, loop{name, fn})
}

// onClose adds fn to what release undoes, last added first.
func (a *App) onClose(fn func()) { a.closers = append(a.closers, fn) }

// release stops the background context and closes what New opened.
func (a *App) release() {
	a.stopBG()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// New builds the process of cfg: it listens on server.addr, opens and
// migrates the store, and builds every component, but starts nothing; Run
// does. On an error everything New opened is closed again.
//
// Start-up order: listener (a taken port fails first) → store (and
// schema) → model upstream → services → queue; Run then starts the
// background loops, the queue's workers and HTTP serving, then reports
// ready.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *App, err error) {
	if opts.Role == "" {
		opts.Role = RoleAll
	}
	if opts.Role != RoleAll && opts.Role != RoleAPI && opts.Role != RoleWorker {
		return nil, fmt.Errorf("role must be all, api or worker, not %q", opts.Role)
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	a := &App{cfg: cfg, opts: opts, serveAPI: opts.Role != RoleWorker, runWorker: opts.Role != RoleAPI,
		base: context.WithoutCancel(ctx), drainRequested: make(chan struct{}), ready: make(chan struct{})}
	a.bg, a.stopBG = context.WithCancel(a.base)
	defer func() {
		if err != nil {
			a.release()
		}
	}()
	// Every configured secret (and anything shaped like a key or bearer
	// token) is scrubbed from every log line and span error.
	redactor := observe.NewRedactor(cfg.AllSecretValues()...)
	log, err := observe.NewLogger(opts.LogOutput, cfg.Log.Format, cfg.Log.Level, observe.WithRedaction(redactor))
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	if opts.Logger != nil {
		log = observe.NewLoggerFromHandler(opts.Logger.Handler(), observe.WithRedaction(redactor))
	}
	a.log = log
	shutdownTracing, err := observe.SetupTracing(ctx, observe.TracingConfig{
		Endpoint: cfg.Observability.OTLPEndpoint, ServiceName: cfg.Observability.Service(),
		Version: opts.Version, SampleRatio: cfg.Observability.Ratio(), Redactor: redactor,
		Log: log.With("component", "tracing"),
	})
	if err != nil {
		return nil, fmt.Errorf("observability.otlp_endpoint: %w", err)
	}
	a.onClose(func() { // last: flushes the spans of the drain too
		sctx, cancel := context.WithTimeout(a.base, 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	})
	if ep := cfg.Observability.OTLPEndpoint; ep != "" {
		log.Info("tracing on", "otlp_endpoint", config.RedactURL(ep), "sample_ratio", cfg.Observability.Ratio())
	}
	log.Info("starting agentd", "version", opts.Version, "role", opts.Role, "addr", cfg.Server.Addr,
		"store", config.RedactURL(cfg.Store.URL), "agents", len(cfg.Agents))
	log.Info("config loaded (secrets masked)", "config", cfg.Redacted())

	// Tool config errors (unknown tool, HTTP tool that does not build)
	// fail before anything starts; MCP servers start once the store (the
	// audit log) is up.
	builtins := append(tool.Builtins(nil), opts.Tools...)
	if err := toolset.CheckWith(cfg, builtins); err != nil {
		return nil, err
	}
	if a.ln, err = net.Listen("tcp", cfg.Server.Addr); err != nil {
		return nil, fmt.Errorf("server.addr: listen: %w", err)
	}
	a.onClose(func() { _ = a.ln.Close() }) // no-op once Serve owns it
	// One circuit breaker per external dependency (docs/resilience.md):
	// the store's, Redis's, each tool's, each MCP server's, each webhook
	// host's and each model's, in one registry (/healthz, metrics).
	bo := breaker.OptionsFromConfig(cfg.Breakers)
	bo.Log = log.With("component", "breaker")
	a.breakers = breaker.NewSet(bo)
	be, err := openBackend(ctx, cfg.Store.URL, log, a.breakers.Get(breaker.Store))
	if err != nil {
		return nil, err
	}
	st := be.Store
	a.onClose(func() { _ = st.Close() }) // last but tracing: everything else has stopped using it
	if err := st.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate store: %w", err)
	}
	authn, err := setupAuth(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	// Redis is optional and never a single point of failure: Open makes
	// no network call, and while Redis is down agentd serves degraded.
	if u := cfg.Redis.URL.Value(); u != "" {
		storeredis.RouteLibraryLogs(log.With("component", "redis"))
		a.redis, err = storeredis.Open(u, storeredis.Options{PoolSize: cfg.Redis.PoolSize,
			DialTimeout: cfg.Redis.DialTimeout, Timeout: cfg.Redis.Timeout, Log: log.With("component", "redis"),
			Breaker: a.breakers.Get(breaker.Redis)})
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		a.onClose(func() { _ = a.redis.Close() })
	}
	a.onClose(a.stopBG) // the background context ends before Redis and the store close

	metrics := observe.NewMetrics(opts.Version)
	if opts.Registry != nil {
		metrics = observe.NewMetricsOn(opts.Registry, opts.Version)
	}
	a.metrics = metrics
	metrics.Registry.MustRegister(a.breakers.Collector())
	toolMetrics := tool.NewMetrics(metrics.Registry) // configured tools' and MCP servers' by URL
	tools, err := toolset.Start(ctx, cfg, toolset.Options{
		Log: log.With("component", "tools"), Metrics: toolMetrics, Audit: st,
		SecretsChanged: redactor.SetExtra, // rotated tool secrets stay out of logs
		Builtins:       builtins,
		Breakers:       a.breakers,
	})
	if err != nil {
		return nil, err
	}
	a.onClose(tools.Stop) // before the store closes: stdio MCP servers are terminated
	// secrets_refresh: tool secrets from ${file:} are re-read.
	a.addLoop("tool-secrets", tools.RefreshSecrets)
	agents, infos := buildAgents(cfg, tools)
	managedAPI, err := buildManaged(ctx, cfg, st, tools, a.serveAPI)
	if err != nil {
		return nil, err
	}
	provider, err := a.buildModels(agents)
	if err != nil {
		return nil, err
	}
	rateLimit := buildRateLimiter(cfg, a.redis, metrics, log) // nil (no limits) is safe to use
	// Abuse detection sees every request (server) and the spend of every
	// model call (the usage recorder); nil when it is off.
	detector := buildAbuse(cfg, a.redis, metrics, log)
	a.onClose(detector.Close) // waits for alert webhooks being sent
	// Usage rows (one per model call, of runs and gateway calls) are
	// buffered and written in batches: under load the store takes one
	// write per batch, not per call, and a slow or failing write is
	// retried instead of losing the row. Closed in the drain once nothing
	// appends any more; the close at release is for early exits.
	usageLog := usagelog.New(st, usagelog.Options{
		Metrics: usagelog.NewMetrics(metrics.Registry), Log: log.With("component", "usage"),
	})
	a.closeUsage = func() {
		cctx, cancel := context.WithTimeout(a.base, usageCloseTimeout)
		defer cancel()
		if err := usageLog.Close(cctx); err != nil {
			log.Error("flush usage rows", "err", err)
		}
	}
	a.onClose(a.closeUsage) // before the store closes; a no-op after the first
	var usage agentrun.UsageRecorder = usageLog
	var abuseGuard server.AbuseGuard
	if detector != nil {
		usage = &abuse.Recorder{Next: usageLog, Detector: detector}
		abuseGuard = detector
		if a.redis != nil {
			a.addLoop("abuse-sync", detector.Run) // shares throttles and lifts
		}
	}
	pricing := pricingTable(cfg, log)
	runLoop := &agentrun.Loop{Store: st, Log: log, Metrics: metrics, Pricing: pricing, Usage: usage, Tokens: rateLimit}
	// Budgets: counters in the store, shared by every instance. Always
	// on, since a request may cap its run (max_cost_usd); a call without
	// any budget never reaches the store. The sweeper only reclaims rows:
	// expired reservations stop counting at once.
	budgets := budget.New(cfg.Budgets, st, pricing, metrics, log.With("component", "budget"))
	runLoop.Budget = budgets
	a.addLoop("budget-sweeper", func(ctx context.Context) error { return budgets.Run(ctx, cfg.Store.SweepInterval) })
	if cfg.AnyBudget() {
		log.Info("budgets on", "alert_fractions", cfg.Budgets.AlertFractions,
			"alert_webhook", cfg.Budgets.AlertWebhook.Value() != "", "reservation_ttl", cfg.Budgets.ReservationTTL)
	}
	// Chat and runs read conversations through this instance's cache
	// (sessions.cache_bytes; docs/architecture.md#conversation-cache).
	a.convCache = convcache.New(cfg.Sessions.CacheSize(), metrics.ConversationCache)
	convs := cachedStore{Store: st, cache: a.convCache}
	svc := &agentrun.Service{Loop: runLoop, Store: convs, Agents: agents, ConversationTTL: cfg.Store.ConversationTTL,
		Log: log, Metrics: metrics, Hub: be.Hub, IdempotencyTTL: cfg.Runs.IdempotencyTTL,
		Audit: st, Redact: func(in json.RawMessage) json.RawMessage { return tool.RedactInput(in, tools.Secrets()) },
		Definitions: st}
	a.svc = svc
	if cfg.Redaction.Messages != config.MessageSecretsOff {
		svc.Secrets = agentrun.NewMessageGuard(cfg.Redaction.Messages == config.MessageSecretsScrub,
			observe.MinSecretLen, cfg.AllSecretValues()...)
		// The pool's keys too: from env, file or command sources, and
		// rotated in at run time.
		svc.Secrets.Dynamic = func() []string {
			return slices.Concat(provider.KeyPool().Values(), tools.Secrets().Values()) // and rotated tool secrets
		}
	}
	limits := make(map[string]int, len(cfg.Agents))
	for _, ac := range cfg.Agents {
		limits[ac.Name] = ac.MaxConcurrentRuns
	}
	runs := &agentrun.Runs{Service: svc, Store: convs, Owner: workerID(), LeaseTTL: cfg.Worker.LeaseTTL,
		IdempotencyTTL: cfg.Runs.IdempotencyTTL, AgentLimits: limits, Log: log}
	qcfg := queue.Config{Workers: cfg.Worker.Concurrency, FetchPollInterval: cfg.Worker.PollInterval, Log: log.With("component", "river")}
	// The sessions' webhook endpoints, per tenant: one lookup for the
	// turns, the archive and the deliveries.
	hooks := sessionWebhooks(cfg.ManagedAgents)
	if a.runWorker {
		qcfg.Executor = runs
		hookClient := &http.Client{Timeout: cfg.Runs.WebhookTimeout,
			Transport: &breaker.Transport{Set: a.breakers, Prefix: breaker.PrefixWebhook}}
		// Sessions' webhooks ride on the run webhooks' jobs, retries and
		// breakers, in Managed Agents' shape.
		qcfg.Webhooks = &managed.WebhookDeliverer{
			Run:   &agentrun.Webhook{Store: st, Secret: cfg.Runs.WebhookSecret.Value(), Client: hookClient},
			Store: st, Webhooks: hooks, Client: hookClient}
	}
	if a.queue, err = be.NewQueue(ctx, qcfg); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	runs.Queue, runs.Webhooks = a.queue, a.queue
	a.runs = runs
	// Sessions' turns are runs, with the session's budget and webhook.
	managedAPI.Runs = &managed.Turns{Runner: runs, Store: st, Webhooks: hooks, Wake: managedAPI.Wake}
	managedAPI.RunEvents, managedAPI.Hub, managedAPI.Guard = st, be.Hub, svc.Secrets
	managedAPI.Webhooks, managedAPI.WebhookEndpoints = a.queue, hooks
	// Agents created through the API run as runs of their stored version.
	// Their MCP servers by URL: one pooled client per URL, under the HTTP
	// tools' SSRF guard, with the operator's credentials (managed.mcp.servers;
	// secrets as tools resolve them; per URL and tenant where an entry
	// names tenants), a breaker and metrics per host.
	mm := cfg.ManagedAgents.MCP
	creds := make([]mcp.Credential, 0, len(mm.Servers))
	for _, s := range mm.Servers {
		h := make(map[string]string, len(s.Headers))
		for k, v := range s.Headers {
			h[k] = v.Value()
		}
		creds = append(creds, mcp.Credential{URL: s.URL, Headers: h, Tenants: s.Tenants})
	}
	mcpPool, err := mcp.NewPool(mcp.PoolConfig{
		Policy: httptool.Policy{AllowPrivate: mm.AllowPrivate, AllowHosts: mm.AllowHosts,
			Hint: "this server refuses MCP servers there unless managed.mcp.allow_private or managed.mcp.allow_hosts allows it"},
		ConnectTimeout: mm.ConnectTimeout, MaxServers: mm.MaxServers, Log: log.With("component", "mcp-pool"),
		Credentials: creds, Secrets: tools.Secrets(), Breakers: a.breakers, Metrics: toolMetrics,
	})
	if err != nil {
		return nil, fmt.Errorf("managed.mcp.servers%w", err) // "[i].url: ..."
	}
	a.onClose(mcpPool.Close)
	managedAPI.Agents = managedResolver(cfg, st, tools, a.managedModels, mcpPool, log)
	svc.Resolver = managedAPI.Agents

	// Admission: chat and stream slots, and the memory guard in front of
	// everything new (chats, streams, submissions).
	am := admission.NewMetrics(metrics.Registry)
	burst := &admission.BurstLog{Log: log.With("component", "admission")}
	mem := &admission.MemoryGuard{HighWater: cfg.Admission.MemoryHighWater, LowWater: cfg.Admission.MemoryLowWater}
	a.addLoop("memory-guard", func(ctx context.Context) error { return mem.Run(ctx, time.Second) })
	a.chats = &admission.Limiter{Name: "chat", Max: cfg.Admission.MaxChats, Queue: cfg.Admission.ChatQueue,
		MaxWait: cfg.Admission.QueueTimeout, Metrics: am, Log: burst, Gate: mem.Gate}
	// Streams do not queue: one over the limit is refused at once.
	a.streams = &admission.Limiter{Name: "stream", Max: cfg.Admission.MaxStreams, Metrics: am, Log: burst, Gate: mem.Gate}
	submits := &admission.Limiter{Name: "submit", Metrics: am, Log: burst, Gate: mem.Gate}
	// Per-tenant caps on chats and event streams, checked before the
	// instance's slots.
	tenantCaps := make(map[string]int, len(cfg.Admission.Tenants))
	for name, t := range cfg.Admission.Tenants {
		tenantCaps[name] = t.MaxInFlight
	}
	tenants := &admission.TenantLimiter{Default: cfg.Admission.Tenant.MaxInFlight, Overrides: tenantCaps, Metrics: am, Log: burst}

	agentNames := make([]string, 0, len(cfg.Agents))
	for _, ac := range cfg.Agents {
		agentNames = append(agentNames, ac.Name)
	}
	a.health = &server.Health{
		Store: st, Version: opts.Version, Log: log, Breakers: a.breakers.Statuses, Keys: provider.Keys, Memory: mem,
		Queue: st.QueueStats,
		OnQueueStats: func(qs store.QueueStats) {
			metrics.SetQueue(qs.Depth, agentNames, qs.OldestQueuedAt, qs.Running)
			metrics.SetApprovalsPending(qs.PendingApprovals)
		},
		InFlight: func() map[string]int {
			return map[string]int{"chats": a.chats.InFlight(), "streams": a.streams.InFlight(), "runs": runs.Executing()}
		},
	}
	if a.redis != nil {
		a.health.Redis = a.redis // only when set: a nil *Client in the interface is not nil
	}
	a.health.MarkStarted(opts.Started)
	a.health.Check(ctx)
	a.addLoop("health", a.health.Run)
	a.addLoop("watchdog", a.health.RunWatchdog)
	sweeper := &agentrun.Sweeper{Store: st, Interval: cfg.Store.SweepInterval, Log: log, Metrics: metrics}
	a.addLoop("sweeper", sweeper.Run)
	if rc := cfg.Retention; !rc.Disabled {
		retention := &agentrun.RetentionSweeper{
			Store: st, RunEvents: rc.RunEvents, Checkpoints: rc.Checkpoints, Runs: rc.Runs, Usage: rc.Usage,
			Audit: rc.Audit, AgentDefinitions: rc.AgentDefinitions, BatchSize: rc.BatchSize, Interval: rc.Interval,
			Log: log.With("component", "retention"), Metrics: metrics,
		}
		a.addLoop("retention", retention.Run)
	}
	if a.serveAPI {
		for name, fn := range be.Actors {
			a.addLoop(name, fn)
		}
	}
	if a.runWorker {
		a.addLoop("reclaimer", func(ctx context.Context) error { return runs.Reclaim(ctx, cfg.Worker.ReclaimInterval) })
	}

	// Hosted agent programs (agents[].runtime) call models through the
	// gateway too, on a loopback port of their own with run-scoped keys,
	// on every role that executes runs, gateway.disabled or not.
	hosted := slices.ContainsFunc(cfg.Agents, func(ac config.Agent) bool { return ac.Runtime != nil })
	var gw http.Handler
	if hosted || (a.serveAPI && !cfg.Gateway.Disabled) {
		g, err := buildGateway(cfg, provider, pricing, usage, rateLimit, budgets, metrics, log)
		if err != nil {
			return nil, err
		}
		a.gwWait = g.Wait
		if a.serveAPI && !cfg.Gateway.Disabled {
			gw = g
		}
		if hosted {
			runLoop.Programs = &agentrun.ProgramHost{Gateway: g, Scrub: redactor.Scrub, Log: log, Sessions: st}
			a.onClose(func() { _ = runLoop.Programs.Close() })
		}
	}
	api := server.New(server.Config{
		Chat: svc, Runs: runs, Hub: be.Hub, HealthOnly: !a.serveAPI,
		Conversations: convs, Agents: infos, Health: a.health, Metrics: metrics, Log: log,
		MaxBodyBytes: cfg.Server.MaxBodyBytes, SSEPingInterval: cfg.Server.SSEPingInterval,
		AdminToken: cfg.Server.AdminToken.Value(), Keys: provider.Keys, Drain: a.requestDrain, Audit: st, Usage: st, Feedback: st,
		Chats: a.chats, Streams: a.streams, Submits: submits, OverflowToQueue: cfg.Admission.Overflow == config.OverflowQueue, Tenants: tenants, Auth: authn, RateLimit: rateLimit, Gateway: gw,
		Abuse: abuseGuard, Managed: managedAPI,
	})
	if a.serveAPI {
		if err := a.mountConsole(api, cfg, st, runs, authn, redactor, managedAPI, log); err != nil {
			return nil, err
		}
	}
	a.srv = &http.Server{
		Addr:              cfg.Server.Addr,
		Handler:           api,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Handlers do not see the signal: a shutdown drains requests
		// instead of cancelling them.
		BaseContext: func(net.Listener) context.Context { return a.bg },
		Protocols:   serverProtocols(),
	}
	a.srv.RegisterOnShutdown(api.EndFollowers)
	return a, nil
}

// requestDrain starts a drain (the admin API's POST /admin/drain).
func (a *App) requestDrain() { a.drainOnce.Do(func() { close(a.drainRequested) }) }

// Run runs the process until ctx ends (SIGINT/SIGTERM), a drain is
// requested, or a component stops, then drains and stops it all, and
// closes what New opened. It returns nil after a signal or a drain
// request, else the error of the component that stopped first. Call it
// once.
//
// The components form one group (see group): the background loops in the
// order New added them, then the server (HTTP and the queue's workers)
// last. The first to return stops the rest in reverse order: the server
// drains first, while the loops (the simulator, the key pool, the event
// listener) still serve its last requests and runs; then the loops stop,
// last started first.
func (a *App) Run(ctx context.Context) error {
	defer a.release()
	g := &group{log: a.log}
	for _, l := range a.loops {
		g.addLoop(a.bg, l.name, l.fn)
	}
	stop := make(chan struct{})
	g.add("server", func() error { return a.serve(ctx, stop) }, func(error) { close(stop) })
	return g.run()
}

// serve starts the queue's workers and HTTP serving, reports ready, and on
// a signal, a drain request or stop drains both.
func (a *App) serve(ctx context.Context, stop <-chan struct{}) error {
	log, cfg := a.log, a.cfg
	if a.runWorker {
		if err := a.queue.Start(a.bg); err != nil {
			return err
		}
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.srv.Serve(a.ln) }()
	a.health.SetReady(true)
	close(a.ready)
	log.Info("agentd ready", "addr", a.ln.Addr().String(), "role", a.opts.Role, "startup_ms", time.Since(a.opts.Started).Milliseconds())

	select {
	case err := <-serveErr:
		// Still hand running runs back before leaving.
		dctx, cancel := context.WithTimeout(a.base, cfg.Server.DrainTimeout)
		defer cancel()
		if qerr := a.queue.Stop(dctx); qerr != nil {
			log.Warn("queue stop", "err", qerr)
		}
		if a.gwWait != nil {
			a.gwWait()
		}
		a.closeUsage()
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
		log.Info("signal received: draining")
	case <-a.drainRequested:
		log.Info("drain requested through the admin API")
	case <-stop:
		log.Error("a component stopped: draining")
	}
	a.drain(serveErr)
	log.Info("agentd stopped")
	return nil
}

// drain stops serving. Shutdown order:
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
//  6. (Run) the background loops stop, last started first; 7. (release)
//     the tool servers, Redis and the store close; exit 0.
func (a *App) drain(serveErr <-chan error) {
	log, cfg := a.log, a.cfg
	a.health.SetDraining()
	log.Info("draining", "drain_delay", cfg.Server.DrainDelay, "drain_timeout", cfg.Server.DrainTimeout)
	select {
	case <-time.After(cfg.Server.DrainDelay):
	case <-serveErr:
	}
	dctx, cancel := context.WithTimeout(a.base, cfg.Server.DrainTimeout)
	defer cancel()
	var stopping sync.WaitGroup
	stopping.Add(2)
	go func() {
		defer stopping.Done()
		if err := a.srv.Shutdown(dctx); err != nil {
			log.Warn("HTTP drain timed out; closing remaining connections", "err", err)
			_ = a.srv.Close()
		}
	}()
	go func() {
		defer stopping.Done()
		if err := a.queue.Stop(dctx); err != nil {
			log.Warn("queue stop", "err", err)
		}
	}()
	stopping.Wait()
	// After a drain timeout srv.Close does not wait for the handlers still
	// running; their chats may yet record usage. Give them a moment
	// before the usage writer closes.
	for deadline := time.Now().Add(5 * time.Second); a.chats.InFlight()+a.streams.InFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if a.gwWait != nil {
		a.gwWait()
	}
	a.closeUsage()
}

// workerID names this process in run leases.
func workerID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// serverProtocols are the API server's protocols: HTTP/1.1, and HTTP/2
// without TLS (h2c with prior knowledge) for a client that speaks it, whose
// requests then share a connection as streams: no per-request connection,
// bufio buffers or background reader goroutine (docs/benchmarks.md, memory
// per held chat). TLS is terminated in front of agentd.
func serverProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}
