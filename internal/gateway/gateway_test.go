package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/admission"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/ratelimit"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
)

const (
	model     = "claude-sonnet-4-5"
	primary   = "sk-ant-primary"
	backup    = "sk-ant-backup"
	tenant    = "acme"
	otherTen  = "globex"
	haikuTest = "claude-haiku-4-5"
)

// seen is one request as the sim received it.
type seen struct {
	URI    string
	Header http.Header
	Body   []byte
}

// harness is agentd's API with the gateway on, in process: a real SQLite
// store with API keys, the production provider stack (key pool, retry,
// breaker) over the anthropic client, and the sim behind a real listener.
type harness struct {
	URL      string
	SimURL   string
	Sim      *sim.Server
	Store    *sqlite.Store
	GW       *gateway.Handler
	Provider *resilience.Provider
	Token    string // an agentd API key of tenant "acme", chat scope
	KeyID    string

	mu       sync.Mutex
	seen     []seen
	noRecord bool // benchmarks: do not keep requests
	// intercept, when set, answers a sim request instead of the sim.
	intercept func(w http.ResponseWriter, r *http.Request, body []byte) bool
}

type harnessConfig struct {
	timeout   time.Duration // the provider's request timeout
	tenants   *admission.TenantLimiter
	budgets   *config.Budgets
	sim       sim.Config
	gw        gateway.Config
	rateLimit *ratelimit.Limiter
	retries   int
}

