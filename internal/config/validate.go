package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// agentNamePattern is the pattern of Agent.Name.
const agentNamePattern = `[a-z0-9][a-z0-9_-]{0,63}`

var agentNameRE = regexp.MustCompile(`^` + agentNamePattern + `$`)

// Allowed values of the enumerated string fields.
var (
	logLevels          = []string{"debug", "info", "warn", "error"}
	logFormats         = []string{"json", "text"}
	simulateModes      = []string{SimulateAuto, SimulateAlways, SimulateNever}
	concurrencyPolicys = []string{PolicyReject, PolicyEnqueue, PolicyInterrupt, PolicyRollback}
)

// ApplyDefaults replaces every zero-valued field that has a default with
// that default (see the Default* constants), including inside each agent.
// Negative values are left alone so that Validate reports them.
func (c *Config) ApplyDefaults() {
	s := &c.Server
	setDefault(&s.Addr, DefaultServerAddr)
	setDefault(&s.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&s.ReadTimeout, DefaultReadTimeout)
	setDefault(&s.IdleTimeout, DefaultIdleTimeout)
	setDefault(&s.DrainTimeout, DefaultDrainTimeout)
	setDefault(&s.SSEPingInterval, DefaultSSEPingInterval)
	setDefault(&s.DrainDelay, DefaultDrainDelay)
	ad := &c.Admission
	setDefault(&ad.MaxChats, DefaultMaxChats)
	setDefault(&ad.ChatQueue, DefaultChatQueue)
	setDefault(&ad.QueueTimeout, DefaultQueueTimeout)
	setDefault(&ad.MaxStreams, DefaultMaxStreams)
	setDefault(&ad.MemoryHighWater, DefaultMemoryHighWater)
	setDefault(&ad.MemoryLowWater, DefaultMemoryLowWater)
	setDefault(&ad.Overflow, OverflowReject)

	setDefault(&c.Auth.Mode, DefaultAuthMode)
	setDefault(&c.Auth.CacheTTL, DefaultAuthCacheTTL)
	setDefault(&c.Gateway.MaxBodyBytes, DefaultGatewayMaxBodyBytes)
	setDefault(&c.Redaction.Messages, DefaultMessageSecrets)

	c.defaultSessions()
	setDefault(&c.ManagedAgents.MCP.ConnectTimeout, DefaultManagedMCPConnectTimeout)
	setDefault(&c.ManagedAgents.MCP.MaxServers, DefaultManagedMCPMaxServers)
	st := &c.Store
	setDefault(&st.URL, DefaultStoreURL)
	setDefault(&st.ConversationTTL, DefaultConversationTTL)
	setDefault(&st.SweepInterval, DefaultSweepInterval)

	a := &c.Providers.Anthropic
	setDefault(&a.BaseURL, DefaultAnthropicBaseURL)
	setDefault(&a.RequestTimeout, DefaultModelRequestTimeout)
	setDefault(&a.Simulate, DefaultSimulate)

	w := &c.Worker
	setDefault(&w.Concurrency, DefaultWorkerConcurrency())
	setDefault(&w.LeaseTTL, DefaultLeaseTTL)
	setDefault(&w.ReclaimInterval, DefaultReclaimInterval)
	setDefault(&w.PollInterval, DefaultPollInterval)
	setDefault(&c.Runs.IdempotencyTTL, DefaultIdempotencyTTL)
	setDefault(&c.Runs.WebhookTimeout, DefaultWebhookTimeout)

	c.Budgets.applyDefaults()

	setDefault(&c.Log.Level, DefaultLogLevel)
	setDefault(&c.Log.Format, DefaultLogFormat)
	c.applyAbuseDefaults()
	c.Retention.applyDefaults()
	c.Console.applyDefaults()
	c.applyRuntimeDefaults()

	for i := range c.Agents {
		ag := &c.Agents[i]
		setDefault(&ag.MaxSteps, DefaultAgentMaxSteps)
		setDefault(&ag.MaxTokens, DefaultAgentMaxTokens)
		setDefault(&ag.Timeout, DefaultAgentTimeout)
		setDefault(&ag.MaxMessages, DefaultAgentMaxMessages)
		setDefault(&ag.ConcurrencyPolicy, DefaultAgentConcurrencyPolicy)
		setDefault(&ag.OnUnavailable, OnUnavailableFail)
		setDefault(&ag.ApprovalTimeout, DefaultApprovalTimeout)
		setDefault(&ag.OnApprovalTimeout, OnApprovalTimeoutDeny)
	}
	for i := range c.Tools.MCPServers {
		m := &c.Tools.MCPServers[i]
		setDefault(&m.Timeout, DefaultMCPTimeout)
		setDefault(&m.ConnectTimeout, DefaultMCPConnectTimeout)
		setDefault(&m.MaxConcurrency, DefaultMCPMaxConcurrency)
		setDefault(&m.MaxOutputBytes, DefaultToolMaxOutput)
	}
	for i := range c.Tools.HTTP {
		h := &c.Tools.HTTP[i]
		setDefault(&h.Method, DefaultHTTPToolMethod)
		setDefault(&h.Timeout, DefaultHTTPToolTimeout)
		setDefault(&h.MaxConcurrency, DefaultToolMaxConcurrent)
		setDefault(&h.MaxOutputBytes, DefaultToolMaxOutput)
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate checks the configuration as it is (call ApplyDefaults first: a
// zero value that has a default is an error here). It returns every problem
// joined with errors.Join, one per line, each prefixed with the field's YAML
// path, e.g. "agents[1].max_steps: must be > 0"; nil when valid.
func (c *Config) Validate() error {
	var v validator

	s := c.Server
	v.check("server.addr", validAddr(s.Addr))
	atLeast(&v, "server.max_body_bytes", s.MaxBodyBytes, 1, "must be > 0")
	v.positive("server.read_header_timeout", s.ReadHeaderTimeout)
	v.positive("server.read_timeout", s.ReadTimeout)
	v.nonNegative("server.write_timeout", s.WriteTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.positive("server.drain_timeout", s.DrainTimeout)
	v.positive("server.sse_ping_interval", s.SSEPingInterval)
	v.nonNegative("server.drain_delay", s.DrainDelay)
	ad := c.Admission
	atLeast(&v, "admission.max_chats", ad.MaxChats, 0, "must be > 0")
	atLeast(&v, "admission.chat_queue", ad.ChatQueue, 0, "must be >= 0")
	v.positive("admission.queue_timeout", ad.QueueTimeout)
	atLeast(&v, "admission.max_streams", ad.MaxStreams, 0, "must be > 0")
	if ad.MemoryHighWater <= 0 || ad.MemoryHighWater > 1 {
		v.add("admission.memory_high_water", "must be in (0, 1]")
	}
	if ad.MemoryLowWater <= 0 || ad.MemoryLowWater >= ad.MemoryHighWater {
		v.add("admission.memory_low_water", "must be > 0 and below memory_high_water")
	}
	v.oneOf("admission.overflow", ad.Overflow, []string{OverflowReject, OverflowQueue})
	atLeast(&v, "admission.tenant.max_in_flight", ad.Tenant.MaxInFlight, 0, "must be >= 0 (0: no cap)")
	for _, name := range slices.Sorted(maps.Keys(ad.Tenants)) {
		if name == "" {
			v.add("admission.tenants", "a tenant name must not be empty")
		}
		atLeast(&v, "admission.tenants."+name+".max_in_flight", ad.Tenants[name].MaxInFlight, 0, "must be >= 0 (0: no cap)")
	}

	st := c.Store
	v.check("store.url", validStoreURL(st.URL))
	v.positive("store.conversation_ttl", st.ConversationTTL)
	v.positive("store.sweep_interval", st.SweepInterval)

	w := c.Worker
	atLeast(&v, "worker.concurrency", w.Concurrency, 0, "must be > 0")
	v.positive("worker.lease_ttl", w.LeaseTTL)
	v.positive("worker.reclaim_interval", w.ReclaimInterval)
	v.positive("worker.poll_interval", w.PollInterval)
	if w.ReclaimInterval > 0 && w.LeaseTTL > 0 && w.LeaseTTL < 3*time.Second {
		v.add("worker.lease_ttl", "must be >= 3s (it is renewed every lease_ttl/3)")
	}
	v.positive("runs.idempotency_ttl", c.Runs.IdempotencyTTL)
	v.positive("runs.webhook_timeout", c.Runs.WebhookTimeout)

	a := c.Providers.Anthropic
	v.check("providers.anthropic.base_url", validBaseURL(a.BaseURL))
	v.positive("providers.anthropic.request_timeout", a.RequestTimeout)
	v.oneOf("providers.anthropic.simulate", a.Simulate, simulateModes)
	if a.Simulate == SimulateNever && strings.TrimSpace(a.APIKey.Value()) == "" && len(a.Keys.Sources) == 0 {
		v.add("providers.anthropic.api_key", `required when simulate is "never" (or set keys.sources)`)
	}
	v.nonNegative("providers.anthropic.sim_latency", a.SimLatency)
	for i, src := range a.Keys.Sources {
		p := fmt.Sprintf("providers.anthropic.keys.sources[%d]", i)
		n := 0
		for _, set := range []bool{src.Value.Value() != "", src.Env != "", src.File != "", len(src.Command) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.add(p, "set exactly one of value, env, file, command")
		}
		v.nonNegative(p+".ttl", src.TTL)
	}
	v.nonNegative("providers.anthropic.keys.grace", a.Keys.Grace)
	v.nonNegative("providers.anthropic.keys.poll_interval", a.Keys.PollInterval)
	v.nonNegative("providers.anthropic.keys.command_timeout", a.Keys.CommandTimeout)
	atLeast(&v, "providers.anthropic.retry.max_attempts", a.Retry.MaxAttempts, 0, "must be >= 1")
	v.nonNegative("providers.anthropic.retry.base_delay", a.Retry.BaseDelay)
	v.nonNegative("providers.anthropic.retry.max_delay", a.Retry.MaxDelay)
	c.validateBreakers(&v)
	c.validateSessions(&v)
	if u := c.Redis.URL.Value(); u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "redis" && pu.Scheme != "rediss") || pu.Host == "" {
			v.add("redis.url", "must be redis://host:port[/db] or rediss://…")
		}
	}
	atLeast(&v, "redis.pool_size", c.Redis.PoolSize, 0, "must be >= 1")
	v.nonNegative("redis.dial_timeout", c.Redis.DialTimeout)
	v.nonNegative("redis.timeout", c.Redis.Timeout)
	atLeast(&v, "cache.max_entries", c.Cache.MaxEntries, 0, "must be >= 1")
	atLeast(&v, "cache.max_bytes", c.Cache.MaxBytes, 0, "must be >= 1")

	c.validateAuth(&v)
	c.validateRateLimits(&v)
	c.validateGateway(&v)
	c.validateRedaction(&v)
	c.validateBudgets(&v)
	c.validateAbuse(&v)
	c.validateManaged(&v)
	c.Retention.validate(&v)
	c.Console.validate(&v)
	c.validateObservability(&v)
	c.validateSecretsRefresh(&v)
	v.oneOf("log.level", c.Log.Level, logLevels)
	v.oneOf("log.format", c.Log.Format, logFormats)

	if len(c.Agents) == 0 {
		v.add("agents", "at least one agent is required")
	}
	seen := map[string]int{}
	for i, ag := range c.Agents {
		p := fmt.Sprintf("agents[%d]", i)
		switch {
		case ag.Name == "":
			v.add(p+".name", "required")
		case !agentNameRE.MatchString(ag.Name):
			v.add(p+".name", fmt.Sprintf("%q must match %s", ag.Name, agentNamePattern))
		default:
			if j, dup := seen[ag.Name]; dup {
				v.add(p+".name", fmt.Sprintf("duplicate name %q (also agents[%d])", ag.Name, j))
			} else {
				seen[ag.Name] = i
			}
		}
		if strings.TrimSpace(ag.Model) == "" && ag.Runtime == nil {
			v.add(p+".model", "required")
		}
		if ag.Runtime != nil {
			v.runtime(p, ag.Runtime)
		}
		v.oneOf(p+".on_unavailable", ag.OnUnavailable, []string{OnUnavailableFail, OnUnavailableEnqueue})
		atLeast(&v, p+".max_concurrent_runs", ag.MaxConcurrentRuns, 0, "must be >= 0")
		for j, fm := range ag.FallbackModels {
			if strings.TrimSpace(fm) == "" {
				v.add(fmt.Sprintf("%s.fallback_models[%d]", p, j), "must not be empty")
			}
		}
		v.nonNegative(p+".cache.ttl", ag.Cache.TTL)
		v.nonNegative(p+".cache.stale_ttl", ag.Cache.StaleTTL)
		tools := map[string]int{}
		for j, t := range ag.Tools {
			tp := fmt.Sprintf("%s.tools[%d]", p, j)
			if strings.TrimSpace(t) == "" {
				v.add(tp, "must not be empty")
				continue
			}
			if k, dup := tools[t]; dup {
				v.add(tp, fmt.Sprintf("duplicate tool %q (also tools[%d])", t, k))
				continue
			}
			tools[t] = j
		}
		switch {
		case ag.MaxSteps <= 0:
			v.add(p+".max_steps", "must be > 0")
		case ag.MaxSteps > 1000:
			v.add(p+".max_steps", "must be <= 1000")
		}
		atLeast(&v, p+".max_tokens", ag.MaxTokens, 1, "must be > 0")
		v.positive(p+".timeout", ag.Timeout)
		atLeast(&v, p+".max_messages", ag.MaxMessages, 2, "must be >= 2")
		v.oneOf(p+".concurrency_policy", ag.ConcurrencyPolicy, concurrencyPolicys)
		v.agentMCP(p, ag.MCP, c.Tools.MCPServers)
		v.globs(p+".approval_required", ag.ApprovalRequired)
		v.positive(p+".approval_timeout", ag.ApprovalTimeout)
		v.oneOf(p+".on_approval_timeout", ag.OnApprovalTimeout, []string{OnApprovalTimeoutDeny, OnApprovalTimeoutFail})
	}
	v.secrets(c.Secrets)
	v.tools(c.Tools, c.Secrets)
	v.pricing(c.Pricing)
	return errors.Join(v.errs...)
}

// validator collects field errors.
type validator struct{ errs []error }

func (v *validator) add(path, msg string) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, msg))
}

