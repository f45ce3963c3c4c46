// Package config loads agentd's configuration: one YAML file, then AGENTD_*
// environment overrides, then ${env:NAME} / ${file:PATH} references, then
// defaults, then validation that names the failing field's path.
//
// A zero value means "use the default" for every field: an explicit
// `max_steps: 0` is indistinguishable from an absent key and gets the
// default. Negative numbers and durations are never replaced and fail
// validation. docs/configuration.md is the user-facing reference.
package config

import (
	"runtime"
	"time"
)

// Defaults. Every field's documentation ends with its default.
const (
	DefaultServerAddr             = ":8080"
	DefaultMaxBodyBytes           = 1 << 20
	DefaultReadHeaderTimeout      = 10 * time.Second
	DefaultReadTimeout            = 30 * time.Second
	DefaultIdleTimeout            = 120 * time.Second
	DefaultDrainTimeout           = 30 * time.Second
	DefaultSSEPingInterval        = 15 * time.Second
	DefaultStoreURL               = "sqlite://agentd.db"
	DefaultConversationTTL        = 30 * 24 * time.Hour
	DefaultSweepInterval          = time.Minute
	DefaultAnthropicBaseURL       = "https://api.anthropic.com"
	DefaultModelRequestTimeout    = 5 * time.Minute
	DefaultSimulate               = SimulateAuto
	DefaultLogLevel               = "info"
	DefaultLogFormat              = "json"
	DefaultAgentMaxSteps          = 10
	DefaultAgentMaxTokens         = 1024
	DefaultAgentTimeout           = 2 * time.Minute
	DefaultAgentMaxMessages       = 100
	DefaultAgentConcurrencyPolicy = PolicyReject
)

// Defaults of admission control and draining.
const (
	DefaultDrainDelay      = 5 * time.Second
	DefaultMaxChats        = 256
	DefaultChatQueue       = 512
	DefaultQueueTimeout    = 10 * time.Second
	DefaultMaxStreams      = 10000
	DefaultMemoryHighWater = 0.85
	DefaultMemoryLowWater  = 0.75
)

// Defaults of queued runs and workers.
const (
	// WorkerConcurrencyPerCPU times GOMAXPROCS is worker.concurrency's
	// default (DefaultWorkerConcurrency).
	WorkerConcurrencyPerCPU = 100
	DefaultLeaseTTL         = 10 * time.Second
	DefaultReclaimInterval  = 2 * time.Second
	DefaultPollInterval     = 200 * time.Millisecond
	DefaultIdempotencyTTL   = 24 * time.Hour
	DefaultWebhookTimeout   = 10 * time.Second
)

// Simulate modes of providers.anthropic.simulate.
const (
	// SimulateAuto: use the in-process simulator when no API key is set.
	SimulateAuto = "auto"
	// SimulateAlways: always use the in-process simulator.
	SimulateAlways = "always"
	// SimulateNever: never simulate; a missing API key is a config error.
	SimulateNever = "never"
)

// Concurrency policies for a second message on a busy conversation.
const (
	PolicyReject = "reject"
	// PolicyEnqueue runs the message after the conversation's earlier
	// ones, in the order the store accepted them.
	PolicyEnqueue = "enqueue"
	// PolicyInterrupt stops the active run keeping what it checkpointed;
	// the message runs next on the history so far.
	PolicyInterrupt = "interrupt"
	// PolicyRollback cancels the active run, discarding its unfinished
	// turn; the message runs next as if it had not been sent.
	PolicyRollback = "rollback"
)

// Last rungs of the fallback ladder (agents[].on_unavailable).
const (
	OnUnavailableFail    = "fail"
	OnUnavailableEnqueue = "enqueue"
)

