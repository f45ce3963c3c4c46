// Package observe sets up logging and metrics. Metric names follow
// Prometheus conventions: agentd_ prefix, base units, _total for counters,
// bounded labels only (never run, conversation or user ids).
package observe

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds agentd's collectors. A nil *Metrics is valid and records
// nothing, so libraries and tests need not build one.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests       *prometheus.CounterVec
	HTTPDuration       *prometheus.HistogramVec
	HTTPInFlight       prometheus.Gauge
	SSEStreams         prometheus.Gauge
	LLMRequests        *prometheus.CounterVec
	LLMDuration        *prometheus.HistogramVec
	LLMTokens          *prometheus.CounterVec
	LLMCost            *prometheus.CounterVec
	LLMUnpriced        *prometheus.CounterVec
	Runs               *prometheus.CounterVec
	RunDuration        *prometheus.HistogramVec
	RunSteps           *prometheus.HistogramVec
	ToolCalls          *prometheus.CounterVec
	ToolDuration       *prometheus.HistogramVec
	ConversationsSwept prometheus.Counter
	QueueDepth         *prometheus.GaugeVec
	QueueOldestAge     prometheus.Gauge
	RunsRunning        prometheus.Gauge
	// Budgets (internal/budget): labels are bounded, scope is tenant, key,
	// agent or run, fraction one of budgets.alert_fractions.
	BudgetAlerts    *prometheus.CounterVec
	BudgetRemaining *prometheus.GaugeVec
	BudgetRejected  *prometheus.CounterVec
	// RetentionDeleted counts rows the retention sweeper removed, by table
	// (run_events, checkpoints, runs, usage, audit, feedback).
	RetentionDeleted *prometheus.CounterVec
	// Approvals: tool calls waiting for a person's decision.
	Approvals *ApprovalMetrics
	// Feedback counts people's ratings of runs (see ObserveFeedback).
	Feedback *prometheus.CounterVec
	// ConversationCache: the conversation cache (internal/convcache).
	ConversationCache *ConversationCacheMetrics
}

// LatencyBuckets span agent timescales: 5 ms to 5 minutes (every latency
// histogram of model and tool calls uses them).
var LatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300}

// NewMetrics registers every collector on a fresh registry, together with
// the Go runtime and process collectors and agentd_build_info.
func NewMetrics(version string) *Metrics {
	return NewMetricsOn(prometheus.NewRegistry(), version)
}

// NewMetricsOn is NewMetrics on reg, a registry of a program that embeds
// agentd: agentd's collectors must not be on it yet; the Go runtime and
// process collectors are added unless it has them.
func NewMetricsOn(reg *prometheus.Registry, version string) *Metrics {
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_http_requests_total", Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_http_request_duration_seconds", Help: "HTTP request duration by method and route pattern (SSE streams included, until they end).",
			Buckets: LatencyBuckets,
		}, []string{"method", "route"}),
		HTTPInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentd_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
		SSEStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentd_sse_streams_open", Help: "Open server-sent event streams.",
		}),
		LLMRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_llm_requests_total", Help: "Model calls by model and outcome (ok, or the error type).",
		}, []string{"model", "outcome"}),
		LLMDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_llm_request_duration_seconds", Help: "Model call duration (whole stream) by model.",
			Buckets: LatencyBuckets,
		}, []string{"model"}),
		LLMTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_llm_tokens_total", Help: "Model tokens by agent, model and kind (input, output, cache_creation, cache_read).",
		}, []string{"agent", "model", "kind"}),
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_runs_total", Help: "Finished runs by agent and final status.",
		}, []string{"agent", "status"}),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_run_duration_seconds", Help: "Run duration by agent.",
			Buckets: LatencyBuckets,
		}, []string{"agent"}),
		RunSteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_run_steps", Help: "Model calls per finished run, by agent.",
			Buckets: []float64{1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50},
		}, []string{"agent"}),
		ToolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_tool_calls_total", Help: "Tool calls by tool and outcome (ok, error, timeout).",
		}, []string{"tool", "outcome"}),
		ToolDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_tool_call_duration_seconds", Help: "Tool call duration by tool.",
			Buckets: LatencyBuckets,
		}, []string{"tool"}),
		ConversationsSwept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentd_conversations_expired_total", Help: "Conversations deleted by the TTL sweeper.",
		}),
	}
	m.LLMCost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentd_llm_cost_usd_total", Help: "Cost of model calls in USD (agentd's pricing table), by agent (\"gateway\" for /v1/messages) and the model that answered.",
	}, []string{"agent", "model"})
	m.LLMUnpriced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentd_llm_unpriced_requests_total", Help: "Model calls recorded at cost 0 because the pricing table has no price for the model.",
	}, []string{"model"})
	m.QueueDepth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentd_queue_depth", Help: "Queued runs waiting for a worker, by agent (cluster-wide, sampled every health check).",
	}, []string{"agent"})
	m.QueueOldestAge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentd_queue_oldest_age_seconds", Help: "Age of the oldest queued run (0: none).",
	})
	m.RunsRunning = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentd_runs_running", Help: "Runs being executed (cluster-wide, sampled every health check).",
	})
	m.BudgetAlerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentd_budget_alerts_total", Help: "Budget alerts raised by this instance: a budget's spend crossed an alert fraction for the first time in its period (cluster-wide once).",
	}, []string{"scope", "fraction"})
	m.BudgetRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentd_budget_remaining_usd", Help: "Lowest remaining USD among the budgets of a scope (tenant, key, agent) this instance used in their current period.",
	}, []string{"scope"})
	m.BudgetRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentd_budget_rejected_total", Help: "Model calls refused because they could exceed a budget, by the scope that refused (tenant, key, agent, run).",
	}, []string{"scope"})
	m.RetentionDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentd_retention_rows_deleted_total", Help: "Rows removed by the retention sweeper, by table (usage rows are rolled up into usage_daily first).",
	}, []string{"table"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentd_build_info", Help: "Always 1; the version label tells the build.",
	}, []string{"version"})
	buildInfo.WithLabelValues(version).Set(1)
	reg.MustRegister(
		m.HTTPRequests, m.HTTPDuration, m.HTTPInFlight, m.SSEStreams,
		m.LLMRequests, m.LLMDuration, m.LLMTokens, m.LLMCost, m.LLMUnpriced,
		m.Runs, m.RunDuration, m.RunSteps, m.ToolCalls, m.ToolDuration,
		m.ConversationsSwept, m.QueueDepth, m.QueueOldestAge, m.RunsRunning,
		m.BudgetAlerts, m.BudgetRemaining, m.BudgetRejected, buildInfo,
	)
	reg.MustRegister(m.RetentionDeleted)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				panic(err) // as MustRegister: a programming error
			}
		}
	}
	m.Approvals = newApprovalMetrics(reg)
	m.Feedback = newFeedbackCounter()
	reg.MustRegister(m.Feedback)
	m.ConversationCache = newConversationCacheMetrics(reg)
	return m
}

