package managed

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// turnsStore is the part of store.Managed that Turns reads.
type turnsStore struct {
	store.Managed
	sessions map[string]store.ManagedSession // by conversation
	runs     []store.Run
}

func (s *turnsStore) GetManagedSessionByConversation(_ context.Context, _, conv string) (store.ManagedSession, error) {
	ms, ok := s.sessions[conv]
	if !ok {
		return ms, store.ErrNotFound
	}
	return ms, nil
}

func (s *turnsStore) ListConversationRuns(context.Context, string, string) ([]store.Run, error) {
	return s.runs, nil
}

type submitted struct {
	Runner
	got []run.SubmitParams
}

func (s *submitted) Submit(_ context.Context, p run.SubmitParams) (store.Run, bool, error) {
	s.got = append(s.got, p)
	return store.Run{}, true, nil
}

func TestTurnsBudgetAndWebhook(t *testing.T) {
	data, _ := json.Marshal(SessionData{Budget: &Budget{Type: "limit", MaxListCost: Money{Amount: "250", Currency: "USD"}}})
	st := &turnsStore{sessions: map[string]store.ManagedSession{
		"conv_b": {ID: "sesn_b", ConversationID: "conv_b", Data: data},
		"conv_n": {ID: "sesn_n", ConversationID: "conv_n", Data: []byte(`{"metadata":{}}`)},
	}}
	sub := &submitted{}
	turns := &Turns{Runner: sub, Store: st, Webhooks: NewWebhookEndpoints(WebhookEndpoint{URL: "https://hooks.example/x", Key: testWebhookKey},
		map[string]WebhookEndpoint{"t2": {URL: "https://t2.example/x", Key: testWebhookKey}, "quiet": {}})}
	ctx := t.Context()

	// $2.50 budget, nothing spent: the turn may spend $2.50.
	_, _, err := turns.Submit(ctx, run.SubmitParams{Tenant: "t1", ConversationID: "conv_b"})
	require.NoError(t, err)
	require.InDelta(t, 2.50, sub.got[0].MaxCostUSD, 1e-12)
	require.Equal(t, SessionWebhook, sub.got[0].Webhook, "the tenant's endpoint, looked up when delivered")

	// Two earlier turns spent $1.75: $0.75 left.
	st.runs = []store.Run{{CostUSD: money.Nanos(1_000_000_000)}, {CostUSD: money.Nanos(750_000_000)}}
	_, _, err = turns.Submit(ctx, run.SubmitParams{ConversationID: "conv_b"})
	require.NoError(t, err)
	require.InDelta(t, 0.75, sub.got[1].MaxCostUSD, 1e-12)

	// A lower cap of the caller's stays.
	_, _, err = turns.Submit(ctx, run.SubmitParams{ConversationID: "conv_b", MaxCostUSD: 0.10})
	require.NoError(t, err)
	require.InDelta(t, 0.10, sub.got[2].MaxCostUSD, 1e-12)

	// Spent past the budget: a cap of one nano-dollar (0 would be none),
	// so the turn stops before its first model call.
	st.runs = append(st.runs, store.Run{CostUSD: money.Nanos(900_000_000)})
	_, _, err = turns.Submit(ctx, run.SubmitParams{ConversationID: "conv_b"})
	require.NoError(t, err)
	require.Equal(t, 1e-9, sub.got[3].MaxCostUSD)

	// No budget: no cap; not a session's conversation: untouched.
	_, _, err = turns.Submit(ctx, run.SubmitParams{Tenant: "t1", ConversationID: "conv_n"})
	require.NoError(t, err)
	require.Zero(t, sub.got[4].MaxCostUSD)
	require.Equal(t, SessionWebhook, sub.got[4].Webhook)
	_, _, err = turns.Submit(ctx, run.SubmitParams{Tenant: "t1", ConversationID: "conv_other"})
	require.NoError(t, err)
	require.Equal(t, run.SubmitParams{Tenant: "t1", ConversationID: "conv_other"}, sub.got[5])

	// Webhooks per tenant: one with its own endpoint, one whose entry
	// has none, and none configured at all.
	_, _, err = turns.Submit(ctx, run.SubmitParams{Tenant: "t2", ConversationID: "conv_n"})
	require.NoError(t, err)
	require.Equal(t, SessionWebhook, sub.got[6].Webhook)
	_, _, err = turns.Submit(ctx, run.SubmitParams{Tenant: "quiet", ConversationID: "conv_n"})
	require.NoError(t, err)
	require.Empty(t, sub.got[7].Webhook)
	turns.Webhooks = nil
	_, _, err = turns.Submit(ctx, run.SubmitParams{Tenant: "t1", ConversationID: "conv_n"})
	require.NoError(t, err)
	require.Empty(t, sub.got[8].Webhook)
}

func TestCents(t *testing.T) {
	for n, want := range map[money.Nanos]string{0: "0", 1: "1", 10_000_000: "1", 10_000_001: "2", 2_500_000_000: "250"} {
		require.Equal(t, Money{Amount: want, Currency: "USD"}, Cents(n), "%d", n)
	}
}

func TestSignWebhook(t *testing.T) {
	_, err := SignWebhook("secret", "id", "1", nil)
	require.Error(t, err)
	sig, err := SignWebhook("whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA==", "msg_1", "1700000000", []byte(`{}`))
	require.NoError(t, err)
	require.Regexp(t, `^v1,[A-Za-z0-9+/]{43}=$`, sig)
}
