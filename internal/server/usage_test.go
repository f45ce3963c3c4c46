package server_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/tool"
)

type usageTotalsJSON struct {
	Requests                 int64   `json:"requests"`
	InputTokens              int64   `json:"input_tokens"`
	OutputTokens             int64   `json:"output_tokens"`
	CacheCreationInputTokens int64   `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64   `json:"cache_read_input_tokens"`
	CostUSD                  float64 `json:"cost_usd"`
}

type usageJSON struct {
	GroupBy string    `json:"group_by"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Rows    []struct {
		Group string `json:"group"`
		usageTotalsJSON
	} `json:"rows"`
	Total usageTotalsJSON `json:"total"`
}

// setupUsage is an API with pricing and the usage ledger on a SQLite store.
func setupUsage(t *testing.T) (*testBundle, *sqlite.Store) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	require.NoError(t, st.Migrate(t.Context()))
	simSrv := httptest.NewServer(sim.New(sim.Config{APIKey: testSimKey}, nil))
	t.Cleanup(simSrv.Close)
	model := anthropic.New(anthropic.Config{BaseURL: simSrv.URL, APIKey: testSimKey})
	agents := map[string]*run.ChatAgent{demoAgent: {Agent: run.Agent{
		Name: demoAgent, Model: testModel, Tools: tool.Builtins(nil), MaxSteps: 8, MaxTokens: 1024, Timeout: 30 * time.Second,
	}, MaxMessages: 100}}
	loop := &run.Loop{Model: model, Store: st, Log: log, Pricing: cost.New(nil, log), Usage: st}
	svc := &run.Service{Loop: loop, Store: st, Agents: agents, ConversationTTL: time.Hour, Log: log}
	health := &server.Health{Store: st, Version: "test", Log: log}
	api := server.New(server.Config{Chat: svc, Conversations: st, Health: health, Log: log,
		MaxBodyBytes: testMaxBody, SSEPingInterval: time.Hour, Usage: st})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &testBundle{URL: srv.URL, Client: srv.Client(), API: api, Store: st}, st
}

func getUsage(t *testing.T, b *testBundle, query string) usageJSON {
	t.Helper()
	resp := b.do(t, http.MethodGet, "/v1/usage"+query, "", nil)
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	var u usageJSON
	require.NoError(t, json.Unmarshal(resp.Body, &u))
	return u
}