func newHarness(t testing.TB, opts ...func(*harnessConfig)) *harness {
	t.Helper()
	hc := harnessConfig{retries: 3}
	for _, o := range opts {
		o(&hc)
	}
	h := &harness{}
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	require.NoError(t, st.Migrate(t.Context()))
	h.Store = st

	h.Sim = sim.New(hc.sim, nil)
	h.Sim.SetAPIKeys(primary, backup)
	simSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		if !h.noRecord {
			h.seen = append(h.seen, seen{URI: r.RequestURI, Header: r.Header.Clone(), Body: body})
		}
		icpt := h.intercept
		h.mu.Unlock()
		if icpt != nil && icpt(w, r, body) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Sim.ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	h.SimURL = simSrv.URL

	reg := prometheus.NewRegistry()
	client := anthropic.New(anthropic.Config{BaseURL: simSrv.URL, RequestTimeout: hc.timeout})
	provider, err := resilience.NewProvider(t.Context(), resilience.ProviderConfig{
		Keys:  resilience.KeysConfig{Sources: []resilience.KeySourceConfig{{Value: primary}, {Value: backup}}},
		Retry: resilience.RetryConfig{MaxAttempts: hc.retries, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}, client, resilience.NewMetrics(reg), nil)
	require.NoError(t, err)
	h.Provider = provider

	gc := hc.gw
	gc.Upstream = provider
	gc.Pricing = cost.New(nil, nil)
	gc.Usage = st
	gc.Metrics = gateway.NewMetrics(reg)
	if hc.rateLimit != nil {
		gc.Tokens = hc.rateLimit
	}
	if hc.budgets != nil {
		gc.Budgets = budget.New(*hc.budgets, st, gc.Pricing, nil, nil)
	}
	gw, err := gateway.New(gc)
	require.NoError(t, err)
	h.GW = gw

	health := &server.Health{Store: st, Version: "test", Log: slog.New(slog.DiscardHandler)}
	health.MarkStarted(time.Now())
	scfg := server.Config{Health: health, Log: slog.New(slog.DiscardHandler), MaxBodyBytes: 1 << 20,
		Auth: &auth.Authenticator{Keys: st, CacheTTL: config.DefaultAuthCacheTTL}, Gateway: gw, Tenants: hc.tenants}
	if hc.rateLimit != nil {
		scfg.RateLimit = hc.rateLimit
	}
	api := httptest.NewServer(server.New(scfg))
	t.Cleanup(api.Close)
	h.URL = api.URL
	h.Token, h.KeyID = newKey(t, st, tenant, auth.ScopeChat)
	return h
}

func newKey(t testing.TB, st store.APIKeys, tenant string, scopes ...string) (token, id string) {
	t.Helper()
	k, err := auth.NewKey()
	require.NoError(t, err)
	require.NoError(t, st.CreateAPIKey(t.Context(), store.APIKey{ID: k.ID, Prefix: k.Prefix, Hash: k.Hash,
		Tenant: tenant, Scopes: scopes, Name: "test"}))
	return k.Token, k.ID
}

// client is the official Go SDK pointed at agentd, without its own
// retries (so every status reaches the test).
func (h *harness) client(token string) *sdk.Client {
	c := sdk.NewClient(option.WithBaseURL(h.URL), option.WithAPIKey(token), option.WithMaxRetries(0))
	return &c
}

func (h *harness) recordOff() {
	h.mu.Lock()
	h.noRecord = true
	h.mu.Unlock()
}

func (h *harness) lastSeen(t *testing.T) seen {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotEmpty(t, h.seen, "the sim received no request")
	return h.seen[len(h.seen)-1]
}

func (h *harness) usage(t *testing.T) store.UsageTotals {
	t.Helper()
	h.GW.Wait() // accounting runs after the answer
	groups, err := h.Store.SumUsage(t.Context(), store.UsageQuery{Tenant: tenant, GroupBy: store.UsageByAgent,
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	var tot store.UsageTotals
	for _, g := range groups {
		require.Equal(t, gateway.Agent, g.Group)
		tot = tot.Add(g.UsageTotals)
	}
	return tot
}

func userMessage(text string) sdk.MessageNewParams {
	return sdk.MessageNewParams{
		Model: sdk.Model(model), MaxTokens: 256,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock(text))},
	}
}

func TestNonStreamingThroughTheSDK(t *testing.T) {
	h := newHarness(t)
	msg, err := h.client(h.Token).Messages.New(t.Context(), userMessage("hello gateway world"))
	require.NoError(t, err)
	require.Equal(t, model, string(msg.Model))
	require.NotEmpty(t, msg.Content)
	require.Contains(t, msg.Content[0].Text, "hello")
	require.Positive(t, msg.Usage.InputTokens)

	got := h.lastSeen(t)
	require.Equal(t, primary, got.Header.Get("X-Api-Key"), "the client's agentd key is replaced by a pool key")
	require.NotContains(t, got.Header.Get("Authorization"), h.Token)

	u := h.usage(t)
	require.EqualValues(t, 1, u.Requests)
	require.Equal(t, msg.Usage.InputTokens, u.InputTokens)
	require.Equal(t, msg.Usage.OutputTokens, u.OutputTokens)
	require.Positive(t, u.CostUSD)
}

func TestStreamingThroughTheSDKAccumulator(t *testing.T) {
	h := newHarness(t)
	stream := h.client(h.Token).Messages.NewStreaming(t.Context(), userMessage("stream me some words please"))
	var msg sdk.Message
	events := 0
	for stream.Next() {
		require.NoError(t, msg.Accumulate(stream.Current()))
		events++
	}
	require.NoError(t, stream.Err())
	require.Greater(t, events, 3)
	require.Equal(t, sdk.StopReasonEndTurn, msg.StopReason)
	require.Contains(t, msg.Content[0].Text, "stream")

	u := h.usage(t)
	require.EqualValues(t, 1, u.Requests)
	require.Equal(t, msg.Usage.InputTokens, u.InputTokens)
	require.Equal(t, msg.Usage.OutputTokens, u.OutputTokens)
}

func TestToolUseRoundTrip(t *testing.T) {
	h := newHarness(t)
	c := h.client(h.Token)
	tool := sdk.ToolParam{Name: "get_weather", Description: sdk.String("Weather of a city"),
		InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}, Required: []string{"city"}}}
	params := userMessage("please call get_weather for Paris")
	params.Tools = []sdk.ToolUnionParam{{OfTool: &tool}}
	first, err := c.Messages.New(t.Context(), params)
	require.NoError(t, err)
	require.Equal(t, sdk.StopReasonToolUse, first.StopReason)
	var use sdk.ToolUseBlock
	for _, b := range first.Content {
		if b.Type == "tool_use" {
			use = b.AsToolUse()
		}
	}
	require.Equal(t, "get_weather", use.Name)

	params.Messages = append(params.Messages, first.ToParam(),
		sdk.NewUserMessage(sdk.NewToolResultBlock(use.ID, "sunny, 21C", false)))
	second, err := c.Messages.New(t.Context(), params)
	require.NoError(t, err)
	require.Equal(t, sdk.StopReasonEndTurn, second.StopReason)
	require.Contains(t, second.Content[0].Text, "sunny, 21C")
	require.EqualValues(t, 2, h.usage(t).Requests)
}

