package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// webhookKey signs the sessions' webhooks in these tests.
const webhookKey = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA=="

// hookSink receives webhooks and keeps the ones the SDK's
// client.Beta.Webhooks.Unwrap verifies under its key (the others fail the
// test, as do events of a tenant other than its own, when it has one).
type hookSink struct {
	URL    string
	events chan anthropic.UnwrapWebhookEvent
}

func newHookSink(t *testing.T) *hookSink {
	t.Helper()
	return newTenantHookSink(t, webhookKey, "")
}

// newTenantHookSink is a hookSink that verifies under key and takes the
// events of tenant's sessions only ("": of every tenant).
func newTenantHookSink(t *testing.T, key, tenant string) *hookSink {
	t.Helper()
	verifier := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithWebhookKey(key), option.WithAPIKey("unused"))
	s := &hookSink{events: make(chan anthropic.UnwrapWebhookEvent, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := verifier.Beta.Webhooks.Unwrap(body, r.Header)
		if err != nil {
			t.Errorf("webhook does not verify: %v: %s", err, body)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if tenant != "" && ev.Data.OrganizationID != tenant {
			t.Errorf("webhook of tenant %s's session at tenant %s's endpoint: %s", ev.Data.OrganizationID, tenant, body)
		}
		s.events <- *ev
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/hooks"
	return s
}

// next returns the next webhook of session id (others are skipped).
func (s *hookSink) next(t *testing.T, sessionID string) anthropic.UnwrapWebhookEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-s.events:
			if ev.Data.ID == sessionID {
				return ev
			}
		case <-timeout:
			t.Fatalf("no webhook for session %s within 30s", sessionID)
		}
	}
}