// Config is the whole configuration file.
type Config struct {
	Server Server `yaml:"server"`
	Store  Store  `yaml:"store"`
	// Retention is how long old rows are kept (docs/operations.md#retention).
	Retention  Retention  `yaml:"retention"`
	Providers  Providers  `yaml:"providers"`
	Worker     Worker     `yaml:"worker"`
	Runs       Runs       `yaml:"runs"`
	Cache      Cache      `yaml:"cache"`
	Redis      Redis      `yaml:"redis"`
	Admission  Admission  `yaml:"admission"`
	Log        Log        `yaml:"log"`
	Auth       Auth       `yaml:"auth"`
	RateLimits RateLimits `yaml:"rate_limits"`
	// Redaction keeps secret values out of prompts (docs/security.md).
	Redaction Redaction `yaml:"redaction"`
	// Gateway is the Anthropic-compatible endpoint (docs/gateway.md).
	Gateway Gateway `yaml:"gateway"`
	// Budgets are spend limits per tenant, key and agent (docs/cost.md).
	Budgets Budgets `yaml:"budgets"`
	// Abuse is abuse detection (docs/security.md#abuse-detection).
	Abuse Abuse `yaml:"abuse"`
	// Console is the operator console at /console (docs/console.md).
	Console Console `yaml:"console"`
	Agents  []Agent `yaml:"agents"`
	// Secrets are named secret values for tools, usually references:
	// "weather_key: ${env:WEATHER_API_KEY}". Tool URLs, headers and MCP
	// server environments use them as {{secret:NAME}}; the model never
	// sees a value, and values are scrubbed from tool output. Defaults to
	// none.
	Secrets map[string]Secret `yaml:"secrets,omitempty"`
	// SecretsRefresh re-reads secrets from their ${file:PATH} sources
	// while agentd runs (see secretsrefresh.go).
	SecretsRefresh SecretsRefresh `yaml:"secrets_refresh"`
	// Tools declares MCP servers and HTTP tools (see docs/tools.md).
	Tools Tools `yaml:"tools"`
	// Pricing overrides the shipped model prices (see docs/cost.md).
	Pricing Pricing `yaml:"pricing"`
	// Observability is tracing (docs/observability.md).
	Observability Observability `yaml:"observability"`
	// Breakers tunes the circuit breakers of tools, webhooks, Redis and
	// the store (docs/resilience.md#circuit-breakers).
	Breakers Breakers `yaml:"breakers"`
	// Sessions is the per-instance conversation cache (sessions.go).
	Sessions Sessions `yaml:"sessions"`
	// ManagedAgents configures the Managed Agents face
	// (docs/managed-agents.md).
	ManagedAgents ManagedAgents `yaml:"managed"`
}

// Server is the HTTP server.
type Server struct {
	// Addr is the listen address. Defaults to ":8080".
	Addr string `yaml:"addr"`
	// MaxBodyBytes caps request bodies; larger ones get 413. Defaults to 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading request headers. Defaults to 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request. Defaults to 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a non-streaming response; 0 means none
	// (SSE streams are always exempt). Defaults to 0: the per-agent timeout
	// bounds chat requests instead.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections. Defaults to 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DrainTimeout is how long in-flight requests may finish on shutdown.
	// Defaults to 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// SSEPingInterval is how often an idle SSE stream gets a ping comment.
	// Defaults to 15s.
	SSEPingInterval time.Duration `yaml:"sse_ping_interval"`
	// DrainDelay is how long a draining instance keeps serving after
	// readiness went false, before it stops accepting connections (load
	// balancer deregistration). Defaults to 5s.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// AdminToken guards the admin API (/admin/*, "Authorization: Bearer
	// <token>"). Defaults to empty: the admin API is off.
	AdminToken Secret `yaml:"admin_token"`
}