// ObserveLLM records one model call.
func (m *Metrics) ObserveLLM(model, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.LLMRequests.WithLabelValues(model, outcome).Inc()
	m.LLMDuration.WithLabelValues(model).Observe(d.Seconds())
}

// AddTokens records token usage.
func (m *Metrics) AddTokens(agent, model string, input, output, cacheCreation, cacheRead int64) {
	if m == nil {
		return
	}
	add := func(kind string, n int64) {
		if n > 0 {
			m.LLMTokens.WithLabelValues(agent, model, kind).Add(float64(n))
		}
	}
	add("input", input)
	add("output", output)
	add("cache_creation", cacheCreation)
	add("cache_read", cacheRead)
}

// AddCost records the cost of a model call of agent; unpriced: the pricing
// table has no price for model (the call was recorded at cost 0).
func (m *Metrics) AddCost(agent, model string, usd float64, unpriced bool) {
	if m == nil {
		return
	}
	if unpriced {
		m.LLMUnpriced.WithLabelValues(model).Inc()
	}
	if usd > 0 {
		m.LLMCost.WithLabelValues(agent, model).Add(usd)
	}
}

// ObserveRun records a finished run.
func (m *Metrics) ObserveRun(agent, status string, steps int, d time.Duration) {
	if m == nil {
		return
	}
	m.Runs.WithLabelValues(agent, status).Inc()
	m.RunDuration.WithLabelValues(agent).Observe(d.Seconds())
	m.RunSteps.WithLabelValues(agent).Observe(float64(steps))
}

// ObserveTool records a tool call.
func (m *Metrics) ObserveTool(tool, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.ToolCalls.WithLabelValues(tool, outcome).Inc()
	m.ToolDuration.WithLabelValues(tool).Observe(d.Seconds())
}

// AddSwept records conversations deleted by the sweeper.
func (m *Metrics) AddSwept(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.ConversationsSwept.Add(float64(n))
}

// AddRetentionDeleted records n rows of table removed by the retention
// sweeper.
func (m *Metrics) AddRetentionDeleted(table string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.RetentionDeleted.WithLabelValues(table).Add(float64(n))
}

// SetQueue records a queue sample. Agents absent from depth are set to 0.
func (m *Metrics) SetQueue(depth map[string]int, agents []string, oldest time.Time, running int) {
	if m == nil {
		return
	}
	for _, a := range agents {
		m.QueueDepth.WithLabelValues(a).Set(float64(depth[a]))
	}
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	m.QueueOldestAge.Set(age)
	m.RunsRunning.Set(float64(running))
}

// BudgetAlert counts a budget alert.
func (m *Metrics) BudgetAlert(scope, fraction string) {
	if m == nil {
		return
	}
	m.BudgetAlerts.WithLabelValues(scope, fraction).Inc()
}

// BudgetRejectedCall counts a model call refused by a budget of scope.
func (m *Metrics) BudgetRejectedCall(scope string) {
	if m == nil {
		return
	}
	m.BudgetRejected.WithLabelValues(scope).Inc()
}

// SetBudgetRemaining sets the lowest remaining USD of a scope.
func (m *Metrics) SetBudgetRemaining(scope string, usd float64) {
	if m == nil {
		return
	}
	m.BudgetRemaining.WithLabelValues(scope).Set(usd)
}