func TestCountTokens(t *testing.T) {
	h := newHarness(t)
	res, err := h.client(h.Token).Messages.CountTokens(t.Context(), sdk.MessageCountTokensParams{
		Model:    sdk.Model(model),
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("count these words for me"))},
	})
	require.NoError(t, err)
	require.Positive(t, res.InputTokens)
	require.Equal(t, "/v1/messages/count_tokens", h.lastSeen(t).URI)
	require.Zero(t, h.usage(t).Requests, "count_tokens is not a billed model call")
}

// rawPost sends body as is with headers.
func (h *harness) rawPost(t *testing.T, path, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", h.Token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

func TestBodyAndHeadersPassThroughUnchanged(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.gw.Aliases = map[string]string{"claude-sonnet-latest": model}
	})
	// Odd spacing, key order, number formats, unknown fields, cache_control,
	// thinking, an image: every byte must arrive as sent.
	body := `{ "max_tokens":128,"messages":[{"role":"user","content":[{"type":"text","text":"hi \u00e9 \"q\"","cache_control":{"type":"ephemeral"}},` +
		`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}],` +
		`"model" : "claude-sonnet-4-5", "thinking":{"type":"enabled","budget_tokens":1024},` +
		`"agentd_unknown_field": {"nested":[1, 2.50, 1e3, null, true]} }`
	resp, data := h.rawPost(t, gateway.PathMessages+"?beta=true", body, map[string]string{
		"Anthropic-Beta": "prompt-caching-2024-07-31,unknown-beta-2099", "Anthropic-Version": "2023-06-01",
	})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
	got := h.lastSeen(t)
	require.Equal(t, body, string(got.Body), "the body reaches the upstream byte for byte")
	require.Equal(t, "/v1/messages?beta=true", got.URI, "the query string (the Agent SDK's beta=true) passes")
	require.Equal(t, "prompt-caching-2024-07-31,unknown-beta-2099", got.Header.Get("Anthropic-Beta"))
	require.Equal(t, "2023-06-01", got.Header.Get("Anthropic-Version"))
	require.NotEmpty(t, resp.Header.Get("Request-Id"), "the upstream request id is relayed")

	// An alias changes the model's bytes and nothing else.
	aliased := strings.Replace(body, `"claude-sonnet-4-5"`, `"claude-sonnet-latest"`, 1)
	resp, data = h.rawPost(t, gateway.PathMessages, aliased, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
	require.Equal(t, body, string(h.lastSeen(t).Body))
}

// apiError is the error the SDK returns, with its status and type.
func apiError(t *testing.T, err error) *sdk.Error {
	t.Helper()
	require.Error(t, err)
	var e *sdk.Error
	require.True(t, errors.As(err, &e), "not an *sdk.Error: %v", err)
	return e
}

func TestTypedErrors(t *testing.T) {
	limiter := ratelimit.New(ratelimit.Config{Key: ratelimit.Limits{RequestsPerMinute: 3}})
	h := newHarness(t, func(c *harnessConfig) { c.rateLimit = limiter })
	c := h.client(h.Token)

	// 400: the upstream's own validation answer, relayed.
	bad := userMessage("x")
	bad.MaxTokens = 0
	e := apiError(t, func() error { _, err := c.Messages.New(t.Context(), bad); return err }())
	require.Equal(t, http.StatusBadRequest, e.StatusCode)
	require.EqualValues(t, "invalid_request_error", e.Type())

	// 401: a bad agentd key, in Anthropic's shape.
	_, err := h.client("agentd_not_a_key").Messages.New(t.Context(), userMessage("x"))
	e = apiError(t, err)
	require.Equal(t, http.StatusUnauthorized, e.StatusCode)
	require.EqualValues(t, "authentication_error", e.Type())

	// 429: the key's request rate limit (3 per minute: 1 used above).
	_, err = c.Messages.New(t.Context(), userMessage("x"))
	require.NoError(t, err)
	_, err = c.Messages.New(t.Context(), userMessage("x"))
	require.NoError(t, err)
	_, err = c.Messages.New(t.Context(), userMessage("x"))
	e = apiError(t, err)
	require.Equal(t, http.StatusTooManyRequests, e.StatusCode)
	require.EqualValues(t, "rate_limit_error", e.Type())
	require.NotEmpty(t, e.Response.Header.Get("Retry-After"))
}

