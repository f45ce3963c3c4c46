package resilience

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/sim"
)

const (
	modelA = "claude-model-a"
	modelB = "claude-model-b"
)

// serve starts h over real HTTP and returns an anthropic client for it.
func serve(t *testing.T, h http.Handler, key string) *anthropic.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return anthropic.New(anthropic.Config{BaseURL: srv.URL, APIKey: key, HTTPClient: srv.Client()})
}

func serveURL(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// histogramOf returns the queue-wait histogram of provider.
func histogramOf(t *testing.T, m *Metrics, provider string) *dto.Histogram {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.QueueWait.WithLabelValues(provider).(prometheus.Metric).Write(&out))
	return out.GetHistogram()
}

// value returns a counter's or gauge's value.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, c.(prometheus.Metric).Write(&out))
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

func newSim(cfg sim.Config) *sim.Server { return sim.New(cfg, nil) }

// byModel routes each request to the handler of its body's model.
func byModel(routes map[string]http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var p struct {
			Model string `json:"model"`
		}
		_ = json.Unmarshal(body, &p)
		h, ok := routes[p.Model]
		if !ok {
			http.Error(w, "no route for model "+p.Model, http.StatusNotFound)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

// firstN sends the first n requests to first, the others to rest.
func firstN(n int64, first, rest http.Handler) http.Handler {
	var count atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) <= n {
			first.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// switchable sends requests to the handler currently set.
type switchable struct{ h atomic.Pointer[http.Handler] }

func newSwitchable(h http.Handler) *switchable {
	s := &switchable{}
	s.set(h)
	return s
}

func (s *switchable) set(h http.Handler) { s.h.Store(&h) }

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

// keyGate accepts a set of API keys it controls (the sim checks one) and
// counts the requests each key made it through with.
type keyGate struct {
	next http.Handler

	mu       sync.Mutex
	accepted map[string]bool
	used     map[string]int
	rejected map[string]int
}

func newKeyGate(next http.Handler, keys ...string) *keyGate {
	g := &keyGate{next: next, used: map[string]int{}, rejected: map[string]int{}}
	g.accept(keys...)
	return g
}

func (g *keyGate) accept(keys ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accepted = map[string]bool{}
	for _, k := range keys {
		g.accepted[k] = true
	}
}

func (g *keyGate) counts(key string) (used, rejected int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used[key], g.rejected[key]
}

func (g *keyGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		key = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	g.mu.Lock()
	ok := g.accepted[key]
	if ok {
		g.used[key]++
	} else {
		g.rejected[key]++
	}
	g.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		return
	}
	g.next.ServeHTTP(w, r)
}

func userText(text string) llm.Message {
	b, _ := json.Marshal([]llm.Block{{Type: "text", Text: text}})
	return llm.Message{Role: "user", Content: b}
}

func request(text string) llm.Request {
	return llm.Request{Model: modelA, System: "You are a test.", MaxTokens: 256, Messages: []llm.Message{userText(text)}}
}

// call streams req through m and returns the text seen by onDelta too.
func call(ctx context.Context, m llm.Model, req llm.Request) (llm.Response, string, error) {
	var sb strings.Builder
	resp, err := m.Stream(ctx, req, func(d llm.Delta) { sb.WriteString(d.Text) })
	return resp, sb.String(), err
}

func text(r llm.Response) string {
	var sb strings.Builder
	for _, b := range r.Content {
		sb.WriteString(b.Text)
	}
	return sb.String()
}

// gaugeValue reads the gauge name{label=value} from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

func testMetrics() (*Metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return NewMetrics(reg), reg
}

// fastRetry retries quickly, for tests.
var fastRetry = RetryConfig{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

func newProvider(t *testing.T, cfg ProviderConfig, client llm.Model, m *Metrics) *Provider {
	t.Helper()
	p, err := NewProvider(context.Background(), cfg, client, m, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}