func (v *validator) check(path string, err error) {
	if err != nil {
		v.add(path, err.Error())
	}
}

func (v *validator) positive(path string, d time.Duration) {
	atLeast(v, path, d, 1, "must be > 0")
}

func (v *validator) nonNegative(path string, d time.Duration) {
	atLeast(v, path, d, 0, "must be >= 0")
}

// atLeast adds msg for path when val is below lo: the one shape of every
// numeric bound in the config. msg states the bound as the user reads it,
// which for a field whose zero means "the default" is stricter than lo
// (max_chats: 0 is defaulted before Validate, so "< 0" reads "must be > 0").
func atLeast[T int | int64 | float64 | time.Duration](v *validator, path string, val, lo T, msg string) {
	if val < lo {
		v.add(path, msg)
	}
}

func (v *validator) oneOf(path, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.add(path, "must be one of "+strings.Join(allowed, ", ")+fmt.Sprintf(" (got %q)", val))
	}
}

// validAddr accepts host:port with an empty or named host and a numeric
// port 0-65535 (":8080", "127.0.0.1:8080", "[::1]:0", "localhost:80").
func validAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return fmt.Errorf("%q: port must be a number 0-65535", addr)
	}
	return nil
}

// validStoreURL accepts what ParseStoreURL accepts.
func validStoreURL(u string) error {
	_, err := ParseStoreURL(u)
	return err
}

// validBaseURL accepts an absolute http or https URL with a host. The
// message shows the URL without any password it may carry.
func validBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("must be an absolute http(s) URL")
	}
	if !isHTTPURL(s) {
		return fmt.Errorf("%q: must be an absolute http(s) URL", u.Redacted())
	}
	return nil
}

// isHTTPURL reports whether s is an absolute http or https URL with a host:
// the one check behind every webhook, endpoint and base URL field.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