func TestOverloadRelayedWithoutFallback(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.sim = sim.Config{Rate529: 1} })
	_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, 529, e.StatusCode)
	require.EqualValues(t, "overloaded_error", e.Type())
	h.mu.Lock()
	n := len(h.seen)
	h.mu.Unlock()
	require.Equal(t, 3, n, "retried (3 attempts) before relaying the 529")
}

func TestFallbackModelWhenConfigured(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.gw.Default = gateway.Policy{FallbackModels: map[string][]string{model: {haikuTest}}}
	})
	h.intercept = func(w http.ResponseWriter, _ *http.Request, body []byte) bool {
		if !bytes.Contains(body, []byte(`"`+model+`"`)) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(529)
		_, _ = w.Write([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
		return true
	}
	msg, err := h.client(h.Token).Messages.New(t.Context(), userMessage("fall back please"))
	require.NoError(t, err)
	require.Equal(t, haikuTest, string(msg.Model))
	require.Contains(t, string(h.lastSeen(t).Body), `"model":"`+haikuTest+`"`)
}

func TestModelAllowList(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.gw.Default = gateway.Policy{AllowModels: []string{haikuTest}}
		c.gw.Tenants = map[string]gateway.Policy{otherTen: {}}
	})
	_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, http.StatusForbidden, e.StatusCode)
	require.EqualValues(t, "permission_error", e.Type())

	// Another tenant's policy (no allow-list) lets it through.
	other, _ := newKey(t, h.Store, otherTen, auth.ScopeChat)
	_, err = h.client(other).Messages.New(t.Context(), userMessage("x"))
	require.NoError(t, err)
}

func TestClientDisconnectCancelsUpstreamAndKeepsUsage(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.sim = sim.Config{Words: 200, EventDelay: 20 * time.Millisecond}
	})
	upstreamDone := make(chan error, 1)
	h.intercept = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Sim.ServeHTTP(w, r)
		upstreamDone <- r.Context().Err()
		return true
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream := h.client(h.Token).Messages.NewStreaming(ctx, userMessage("a long answer please"))
	deltas := 0
	for stream.Next() {
		if stream.Current().Type == "content_block_delta" {
			deltas++
			if deltas == 3 {
				cancel()
			}
		}
	}
	select {
	case err := <-upstreamDone:
		require.ErrorIs(t, err, context.Canceled, "the upstream request is canceled with the client")
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request went on after the client left")
	}
	// The usage seen before the end (message_start's input tokens) is
	// recorded.
	require.Eventually(t, func() bool { return h.usage(t).Requests == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Positive(t, h.usage(t).InputTokens)
}

func TestKeyRevokedMidLoadMovesToBackup(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.sim = sim.Config{EventDelay: time.Millisecond} })
	c := h.client(h.Token)
	const workers, perWorker = 8, 25
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []error
		done   int
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				stream := c.Messages.NewStreaming(context.Background(), userMessage("rotate keys under load"))
				var msg sdk.Message
				for stream.Next() {
					_ = msg.Accumulate(stream.Current())
				}
				err := stream.Err()
				if err == nil && msg.StopReason == "" {
					err = errors.New("stream ended without a stop reason")
				}
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				}
				done++
				if done == workers*perWorker/3 {
					h.Sim.SetAPIKeys(backup) // the primary key is revoked at the provider
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, failed, "no client request fails while the pool moves to the backup key")
	require.Equal(t, backup, h.lastSeen(t).Header.Get("X-Api-Key"))
	unauthorized := 0
	h.mu.Lock()
	for _, s := range h.seen {
		if s.Header.Get("X-Api-Key") == primary {
			unauthorized++
		}
	}
	h.mu.Unlock()
	require.Less(t, unauthorized, workers*perWorker, "the revoked key stops being used")
}