func TestUsageEndpoint(t *testing.T) {
	t.Parallel()
	b, st := setupUsage(t)

	// A chat with tool use: two model calls, two usage rows.
	resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "What time is it? Use the clock."})
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
	var ans struct {
		RunID   string  `json:"run_id"`
		Steps   int     `json:"steps"`
		CostUSD float64 `json:"cost_usd"`
		Usage   usage   `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &ans))
	require.Equal(t, 2, ans.Steps)
	require.Positive(t, ans.CostUSD)

	u := getUsage(t, b, "")
	require.Equal(t, "agent", u.GroupBy, "default grouping")
	require.WithinDuration(t, time.Now(), u.To, time.Minute)
	require.Equal(t, 30*24*time.Hour, u.To.Sub(u.From), "default window")
	require.Len(t, u.Rows, 1)
	require.Equal(t, demoAgent, u.Rows[0].Group)
	require.Equal(t, int64(2), u.Rows[0].Requests)
	require.Equal(t, ans.Usage.InputTokens, u.Rows[0].InputTokens)
	require.InDelta(t, ans.CostUSD, u.Rows[0].CostUSD, 1e-12)
	require.Equal(t, u.Rows[0].usageTotalsJSON, u.Total)

	// Seeded rows on known days for the other groupings and the bounds.
	day := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	for _, r := range []store.UsageRecord{
		{Time: day("2025-03-01T10:00:00Z"), Tenant: server.DefaultTenant, Key: "key_a", Agent: "x", Model: "claude-haiku-4-5", RunID: "r1", InputTokens: 10, CostUSD: money.FromUSD(0.5)},
		{Time: day("2025-03-01T23:00:00Z"), Tenant: server.DefaultTenant, Agent: "x", Model: "claude-opus-4", RunID: "r2", OutputTokens: 20, CostUSD: money.FromUSD(1.5)},
		{Time: day("2025-03-02T00:00:00Z"), Tenant: server.DefaultTenant, Key: "key_a", Agent: "y", Model: "claude-opus-4", RunID: "r3", CacheReadInputTokens: 30, CostUSD: money.FromUSD(2)},
		{Time: day("2025-03-02T00:00:00Z"), Tenant: "someone-else", Agent: "y", Model: "claude-opus-4", RunID: "r4", CostUSD: money.FromUSD(100)},
	} {
		require.NoError(t, st.AppendUsage(t.Context(), r))
	}
	groups := func(u usageJSON) map[string]usageTotalsJSON {
		m := map[string]usageTotalsJSON{}
		for _, r := range u.Rows {
			m[r.Group] = r.usageTotalsJSON
		}
		return m
	}
	u = getUsage(t, b, "?group_by=day&from=2025-03-01&to=2025-03-02")
	require.Equal(t, day("2025-03-01T00:00:00Z"), u.From)
	require.Equal(t, day("2025-03-03T00:00:00Z"), u.To, "a date as to includes the day")
	require.Equal(t, map[string]usageTotalsJSON{
		"2025-03-01": {Requests: 2, InputTokens: 10, OutputTokens: 20, CostUSD: 2},
		"2025-03-02": {Requests: 1, CacheReadInputTokens: 30, CostUSD: 2},
	}, groups(u))
	require.Equal(t, usageTotalsJSON{Requests: 3, InputTokens: 10, OutputTokens: 20, CacheReadInputTokens: 30, CostUSD: 4}, u.Total)

	u = getUsage(t, b, "?group_by=model&from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z")
	require.Equal(t, map[string]usageTotalsJSON{
		"claude-haiku-4-5": {Requests: 1, InputTokens: 10, CostUSD: 0.5},
		"claude-opus-4":    {Requests: 1, OutputTokens: 20, CostUSD: 1.5},
	}, groups(u), "RFC 3339 to is exclusive")

	u = getUsage(t, b, "?group_by=key&from=2025-03-01&to=2025-03-31")
	require.Equal(t, map[string]usageTotalsJSON{
		"key_a": {Requests: 2, InputTokens: 10, CacheReadInputTokens: 30, CostUSD: 2.5},
		"":      {Requests: 1, OutputTokens: 20, CostUSD: 1.5},
	}, groups(u))

	u = getUsage(t, b, "?group_by=agent&from=2025-03-02&to=2025-03-02")
	require.Equal(t, map[string]usageTotalsJSON{"y": {Requests: 1, CacheReadInputTokens: 30, CostUSD: 2}}, groups(u))

	u = getUsage(t, b, "?group_by=agent&from=2024-01-01&to=2024-01-31")
	require.NotNil(t, u.Rows)
	require.Empty(t, u.Rows)
	require.Zero(t, u.Total)
}

func TestUsageBadParams(t *testing.T) {
	t.Parallel()
	b, _ := setupUsage(t)
	for query, param := range map[string]string{
		"?group_by=run":                            "group_by",
		"?group_by=agent&from=yesterday":           "from",
		"?to=2025-13-01":                           "to",
		"?from=2025-03-02&to=2025-03-01":           "from",
		"?from=2025-03-01T00:00:00&to=":            "from", // no zone
		"?to=2025-03-01T00:00:00Z&from=2025-03-01": "from",
	} {
		resp := b.do(t, http.MethodGet, "/v1/usage"+query, "", nil)
		eb := requireError(t, resp, http.StatusBadRequest, "invalid_request")
		require.Contains(t, eb.Error.Message, "query parameter "+param, query)
	}
	// Without a ledger the endpoint does not exist.
	b2 := setup(t)
	requireError(t, b2.do(t, http.MethodGet, "/v1/usage", "", nil), http.StatusNotFound, "not_found")
}
