// Package config loads agentd's configuration: one YAML file, then AGENTD_*
// environment overrides, then ${env:NAME} / ${file:PATH} references, then
// defaults, then validation that names the failing field's path.
//
// A zero value means "use the default" for every field: an explicit
// `max_steps: 0` is indistinguishable from an absent key and gets the
// default. Negative numbers and durations are never replaced and fail
// validation. docs/configuration.md is the user-facing reference.
package config

import "time"

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
)

// Config is the whole configuration file.
type Config struct {
	Server    Server    `yaml:"server"`
	Store     Store     `yaml:"store"`
	Providers Providers `yaml:"providers"`
	Log       Log       `yaml:"log"`
	Agents    []Agent   `yaml:"agents"`
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
}

// Store is the system of record.
type Store struct {
	// URL selects the backend: sqlite://PATH (relative or absolute file
	// path; sqlite:///abs/path also works). Defaults to "sqlite://agentd.db".
	URL string `yaml:"url"`
	// ConversationTTL is how long a conversation lives after its last
	// message. 0 means the default (there is no "keep forever" setting;
	// use a long TTL instead). Defaults to 720h (30 days).
	ConversationTTL time.Duration `yaml:"conversation_ttl"`
	// SweepInterval is how often expired conversations are deleted.
	// Defaults to 1m.
	SweepInterval time.Duration `yaml:"sweep_interval"`
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
	// Timeout bounds a whole run. Defaults to 2m.
	Timeout time.Duration `yaml:"timeout"`
	// MaxMessages caps the stored conversation; older turns are trimmed.
	// At least 2. Defaults to 100.
	MaxMessages int `yaml:"max_messages"`
	// ConcurrencyPolicy for a message to a conversation that is busy:
	// "reject" (409). Defaults to "reject".
	ConcurrencyPolicy string `yaml:"concurrency_policy"`
}

// Secret is a string that never prints: String, GoString, MarshalYAML,
// MarshalJSON, MarshalText and LogValue all show "[redacted]" (or "" when the
// secret is empty). Value returns the real value.
type Secret string