func TestRequestErrorsAreAnthropicShaped(t *testing.T) {
	h := newHarness(t)
	for name, tc := range map[string]struct {
		body   string
		status int
		typ    string
	}{
		"not json":      {`{"model":`, 400, "invalid_request_error"},
		"not an object": {`[1,2]`, 400, "invalid_request_error"},
		"no model":      {`{"max_tokens":5,"messages":[]}`, 400, "invalid_request_error"},
		"model number":  {`{"model":5}`, 400, "invalid_request_error"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, data := h.rawPost(t, gateway.PathMessages, tc.body, nil)
			require.Equal(t, tc.status, resp.StatusCode)
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(data, &e), string(data))
			require.Equal(t, "error", e.Type)
			require.Equal(t, tc.typ, e.Error.Type)
			require.NotEmpty(t, e.Error.Message)
		})
	}
}

func TestStreamCutBeforeTheFirstEventIsRetried(t *testing.T) {
	h := newHarness(t)
	var cut sync.Once
	h.intercept = func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
		first := false
		cut.Do(func() { first = true })
		if !first {
			return false // the sim answers
		}
		// 200 and the stream's headers, then the connection closes before
		// any event.
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	stream := h.client(h.Token).Messages.NewStreaming(t.Context(), userMessage("retry me"))
	var msg sdk.Message
	for stream.Next() {
		require.NoError(t, msg.Accumulate(stream.Current()))
	}
	require.NoError(t, stream.Err())
	require.Equal(t, sdk.StopReasonEndTurn, msg.StopReason)
	h.mu.Lock()
	n := len(h.seen)
	h.mu.Unlock()
	require.Equal(t, 2, n, "the cut attempt was made again")
}

func TestStreamCutMidwayEndsWithAnErrorEventAndKeepsUsage(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.sim = sim.Config{RateCut: 1, Words: 50} })
	stream := h.client(h.Token).Messages.NewStreaming(t.Context(), userMessage("cut me off"))
	events := 0
	for stream.Next() {
		events++
	}
	require.Error(t, stream.Err(), "the client learns that the stream broke")
	require.Positive(t, events, "events before the cut were relayed")
	h.mu.Lock()
	n := len(h.seen)
	h.mu.Unlock()
	require.Equal(t, 1, n, "a stream that reached the client is never repeated")
	u := h.usage(t)
	require.EqualValues(t, 1, u.Requests)
	require.Positive(t, u.InputTokens)
}

func TestTokenRateLimitBites(t *testing.T) {
	limiter := ratelimit.New(ratelimit.Config{Key: ratelimit.Limits{TokensPerMinute: 10}})
	h := newHarness(t, func(c *harnessConfig) { c.rateLimit = limiter })
	c := h.client(h.Token)
	_, err := c.Messages.New(t.Context(), userMessage("spend more than ten tokens on this call please"))
	require.NoError(t, err)
	h.GW.Wait() // the tokens are debited after the answer
	_, err = c.Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, http.StatusTooManyRequests, e.StatusCode)
	require.EqualValues(t, "rate_limit_error", e.Type())
	require.NotEmpty(t, e.Response.Header.Get("Retry-After"))
}

func TestTooLargeAndWrongScope(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.gw.MaxBodyBytes = 256 })
	big := `{"model":"` + model + `","max_tokens":5,"messages":[{"role":"user","content":"` + strings.Repeat("x", 300) + `"}]}`
	resp, data := h.rawPost(t, gateway.PathMessages, big, nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Contains(t, string(data), `"type":"request_too_large"`)

	runsOnly, _ := newKey(t, h.Store, tenant, auth.ScopeRuns)
	_, err := h.client(runsOnly).Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, http.StatusForbidden, e.StatusCode)
	require.EqualValues(t, "permission_error", e.Type())
}

func TestBudgetRefusesWithRetryAfter(t *testing.T) {
	// A call's worst case (256 max_tokens of Sonnet output alone is
	// $0.00384) does not fit a $0.003 daily budget of the key.
	h := newHarness(t, func(c *harnessConfig) {
		c.budgets = &config.Budgets{Key: config.BudgetLimit{DailyUSD: 0.003}, ReservationTTL: time.Minute}
	})
	_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, http.StatusTooManyRequests, e.StatusCode)
	require.EqualValues(t, "rate_limit_error", e.Type())
	require.Contains(t, e.Error(), "budget exceeded")
	require.NotEmpty(t, e.Response.Header.Get("Retry-After"))
	h.mu.Lock()
	require.Empty(t, h.seen, "a refused call never reaches the upstream")
	h.mu.Unlock()

	// With a $1 budget the same call fits.
	roomy := newHarness(t, func(c *harnessConfig) {
		c.budgets = &config.Budgets{Key: config.BudgetLimit{DailyUSD: 1}, ReservationTTL: time.Minute}
	})
	_, err = roomy.client(roomy.Token).Messages.New(t.Context(), userMessage("x"))
	require.NoError(t, err)
}