// A session's usage and cost, its budget, and its signed webhooks, through
// the SDK: usage is the sum of its model calls (as the history's spans
// report them), cost_usd is agentd's price; a budget too small for a model
// call stops the turn before it (budget_reached, no model call); the
// webhooks session.status_idled, session.budget_reached and
// session.status_terminated arrive signed as the SDK verifies them; a
// session's initial_events start its first turn.
func TestManagedSessionUsageBudgetWebhooksSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		sink := newHookSink(t)
		b := startManagedWith(t, backend, eventAgents+fmt.Sprintf(`managed:
  webhook_url: %q
  webhook_signing_key: %q
`, sink.URL, webhookKey))
		ctx := t.Context()
		c := b.Client
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		demo := anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}

		// 1. Usage: a session with two turns (the second calls the clock:
		// two model calls) reports what its spans report.
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID})
		require.NoError(t, err)
		require.Zero(t, sess.Usage.InputTokens)
		stream := openStream(t, c, sess.ID)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("hello there"))
		require.NoError(t, err)
		require.Equal(t, "end_turn", last(stream.untilIdle()).AsSessionStatusIdle().StopReason.Type)
		require.Equal(t, "session.status_idled", string(sink.next(t, sess.ID).Data.Type))
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("what does the clock say"))
		require.NoError(t, err)
		require.Equal(t, "end_turn", last(stream.untilIdle()).AsSessionStatusIdle().StopReason.Type)
		require.Equal(t, "session.status_idled", string(sink.next(t, sess.ID).Data.Type))

		var in, out, calls int64
		pager := c.Beta.Sessions.Events.ListAutoPaging(ctx, sess.ID, anthropic.BetaSessionEventListParams{})
		for pager.Next() {
			if ev := pager.Current(); ev.Type == "span.model_request_end" {
				u := ev.AsSpanModelRequestEnd().ModelUsage
				in, out, calls = in+u.InputTokens, out+u.OutputTokens, calls+1
			}
		}
		require.NoError(t, pager.Err())
		require.Equal(t, int64(3), calls)
		require.Positive(t, in)
		got := &anthropic.BetaManagedAgentsSession{}
		// Usage rows are written in batches (every 100 ms).
		require.Eventually(t, func() bool {
			got, err = c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
			require.NoError(t, err)
			return got.Usage.InputTokens == in && got.Usage.OutputTokens == out
		}, 10*time.Second, 50*time.Millisecond, "spans: in %d out %d", in, out)
		require.Positive(t, got.Usage.ActiveSeconds)
		require.Equal(t, got.Usage.ActiveSeconds, got.Stats.ActiveSeconds)
		cost, ok := got.Usage.JSON.ExtraFields["cost_usd"]
		require.True(t, ok, "cost_usd: %s", got.Usage.RawJSON())
		var usd float64
		require.NoError(t, json.Unmarshal([]byte(cost.Raw()), &usd))
		require.Positive(t, usd, "the simulator's model is priced")
		cents, err := strconv.ParseInt(got.Usage.ListCost.Amount, 10, 64)
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaCurrency("USD"), got.Usage.ListCost.Currency)
		require.GreaterOrEqual(t, float64(cents)/100, usd, "list_cost rounds up")
		require.Less(t, float64(cents-1)/100, usd)

		// 2. A budget of one cent: a model call's worst case does not
		// fit, so the turn stops before it.
		capped, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID,
			Budget: anthropic.BetaManagedAgentsBudgetLimitParam{MaxListCost: anthropic.BetaMonetaryAmountParam{Amount: "1", Currency: "USD"}}})
		require.NoError(t, err)
		require.Equal(t, "1", capped.Budget.MaxListCost.Amount)
		cstream := openStream(t, c, capped.ID)
		_, err = c.Beta.Sessions.Events.Send(ctx, capped.ID, say("hello there"))
		require.NoError(t, err)
		turn := cstream.untilIdle()
		require.Equal(t, "budget_reached", last(turn).AsSessionStatusIdle().StopReason.Type, "%v", typesOf(turn))
		for _, e := range turn {
			require.NotEqual(t, "span.model_request_end", e.Type, "no model call was made")
		}
		require.Equal(t, "session.budget_reached", string(sink.next(t, capped.ID).Data.Type))
		idled := sink.next(t, capped.ID)
		require.Equal(t, "session.status_idled", string(idled.Data.Type))
		require.Equal(t, "event", string(idled.Type))
		require.NotEmpty(t, idled.ID)
		got, err = c.Beta.Sessions.Get(ctx, capped.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Zero(t, got.Usage.InputTokens)
		require.Equal(t, "0", got.Usage.ListCost.Amount)

		// 3. Archived: session.status_terminated.
		_, err = c.Beta.Sessions.Archive(ctx, sess.ID, anthropic.BetaSessionArchiveParams{})
		require.NoError(t, err)
		require.Equal(t, "session.status_terminated", string(sink.next(t, sess.ID).Data.Type))

		// 4. initial_events: the first turn starts with the session.
		first, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID,
			InitialEvents: []anthropic.BetaSessionNewParamsInitialEventUnion{{OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{
				Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{{OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "good morning"}}}}}}})
		require.NoError(t, err)
		require.Equal(t, "session.status_idled", string(sink.next(t, first.ID).Data.Type))
		var history []anthropic.BetaManagedAgentsSessionEventUnion
		hp := c.Beta.Sessions.Events.ListAutoPaging(ctx, first.ID, anthropic.BetaSessionEventListParams{})
		for hp.Next() {
			history = append(history, hp.Current())
		}
		require.NoError(t, hp.Err())
		require.Equal(t, "user.message", history[0].Type)
		require.Equal(t, "good morning", history[0].AsUserMessage().Content[0].Text)
		require.Equal(t, "session.status_idle", history[len(history)-1].Type)
		// A turn that pauses for a confirmation (always_ask) goes idle too.
		_, err = c.Beta.Sessions.Events.Send(ctx, first.ID, say("please use the calculator"))
		require.NoError(t, err)
		require.Equal(t, "session.status_idled", string(sink.next(t, first.ID).Data.Type))
		paused, err := c.Beta.Sessions.Get(ctx, first.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, paused.Status)

		// Refused: an outcome among the initial events (the session is
		// not created), and a system.message without the user.message it
		// accompanies (managed_system_test.go has the rest).
		msg := anthropic.BetaSessionNewParamsInitialEventUnion{OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{
			Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{{OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "x"}}}}}
		_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID,
			InitialEvents: []anthropic.BetaSessionNewParamsInitialEventUnion{msg, {OfUserDefineOutcome: &anthropic.BetaManagedAgentsUserDefineOutcomeEventParams{
				Description: "done"}}}})
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "initial_events[1]: user.define_outcome is not supported")
		_, err = c.Beta.Sessions.Events.Send(ctx, first.ID, anthropic.BetaSessionEventSendParams{Events: []anthropic.BetaManagedAgentsEventParamsUnion{
			anthropic.BetaManagedAgentsEventParamsOfSystemMessage([]anthropic.BetaManagedAgentsSystemContentBlockParam{{Text: "be brief"}})}})
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "events[0]: a system.message accompanies a user.message")
	})
}

func last(evs []anthropic.BetaManagedAgentsStreamSessionEventsUnion) anthropic.BetaManagedAgentsStreamSessionEventsUnion {
	return evs[len(evs)-1]
}
