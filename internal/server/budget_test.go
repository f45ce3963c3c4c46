package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
)

func withBudgets(b config.Budgets) bundleOption {
	return func(c *bundleConfig) { c.budgets = &b }
}

func withMaxCost(usd float64) bundleOption {
	return func(c *bundleConfig) { c.maxCostUSD = usd }
}

func withRunsBudgets(b config.Budgets, maxCost float64) runsOption {
	return func(c *runsConfig) { c.budgets, c.maxCost = &b, maxCost }
}

type errorAnswer struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		RunID   string `json:"run_id"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) errorAnswer {
	t.Helper()
	var e errorAnswer
	require.NoError(t, json.Unmarshal(body, &e), "body: %s", body)
	return e
}

// A chat reserves its worst case (1024 output tokens of claude-sonnet-4-5:
// about $0.0154 plus the prompt) and settles at the actual cost: with a
// $0.03 daily budget two chats in a row fit only because the first one
// released its unused reservation; with $0.01 the first is refused with
// 429 budget_exceeded and Retry-After until midnight UTC, before any model
// call, and its run ends failed.
func TestChatOverBudget(t *testing.T) {
	t.Parallel()
	t.Run("SettleReleases", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withBudgets(config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 0.03}}))
		for i := range 3 {
			resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello " + strconv.Itoa(i)})
			require.Equal(t, http.StatusOK, resp.Status, "chat %d: %s", i, resp.Body)
		}
	})
	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withBudgets(config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 0.01}}))
		before := time.Now().UTC()
		resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello"})
		require.Equal(t, http.StatusTooManyRequests, resp.Status, "body: %s", resp.Body)
		e := decodeError(t, resp.Body)
		require.Equal(t, "budget_exceeded", e.Error.Type)
		require.Contains(t, e.Error.Message, `tenant "default" daily budget`)
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After: %q", resp.Header.Get("Retry-After"))
		y, m, d := before.Date()
		untilMidnight := time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC).Sub(before)
		require.InDelta(t, untilMidnight.Seconds(), float64(ra), 5, "seconds until the day resets")

		require.NotEmpty(t, e.Error.RunID)
		r, err := b.Store.GetRun(t.Context(), server.DefaultTenant, e.Error.RunID)
		require.NoError(t, err)
		require.Equal(t, store.RunFailed, r.Status)
		require.True(t, strings.HasPrefix(r.Error, "budget_exceeded: "), r.Error)
		require.Zero(t, r.Steps, "no model call was made")
	})
	t.Run("RunMaxCost", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withBudgets(config.Budgets{}), withMaxCost(0.005))
		resp := b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello"})
		require.Equal(t, http.StatusPaymentRequired, resp.Status, "body: %s", resp.Body)
		require.Empty(t, resp.Header.Get("Retry-After"), "a run's cap never resets")
		e := decodeError(t, resp.Body)
		require.Equal(t, "budget_exceeded", e.Error.Type)
		require.Contains(t, e.Error.Message, "max_cost_usd")
		// A request cannot raise the agent's cap.
		resp = b.postChat(t, map[string]any{"agent": demoAgent, "message": "hello", "max_cost_usd": 100})
		require.Equal(t, http.StatusPaymentRequired, resp.Status, "body: %s", resp.Body)
		// Other agents are not capped, unless the request caps its run.
		resp = b.postChat(t, map[string]any{"agent": otherAgent, "message": "hello"})
		require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)
		resp = b.postChat(t, map[string]any{"agent": otherAgent, "message": "hello", "max_cost_usd": 0.001})
		require.Equal(t, http.StatusPaymentRequired, resp.Status, "body: %s", resp.Body)
		require.Equal(t, "budget_exceeded", decodeError(t, resp.Body).Error.Type)
		resp = b.postChat(t, map[string]any{"agent": otherAgent, "message": "hello", "max_cost_usd": -1})
		require.Equal(t, http.StatusBadRequest, resp.Status, "body: %s", resp.Body)
		require.Contains(t, decodeError(t, resp.Body).Error.Message, "max_cost_usd")
	})
}

// A queued run whose agent's max_cost_usd cannot take its next model call
// ends failed with budget_exceeded, on both backends.
func TestRunMaxCostFails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setupRuns(t, backend, withRunsBudgets(config.Budgets{}, 0.005))
		rb := b.submitOK(t, map[string]any{"agent": demoAgent, "message": "hello"})
		rb = b.waitRun(t, rb.ID, "failed", "succeeded")
		require.Equal(t, "failed", rb.Status)
		require.Contains(t, rb.Error, "budget_exceeded")
		require.Zero(t, rb.Steps)
		// The other agent has no cap: its runs succeed, unless the request
		// caps them.
		rb = b.submitOK(t, map[string]any{"agent": otherAgent, "message": "hello"})
		require.Equal(t, "succeeded", b.waitRun(t, rb.ID, "failed", "succeeded").Status)
		rb = b.submitOK(t, map[string]any{"agent": otherAgent, "message": "hello", "max_cost_usd": 0.001})
		rb = b.waitRun(t, rb.ID, "failed", "succeeded")
		require.Equal(t, "failed", rb.Status)
		require.Contains(t, rb.Error, "budget_exceeded")
	})
}