func TestTenantConcurrencyCap(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.tenants = &admission.TenantLimiter{Default: 1}
		c.sim = sim.Config{Latency: 300 * time.Millisecond}
	})
	c := h.client(h.Token)
	first := make(chan error, 1)
	go func() { _, err := c.Messages.New(context.Background(), userMessage("slow")); first <- err }()
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.seen) == 1
	}, 5*time.Second, 5*time.Millisecond, "the first call reached the upstream")
	_, err := c.Messages.New(t.Context(), userMessage("second"))
	e := apiError(t, err)
	require.Equal(t, http.StatusTooManyRequests, e.StatusCode, "the tenant's one slot is taken")
	require.EqualValues(t, "rate_limit_error", e.Type())
	require.NoError(t, <-first)
	_, err = c.Messages.New(t.Context(), userMessage("third"))
	require.NoError(t, err, "the slot is free again")
}

func TestModelReadTheSameWayAsUpstream(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.gw.Default = gateway.Policy{AllowModels: []string{haikuTest},
			FallbackModels: map[string][]string{haikuTest: {"claude-opus-4-5"}}}
	})
	for name, body := range map[string]string{
		"duplicate model":         `{"model":"claude-opus-4-5","model":"` + haikuTest + `","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
		"escaped duplicate model": `{"mod\u0065l":"claude-opus-4-5","model":"` + haikuTest + `","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
		"duplicate max_tokens":    `{"model":"` + haikuTest + `","max_tokens":5,"max_tokens":100000,"messages":[{"role":"user","content":"x"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			resp, data := h.rawPost(t, gateway.PathMessages, body, nil)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(data))
			require.Contains(t, string(data), "duplicate field")
		})
	}
	h.mu.Lock()
	require.Empty(t, h.seen, "nothing went upstream")
	h.mu.Unlock()

	// A fallback the tenant may not use is never tried: the 529 is relayed.
	h.intercept = func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(529)
		_, _ = w.Write([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
		return true
	}
	params := userMessage("x")
	params.Model = haikuTest
	_, err := h.client(h.Token).Messages.New(t.Context(), params)
	require.Equal(t, 529, apiError(t, err).StatusCode)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.seen {
		require.NotContains(t, string(s.Body), "claude-opus-4-5", "the disallowed fallback was called")
	}
}

func TestUpstreamKeyRefusedIsNotTheClientsFault(t *testing.T) {
	h := newHarness(t)
	h.Sim.SetAPIKeys() // the provider accepts no key of the pool
	_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, http.StatusBadGateway, e.StatusCode, "not a 401: the client's agentd key is fine")
	require.EqualValues(t, "api_error", e.Type())
}

func (h *harness) upstreamCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

func TestTimeoutIsIdleAndNotRetried(t *testing.T) {
	// A provider silent for longer than the timeout: 504 after one
	// attempt (the call was sent; it may be running and billed).
	h := newHarness(t, func(c *harnessConfig) {
		c.timeout = 300 * time.Millisecond
		c.sim = sim.Config{Latency: time.Second}
	})
	_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x"))
	e := apiError(t, err)
	require.Equal(t, http.StatusGatewayTimeout, e.StatusCode)
	require.EqualValues(t, "timeout_error", e.Type())
	require.Equal(t, 1, h.upstreamCalls(), "a timed-out call is not repeated")

	// A stream that keeps sending outlives the timeout: it is not cut.
	long := newHarness(t, func(c *harnessConfig) {
		c.timeout = 300 * time.Millisecond
		c.sim = sim.Config{Words: 60, EventDelay: 15 * time.Millisecond} // ~0.9 s in all
	})
	params := userMessage("a long answer")
	params.MaxTokens = 1000
	stream := long.client(long.Token).Messages.NewStreaming(t.Context(), params)
	var msg sdk.Message
	for stream.Next() {
		require.NoError(t, msg.Accumulate(stream.Current()))
	}
	require.NoError(t, stream.Err())
	require.Equal(t, sdk.StopReasonEndTurn, msg.StopReason)
}

func TestClientShaped403LeavesTheKeysAlone(t *testing.T) {
	h := newHarness(t)
	h.intercept = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Header.Get("Anthropic-Beta") != "beta-the-org-lacks" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"type":"error","error":{"type":"permission_error","message":"no access to this beta"}}`))
		return true
	}
	_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x"), option.WithHeader("anthropic-beta", "beta-the-org-lacks"))
	e := apiError(t, err)
	require.Equal(t, http.StatusForbidden, e.StatusCode, "the provider's 403 is relayed")
	require.Equal(t, 1, h.upstreamCalls(), "not retried with another key")
	_, err = h.client(h.Token).Messages.New(t.Context(), userMessage("x"))
	require.NoError(t, err)
	require.Equal(t, primary, h.lastSeen(t).Header.Get("X-Api-Key"), "the primary key was not marked bad")
}

