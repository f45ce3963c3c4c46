package deploytest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/tool"
)

// repo is the repository root, from this package's directory.
const repo = "../.."

// external metrics the rules may name: they come from Prometheus itself
// (up) or kube-state-metrics, not from agentd.
var external = map[string]bool{
	"up":                    true,
	"kube_pod_status_ready": true,
}

// capture is a Registerer that keeps what is registered on it.
type capture struct{ cs []prometheus.Collector }

func (c *capture) Register(x prometheus.Collector) error   { c.cs = append(c.cs, x); return nil }
func (c *capture) MustRegister(xs ...prometheus.Collector) { c.cs = append(c.cs, xs...) }
func (c *capture) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// addCollector adds the series names of c (histograms and summaries with
// their _bucket/_sum/_count series).
func addCollector(names map[string]bool, c prometheus.Collector) {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	hist := false
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec, prometheus.Summary, *prometheus.SummaryVec:
		hist = true
	}
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		names[m[1]] = true
		if hist {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+s] = true
			}
		}
	}
}

// agentdMetricNames is every series name agentd's /metrics can expose:
// the collectors of observe.Metrics (found by reflection, so new fields
// count without touching this test), of the resilience, admission and tool
// packages, and what the registry gathers (Go runtime, process, build info).
func agentdMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	m := observe.NewMetrics("test")
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if c, ok := v.Field(i).Interface().(prometheus.Collector); ok && !v.Field(i).IsNil() {
			if _, isReg := c.(*prometheus.Registry); !isReg {
				addCollector(names, c)
			}
		}
	}
	reg := &capture{}
	resilience.NewMetrics(reg)
	admission.NewMetrics(reg)
	tool.NewMetrics(reg)
	abuse.NewMetrics(reg)
	breaker.NewSet(breaker.Options{Registerer: reg})
	for _, c := range reg.cs {
		addCollector(names, c)
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	for _, must := range []string{"agentd_http_requests_total", "agentd_breaker_state", "agentd_admission_rejected_total",
		"agentd_tool_guard_events_total", "process_resident_memory_bytes", "agentd_run_duration_seconds_bucket"} {
		if !names[must] {
			t.Fatalf("metric list incomplete: no %s (have %d names)", must, len(names))
		}
	}
	return names
}

// metricNames returns the metric names an expression selects.
func metricNames(expr parser.Expr) []string {
	var out []string
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		out = append(out, name)
		return nil
	})
	return out
}

// promql is Prometheus's own PromQL parser with its default options.
var promql = parser.NewParser(parser.Options{})

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAlerts(t *testing.T) {
	names := agentdMetricNames(t)
	raw := readFile(t, "deploy/prometheus/alerts.yaml")
	var rf ruleFile
	if err := yaml.UnmarshalStrict(raw, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	seen := map[string]bool{}
	used := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			id := g.Name + "/" + r.Alert
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("%s: empty or duplicate alert name", id)
			}
			seen[r.Alert] = true
			expr, err := promql.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				continue
			}
			if expr.Type() != parser.ValueTypeVector {
				t.Errorf("%s: expression is a %s, want a vector", id, expr.Type())
			}
			for _, n := range metricNames(expr) {
				used[n] = true
				if !names[n] && !external[n] {
					t.Errorf("%s: metric %s is not exported by agentd (nor an allowed external metric)", id, n)
				}
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for: %v", id, err)
				}
			}
			if s := r.Labels["severity"]; s != "page" && s != "warn" {
				t.Errorf("%s: severity %q, want page or warn", id, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", id)
			}
			rb := r.Annotations["runbook_url"]
			if _, err := os.Stat(filepath.Join(repo, rb)); rb == "" || err != nil {
				t.Errorf("%s: runbook_url %q: not a file of the repository", id, rb)
			}
			// Templates in annotations must at least be balanced.
			for k, a := range r.Annotations {
				if strings.Count(a, "{{") != strings.Count(a, "}}") {
					t.Errorf("%s: annotation %s: unbalanced template", id, k)
				}
			}
		}
	}
	// The list of signals, each covered by at least one rule.
	for _, want := range []string{"agentd_http_requests_total", "agentd_http_request_duration_seconds_bucket",
		"agentd_queue_oldest_age_seconds", "agentd_breaker_state", "agentd_key_state", "agentd_key_rejections_total",
		"kube_pod_status_ready", "process_resident_memory_bytes", "agentd_admission_rejected_total",
		"agentd_abuse_flagged_total"} {
		if !used[want] {
			t.Errorf("no alert uses %s", want)
		}
	}
	// Budgets: an alert on the budget alerts and one on refusals;
	// feedback: one on the positive share.
	for _, want := range []string{"agentd_budget_alerts_total", "agentd_budget_rejected_total", "agentd_feedback_total"} {
		if !used[want] {
			t.Errorf("no alert uses %s", want)
		}
	}

	// The chart ships the same rules.
	if chart := readFile(t, "deploy/helm/agentd/files/alerts.yaml"); !bytes.Equal(chart, raw) {
		t.Error("deploy/helm/agentd/files/alerts.yaml differs from deploy/prometheus/alerts.yaml: cp deploy/prometheus/alerts.yaml deploy/helm/agentd/files/alerts.yaml")
	}
}

// TestDashboard: every panel query of the Grafana dashboard parses and
// names only agentd's metrics.
func TestDashboard(t *testing.T) {
	names := agentdMetricNames(t)
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "deploy/grafana/agentd.json")))
	if err := dec.Decode(&dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("dashboard needs a title and a uid")
	}
	// Grafana's variables, replaced by what they become at query time.
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "3h", "${job}", "agentd", "$job", "agentd",
		"${namespace}", "default", "$namespace", "default")
	used := map[string]bool{}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				continue
			}
			queries++
			expr, err := promql.ParseExpr(vars.Replace(tg.Expr))
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
				continue
			}
			for _, n := range metricNames(expr) {
				used[n] = true
				if !names[n] && !external[n] {
					t.Errorf("panel %q: metric %s is not exported by agentd", p.Title, n)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
	for _, want := range []string{"agentd_http_requests_total", "agentd_http_request_duration_seconds_bucket",
		"agentd_llm_tokens_total", "agentd_run_steps_bucket", "agentd_tool_calls_total", "agentd_queue_depth",
		"agentd_queue_oldest_age_seconds", "agentd_breaker_state", "process_resident_memory_bytes",
		"agentd_llm_cost_usd_total", "agentd_llm_unpriced_requests_total", "agentd_budget_remaining_usd",
		"agentd_feedback_total"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	var missing []string
	for n := range used {
		if !names[n] && !external[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Logf("unknown metrics: %v", missing)
	}
}