// Store is the system of record.
type Store struct {
	// URL selects the backend: sqlite://PATH (relative or absolute file
	// path; sqlite:///abs/path also works) or postgres://user@host/db
	// (PostgreSQL for everything: conversations, runs, events, queue).
	// Defaults to "sqlite://agentd.db".
	URL string `yaml:"url"`
	// ConversationTTL is how long a conversation lives after its last
	// message. 0 means the default (there is no "keep forever" setting;
	// use a long TTL instead). Defaults to 720h (30 days).
	ConversationTTL time.Duration `yaml:"conversation_ttl"`
	// SweepInterval is how often expired conversations are deleted.
	// Defaults to 1m.
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// Worker is the execution of queued runs (roles all and worker).
type Worker struct {
	// Concurrency is how many queued runs one instance executes at once.
	// Defaults to DefaultWorkerConcurrency(): 100 per CPU (GOMAXPROCS).
	Concurrency int `yaml:"concurrency"`
	// LeaseTTL is how long a worker's claim on a run lasts without renewal
	// (renewed every lease_ttl/3): a run whose worker died is resumed by
	// another worker about lease_ttl + reclaim_interval after the last
	// renewal. Must be >= 3s. Defaults to 10s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// ReclaimInterval is how often workers look for runs whose lease
	// expired. Defaults to 2s.
	ReclaimInterval time.Duration `yaml:"reclaim_interval"`
	// PollInterval is how often an idle worker polls the queue for new
	// runs (on PostgreSQL, notifications usually wake it sooner).
	// Defaults to 200ms.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// Runs is the async run API.
type Runs struct {
	// IdempotencyTTL is how long an Idempotency-Key maps to its run.
	// Defaults to 24h.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// WebhookSecret signs webhook deliveries (HMAC-SHA256). Defaults to
	// empty: deliveries are signed with an empty key; set one.
	WebhookSecret Secret `yaml:"webhook_secret"`
	// WebhookTimeout bounds one delivery attempt. Defaults to 10s.
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
}

// Providers are the model providers.
type Providers struct {
	Anthropic Anthropic `yaml:"anthropic"`
}

// Anthropic is the Claude Messages API.
type Anthropic struct {
	// BaseURL of the Messages API. Defaults to "https://api.anthropic.com".
	BaseURL string `yaml:"base_url"`
	// APIKey, usually "${env:ANTHROPIC_API_KEY}" or "${file:/run/secrets/key}".
	// Defaults to empty (see Simulate).
	APIKey Secret `yaml:"api_key"`
	// RequestTimeout bounds one model call. Defaults to 5m.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// Simulate: "auto" starts the in-process simulator when APIKey is
	// empty, "always" always does, "never" requires APIKey. Defaults to "auto".
	Simulate string `yaml:"simulate"`
	// SimLatency is the simulated time to first token of the in-process
	// simulator. Defaults to 0.
	SimLatency time.Duration `yaml:"sim_latency"`
	// H2C speaks HTTP/2 without TLS (prior knowledge) to an http://
	// BaseURL, so one connection carries many calls. Only for upstreams
	// that accept it (agentd sim, some proxies); https:// negotiates HTTP/2
	// anyway, and the in-process simulator always uses it. Defaults to
	// false.
	H2C bool `yaml:"h2c"`
	// Keys adds key sources beyond api_key (key pool and rotation).
	Keys Keys `yaml:"keys"`
	// Retry tunes retries of failed model calls.
	Retry Retry `yaml:"retry"`
	// Breaker tunes the circuit breaker of each model.
	Breaker Breaker `yaml:"breaker"`
	// Concurrency limits model calls in flight (the API quota).
	Concurrency Concurrency `yaml:"concurrency"`
}

// Keys is the provider's key pool. api_key, when set, is its first source.
type Keys struct {
	// Sources are further key sources, in order of preference.
	Sources []KeySource `yaml:"sources,omitempty"`
	// Grace is how long a key replaced by rotation stays usable as a
	// backup. Defaults to 15m.
	Grace time.Duration `yaml:"grace"`
	// PollInterval is how often file sources are re-read. Defaults to 5s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// CommandTimeout bounds a command source's run. Defaults to 30s.
	CommandTimeout time.Duration `yaml:"command_timeout"`
}

// KeySource is one source of API keys: exactly one of value, env, file,
// command.
type KeySource struct {
	Value   Secret   `yaml:"value"`
	Env     string   `yaml:"env"`
	File    string   `yaml:"file"`
	Command []string `yaml:"command,omitempty"`
	// TTL is how long a command's output is used before it runs again (in
	// the background). Defaults to 1h.
	TTL time.Duration `yaml:"ttl"`
}

// Retry tunes retries of model calls.
type Retry struct {
	// MaxAttempts counts the first call. Defaults to 3.
	MaxAttempts int `yaml:"max_attempts"`
	// BaseDelay is the first back-off (full jitter). Defaults to 500ms.
	BaseDelay time.Duration `yaml:"base_delay"`
	// MaxDelay caps one back-off. Defaults to 20s.
	MaxDelay time.Duration `yaml:"max_delay"`
}

// Breaker tunes the circuit breaker per model.
type Breaker struct {
	// Disabled turns breakers off. Defaults to false.
	Disabled bool `yaml:"disabled"`
	// ConsecutiveFailures opens the breaker. Defaults to 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRatio opens the breaker once min_requests calls were seen in
	// the window. Defaults to 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests before failure_ratio applies. Defaults to 20.
	MinRequests int `yaml:"min_requests"`
	// Window over which failures are counted. Defaults to 1m.
	Window time.Duration `yaml:"window"`
	// OpenTimeout is how long an open breaker fails fast before probing.
	// Defaults to 30s.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenProbes are the trial calls of a half-open breaker. Defaults
	// to 3.
	HalfOpenProbes int `yaml:"half_open_probes"`
	// CountRateLimits makes 429 answers count as failures. Defaults to
	// false.
	CountRateLimits bool `yaml:"count_rate_limits"`
}

// Concurrency limits model calls in flight per provider.
type Concurrency struct {
	// MaxInFlight calls at once; negative: unlimited. Defaults to 64.
	MaxInFlight int `yaml:"max_in_flight"`
	// QueueSize is how many calls may wait for a slot; negative: none.
	// Defaults to 256.
	QueueSize int `yaml:"queue_size"`
}

// Admission limits the work one instance takes on.
type Admission struct {
	// MaxChats is how many synchronous chats (POST /v1/chat) run at once.
	// Defaults to 256.
	MaxChats int `yaml:"max_chats"`
	// ChatQueue is how many more chats may wait for a slot. Defaults to 512.
	ChatQueue int `yaml:"chat_queue"`
	// QueueTimeout is how long a request waits for a slot before 503.
	// Defaults to 10s.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// MaxStreams caps open SSE streams (chat streams and run event
	// streams). Defaults to 10000.
	MaxStreams int `yaml:"max_streams"`
	// MemoryHighWater is the share of the memory limit (GOMEMLIMIT or the
	// cgroup's) above which new work is refused and readiness goes false.
	// Defaults to 0.85.
	MemoryHighWater float64 `yaml:"memory_high_water"`
	// MemoryLowWater is the share below which work is taken again.
	// Defaults to 0.75.
	MemoryLowWater float64 `yaml:"memory_low_water"`
	// Tenant caps every tenant (with auth.mode none: the tenant "default")
	// not listed in Tenants. Defaults to no cap.
	Tenant TenantAdmission `yaml:"tenant"`
	// Tenants replace Tenant for the tenants they name. A map: file only.
	// Defaults to none.
	Tenants map[string]TenantAdmission `yaml:"tenants,omitempty"`
	// Overflow is what a synchronous chat refused for memory or
	// concurrency becomes: "reject" (503 overloaded) or "queue" (a queued
	// run: 202 with the run and Location). Defaults to "reject".
	Overflow string `yaml:"overflow"`
}

// Values of Admission.Overflow.
const (
	OverflowReject = "reject"
	OverflowQueue  = "queue"
)

// TenantAdmission is the concurrency cap of one tenant on one instance.
type TenantAdmission struct {
	// MaxInFlight caps the tenant's synchronous chats (streaming or not)
	// and run event streams in flight on this instance; more are refused
	// with 429 tenant_concurrency_limited. Defaults to 0: no cap.
	MaxInFlight int `yaml:"max_in_flight"`
}

// Redis is the optional cluster accelerator (response cache; later rate
// limits). agentd never depends on it: while it is down, agentd serves
// with local fallbacks and /healthz says degraded.
type Redis struct {
	// URL is redis://[user:pass@]host:port/db; empty: no Redis. Defaults
	// to empty.
	URL Secret `yaml:"url"`
	// PoolSize is the connection pool size. Defaults to 10 per CPU.
	PoolSize int `yaml:"pool_size"`
	// DialTimeout bounds connecting. Defaults to 1s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Timeout bounds each command (read and write). Defaults to 200ms:
	// Redis must never slow a request down much.
	Timeout time.Duration `yaml:"timeout"`
}

// Cache is the shared in-memory response cache store.
type Cache struct {
	// MaxEntries bounds the cache. Defaults to 10000.
	MaxEntries int `yaml:"max_entries"`
	// MaxBytes bounds the cache's size. Defaults to 64 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// AgentCache is an agent's response cache (opt-in).
type AgentCache struct {
	// Enabled turns the cache on for the agent. Defaults to false.
	Enabled bool `yaml:"enabled"`
	// TTL is how long an answer is fresh. Defaults to 10m.
	TTL time.Duration `yaml:"ttl"`
	// StaleTTL is how long after that a stale answer may still be served
	// when every model fails (serve_stale_on_error). Defaults to 1h.
	StaleTTL time.Duration `yaml:"stale_ttl"`
	// ServeStaleOnError answers from a stale entry when the models are
	// unavailable. Defaults to false.
	ServeStaleOnError bool `yaml:"serve_stale_on_error"`
	// CacheToolResults also caches calls whose messages carry tool results.
	// Defaults to false.
	CacheToolResults bool `yaml:"cache_tool_results"`
}

// Log is logging.
type Log struct {
	// Level: debug, info, warn or error. Defaults to "info".
	Level string `yaml:"level"`
	// Format: json or text. Defaults to "json".
	Format string `yaml:"format"`
}

// Agent is one agent agentd serves.
type Agent struct {
	// Name is the agent's id in the API; it matches [a-z0-9][a-z0-9_-]{0,63}
	// and is unique among agents. Required.
	Name string `yaml:"name"`
	// Model is the Claude model id. Required.
	Model string `yaml:"model"`
	// FallbackModels are tried in order when model is unavailable (breaker
	// open or retries spent) before any output reached the client.
	// Defaults to none.
	FallbackModels []string `yaml:"fallback_models,omitempty"`
	// Cache is the agent's response cache. Defaults to off.
	Cache AgentCache `yaml:"cache"`
	// System is the system prompt. Defaults to empty.
	System string `yaml:"system"`
	// Tools names the built-in tools the agent may call; names must be
	// non-empty and unique (whether a tool exists is checked by the caller,
	// not by Validate). Defaults to none.
	Tools []string `yaml:"tools"`
	// MaxSteps caps model calls per run; at most 1000. Defaults to 10.
	MaxSteps int `yaml:"max_steps"`
	// MaxTokens is max_tokens of each model call. Defaults to 1024.
	MaxTokens int `yaml:"max_tokens"`
	// MaxCostUSD caps the cost of one run (all its model calls, at
	// agentd's prices): a model call whose worst case would take the run
	// over it is refused and the run fails with budget_exceeded. Defaults
	// to 0: no limit.
	MaxCostUSD float64 `yaml:"max_cost_usd"`
	// Timeout bounds a whole run. Defaults to 2m.
	Timeout time.Duration `yaml:"timeout"`
	// MaxMessages caps the stored conversation; older turns are trimmed.
	// At least 2. Defaults to 100.
	MaxMessages int `yaml:"max_messages"`
	// OnUnavailable is the last rung of the fallback ladder, for a
	// synchronous chat when every model of the agent is unavailable
	// (breakers open, retries spent, model queue full): "fail" answers 503
	// with Retry-After; "enqueue" accepts the message as an async run (202
	// with the run, executed when capacity returns). Answering from a stale
	// cache entry is cache.serve_stale_on_error. Defaults to "fail".
	OnUnavailable string `yaml:"on_unavailable"`
	// MaxConcurrentRuns caps how many of the agent's queued runs one
	// worker instance executes at once; 0 means only worker.concurrency
	// limits them. Defaults to 0.
	MaxConcurrentRuns int `yaml:"max_concurrent_runs"`
	// ConcurrencyPolicy for a message to a conversation that is busy:
	// "reject" (409), "enqueue" (after the earlier messages, in arrival
	// order), "interrupt" (stop the active run keeping what it
	// checkpointed) or "rollback" (cancel the active run, discarding its
	// unfinished turn). A request's concurrency_policy overrides it.
	// Defaults to "reject".
	ConcurrencyPolicy string `yaml:"concurrency_policy"`
	// MCP lists the MCP servers the agent may use and, per server, which
	// of its tools. Defaults to none.
	MCP []AgentMCP `yaml:"mcp,omitempty"`
	// ApprovalRequired lists the tools (names as the model sees them, or
	// path.Match globs) whose calls wait for a person's decision: the run
	// pauses in status requires_action until POST
	// /v1/runs/{id}/approvals. HTTP tools (approval: required) and MCP
	// servers (approval_tools) can ask for it too. Defaults to none.
	ApprovalRequired []string `yaml:"approval_required,omitempty"`
	// ApprovalTimeout is how long a call waits for its decision.
	// Defaults to 24h.
	ApprovalTimeout time.Duration `yaml:"approval_timeout"`
	// OnApprovalTimeout: "deny" gives the model an error tool_result
	// "approval timed out" and the run goes on; "fail" fails the run.
	// Defaults to "deny".
	OnApprovalTimeout string `yaml:"on_approval_timeout"`
	// Runtime, when set, makes the agent a hosted agent program (a Claude
	// Agent SDK app, docs/agent-sdk.md): each run starts Command, whose
	// model calls go through agentd's gateway with a key scoped to the
	// run, and whose stream-JSON output becomes the run's events. model
	// is then optional (the program chooses its models); system, tools,
	// mcp, max_steps, max_tokens and approval_required do not apply.
	// Defaults to none.
	Runtime *AgentRuntime `yaml:"runtime,omitempty"`
}

// AgentRuntime is agents[].runtime: how to start the agent's program.
type AgentRuntime struct {
	// Command is the program and its arguments ([node, app.mjs]); the
	// first is looked up in PATH, or, when it holds a "/", taken from dir.
	// It must exist at start-up. Required.
	Command []string `yaml:"command"`
	// Dir is the program's working directory; a relative one is taken
	// from the configuration file's directory. Defaults to agentd's
	// working directory.
	Dir string `yaml:"dir"`
	// Env adds variables to the program's environment, which otherwise
	// holds only PATH, HOME, LANG, TMPDIR and the AGENTD_* and
	// ANTHROPIC_* variables agentd sets (never agentd's own secrets).
	// Values may be ${env:X} / ${file:/path} references. Defaults to none.
	Env map[string]string `yaml:"env,omitempty"`
	// Protocol is the program's output format: "sdk-stream-json" (the
	// Agent SDK's messages, one JSON object a line). Defaults to
	// "sdk-stream-json".
	Protocol string `yaml:"protocol"`
	// MaxConcurrent caps the agent's programs running at once in one
	// agentd process (chats and queued runs); a run waits for a slot.
	// Defaults to 4.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Timeout bounds one run of the program (it replaces the agent's
	// timeout). Defaults to 10m.
	Timeout time.Duration `yaml:"timeout"`
	// KillGrace is how long a program has to exit after SIGTERM (cancel,
	// timeout, shutdown) before its process group gets SIGKILL.
	// Defaults to 5s.
	KillGrace time.Duration `yaml:"kill_grace"`
	// MemoryMax limits the program's memory ("512MiB", "2GiB", or bytes):
	// a cgroup v2 memory.max when agentd can create cgroups, else
	// RLIMIT_AS (address space, which is larger than resident memory:
	// set it generously). Defaults to 0: no limit.
	MemoryMax ByteSize `yaml:"memory_max"`
}

// Values and defaults of agents[].runtime.
const (
	RuntimeProtocolSDKStreamJSON = "sdk-stream-json"
	DefaultRuntimeMaxConcurrent  = 4
	DefaultRuntimeTimeout        = 10 * time.Minute
	DefaultRuntimeKillGrace      = 5 * time.Second
)

// Values of agents[].on_approval_timeout.
const (
	OnApprovalTimeoutDeny = "deny"
	OnApprovalTimeoutFail = "fail"
)

// DefaultApprovalTimeout is agents[].approval_timeout's default.
const DefaultApprovalTimeout = 24 * time.Hour

// ApprovalRequired is the value of tools.http[].approval that makes a
// tool's calls wait for a person's decision.
const ApprovalRequired = "required"

// AgentMCP gives an agent tools of one MCP server.
type AgentMCP struct {
	// Server names an entry of tools.mcp_servers. Required.
	Server string `yaml:"server"`
	// Tools are the server's tool names the agent may use; path.Match
	// globs ("kv_*", "*" for all). At least one. The model sees only these.
	Tools []string `yaml:"tools"`
}

// Defaults of tools.
const (
	DefaultMCPTimeout        = 30 * time.Second
	DefaultMCPConnectTimeout = 10 * time.Second
	DefaultMCPMaxConcurrency = 8
	DefaultHTTPToolTimeout   = 10 * time.Second
	DefaultHTTPToolMethod    = "GET"
	DefaultToolMaxOutput     = 64 << 10
	DefaultToolMaxConcurrent = 8
)

// Tools are the tools beyond the built-in ones.
type Tools struct {
	// MCPServers are MCP servers agentd connects to at start-up. Defaults
	// to none.
	MCPServers []MCPServer `yaml:"mcp_servers,omitempty"`
	// HTTP are HTTP tools. Defaults to none.
	HTTP []HTTPTool `yaml:"http,omitempty"`
}

// MCPServer is one MCP server: set command (stdio) or url (streamable HTTP).
type MCPServer struct {
	// Name matches [a-z0-9][a-z0-9_-]{0,63} and is unique. Required.
	Name string `yaml:"name"`
	// Command starts a stdio server (argv, no shell); agentd supervises
	// it and restarts it with back-off when it exits.
	Command []string `yaml:"command,omitempty"`
	// Dir is the command's working directory. Defaults to agentd's.
	Dir string `yaml:"dir"`
	// Env are extra environment variables of the command; values may hold
	// {{secret:NAME}}. Defaults to none (the server gets only PATH, HOME
	// and a few locale/toolchain variables of agentd's environment).
	Env map[string]string `yaml:"env,omitempty"`
	// URL of a streamable-HTTP server.
	URL string `yaml:"url"`
	// Headers sent to url; values may hold {{secret:NAME}}. Defaults to none.
	Headers map[string]string `yaml:"headers,omitempty"`
	// Timeout bounds one tool call. Defaults to 30s.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds connecting and listing tools. Defaults to 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxConcurrency caps calls in flight to this server. Defaults to 8.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxOutputBytes caps one call's output (truncated with a marker).
	// Defaults to 65536.
	MaxOutputBytes int `yaml:"max_output_bytes"`
	// Consequential makes every tool of the server consequential: each
	// call is written to the audit log and gets an idempotency key in
	// _meta. Defaults to false.
	Consequential bool `yaml:"consequential"`
	// ConsequentialTools marks only these tools (path.Match globs)
	// consequential. Defaults to none.
	ConsequentialTools []string `yaml:"consequential_tools,omitempty"`
	// ApprovalTools are the server's tools (path.Match globs on the
	// server's own names) whose calls wait for a person's decision (see
	// agents[].approval_required). Defaults to none.
	ApprovalTools []string `yaml:"approval_tools,omitempty"`
	// BareToolNames shows the model the server's tool names as they are;
	// by default they are prefixed with "<name>_" (server "demo", tool
	// "echo": "demo_echo"). Defaults to false.
	BareToolNames bool `yaml:"bare_tool_names"`
}

// HTTPTool is a tool that makes one HTTP request.
type HTTPTool struct {
	// Name the model calls it by: [a-zA-Z0-9_-]{1,64}, unique among tools.
	// Required.
	Name string `yaml:"name"`
	// Description the model sees. Defaults to empty.
	Description string `yaml:"description"`
	// Method: GET, POST, PUT, PATCH or DELETE; POST, PUT and PATCH send
	// the input as the JSON body. Defaults to GET.
	Method string `yaml:"method"`
	// URL template: absolute http(s) URL; {{FIELD}} is the input's
	// property FIELD (escaped), {{secret:NAME}} a secret; placeholders only
	// after the host. Required.
	URL string `yaml:"url"`
	// InputSchema is the JSON schema of the input (YAML). Defaults to
	// {type: object}.
	InputSchema map[string]any `yaml:"input_schema,omitempty"`
	// OutputSchema, if set, must accept the response (parsed as JSON):
	// type, required, properties, items and enum are checked. Defaults to
	// none.
	OutputSchema map[string]any `yaml:"output_schema,omitempty"`
	// Headers are request headers; values may hold {{secret:NAME}}.
	// Defaults to none.
	Headers map[string]string `yaml:"headers,omitempty"`
	// Timeout bounds one call. Defaults to 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency caps calls in flight. Defaults to 8.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxOutputBytes caps the output (truncated with a marker). Defaults
	// to 65536.
	MaxOutputBytes int `yaml:"max_output_bytes"`
	// AllowPrivate lets the tool reach loopback, private and link-local
	// addresses. Defaults to false.
	AllowPrivate bool `yaml:"allow_private"`
	// Consequential: every call is written to the audit log and sends an
	// Idempotency-Key header. Defaults to false.
	Consequential bool `yaml:"consequential"`
	// Approval: "required" makes every call wait for a person's decision
	// (see agents[].approval_required). Defaults to "" (none).
	Approval string `yaml:"approval,omitempty"`
}

// Secret is a string that never prints: String, GoString, MarshalYAML,
// MarshalJSON, MarshalText and LogValue all show "[redacted]" (or "" when the
// secret is empty). Value returns the real value.
type Secret string

// DefaultWorkerConcurrency is worker.concurrency's default, sized for the
// machine: WorkerConcurrencyPerCPU runs per CPU the Go runtime uses
// (GOMAXPROCS, which follows a container's CPU limit). A run spends most
// of its time waiting for the model, not on a CPU: at 20 per instance (the
// default until 2026-12-06) the queue, not the machine, was the limit
// (docs/benchmarks.md, performance round 2).
func DefaultWorkerConcurrency() int {
	return WorkerConcurrencyPerCPU * runtime.GOMAXPROCS(0)
}