func TestUnlistedModelsShareOneStack(t *testing.T) {
	h := newHarness(t)
	for i := range 5 {
		params := userMessage("x")
		params.Model = sdk.Model(fmt.Sprintf("claude-made-up-%d", i))
		_, err := h.client(h.Token).Messages.New(t.Context(), params)
		require.NoError(t, err) // the sim answers any model
	}
	require.Contains(t, string(h.lastSeen(t).Body), `"claude-made-up-4"`, "the model asked for is still the one called")
	// Dated ids of a priced model share its pricing entry's stack.
	for i := range 3 {
		params := userMessage("x")
		params.Model = sdk.Model(fmt.Sprintf("claude-sonnet-4-5-2099010%d", i))
		_, err := h.client(h.Token).Messages.New(t.Context(), params)
		require.NoError(t, err)
	}
	require.Contains(t, string(h.lastSeen(t).Body), `"claude-sonnet-4-5-20990102"`, "the dated id is the one called")
	var names []string
	for _, b := range h.Provider.Breakers() {
		names = append(names, b.Model)
	}
	require.ElementsMatch(t, []string{gateway.UnlistedModels, "claude-sonnet-4-5"}, names, "client strings do not create breakers")
}

func TestBudgetsRefuseUnpricedModelsAndSettle(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.budgets = &config.Budgets{Key: config.BudgetLimit{DailyUSD: 0.01}, ReservationTTL: time.Minute}
	})
	params := userMessage("x")
	params.Model = "claude-sonnet-9-unpriced"
	_, err := h.client(h.Token).Messages.New(t.Context(), params)
	e := apiError(t, err)
	require.Equal(t, http.StatusForbidden, e.StatusCode, "an unpriced model would cost $0 against the budget")

	// Each call reserves ~$0.004 and settles at its real cost (~$0.0003):
	// were reservations not released, the third call would be refused.
	ok := 0
	for range 40 {
		if _, err := h.client(h.Token).Messages.New(t.Context(), userMessage("x")); err != nil {
			require.Equal(t, http.StatusTooManyRequests, apiError(t, err).StatusCode)
			break
		}
		ok++
		h.GW.Wait() // settled after the answer
	}
	require.Greater(t, ok, 10, "reservations are settled at the real cost")
	require.Less(t, ok, 40, "the budget bites in the end")
	require.LessOrEqual(t, h.usage(t).CostUSD, money.FromUSD(0.01), "spend stays within the budget")
}

func TestProviderAccountHeadersAreNotRelayed(t *testing.T) {
	h := newHarness(t)
	h.intercept = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		w.Header().Set("Anthropic-Ratelimit-Requests-Remaining", "4999")
		w.Header().Set("Anthropic-Organization-Id", "org-agentd")
		w.Header().Set("Set-Cookie", "session=agentd-org")
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Sim.ServeHTTP(w, r)
		return true
	}
	resp, data := h.rawPost(t, gateway.PathMessages, `{"model":"`+model+`","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
	require.Empty(t, resp.Header.Get("Anthropic-Ratelimit-Requests-Remaining"))
	require.Empty(t, resp.Header.Get("Anthropic-Organization-Id"))
	require.Empty(t, resp.Header.Get("Set-Cookie"))
	require.NotEmpty(t, resp.Header.Get("Request-Id"))
}
