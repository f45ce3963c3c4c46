package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// eventAgents: "demo" may call the clock at once and the calculator after
// a user.tool_confirmation (approval_required: always_ask).
const eventAgents = `agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [clock, calculator]
    approval_required: [calculator]
worker:
  reclaim_interval: 200ms
  poll_interval: 50ms
`

// sessionStream follows a session's event stream in the background.
type sessionStream struct {
	t      *testing.T
	events chan anthropic.BetaManagedAgentsStreamSessionEventsUnion
	errc   chan error
}

func openStream(t *testing.T, c anthropic.Client, sessionID string, opts ...option.RequestOption) *sessionStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// A stream lives longer than the client's request timeout.
	opts = append([]option.RequestOption{option.WithRequestTimeout(10 * time.Minute)}, opts...)
	st := c.Beta.Sessions.Events.StreamEvents(ctx, sessionID, anthropic.BetaSessionEventStreamParams{
		EventDeltas: []anthropic.BetaManagedAgentsDeltaType{anthropic.BetaManagedAgentsDeltaTypeAgentMessage}}, opts...)
	s := &sessionStream{t: t, events: make(chan anthropic.BetaManagedAgentsStreamSessionEventsUnion, 1000), errc: make(chan error, 1)}
	go func() {
		for st.Next() {
			s.events <- st.Current()
		}
		s.errc <- st.Err()
	}()
	t.Cleanup(func() {
		cancel()
		_ = st.Close()
	})
	return s
}

// untilIdle reads events up to and including the next session.status_idle.
func (s *sessionStream) untilIdle() []anthropic.BetaManagedAgentsStreamSessionEventsUnion {
	s.t.Helper()
	var got []anthropic.BetaManagedAgentsStreamSessionEventsUnion
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-s.events:
			got = append(got, ev)
			if ev.Type == "session.status_idle" {
				return got
			}
		case err := <-s.errc:
			s.t.Fatalf("stream ended: %v (after %d events)", err, len(got))
		case <-timeout:
			s.t.Fatalf("no session.status_idle within 30s (got %s)", typesOf(got))
		}
	}
}

func typesOf(evs []anthropic.BetaManagedAgentsStreamSessionEventsUnion) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func firstOf(t *testing.T, evs []anthropic.BetaManagedAgentsStreamSessionEventsUnion, typ string) anthropic.BetaManagedAgentsStreamSessionEventsUnion {
	t.Helper()
	for _, e := range evs {
		if e.Type == typ {
			return e
		}
	}
	t.Fatalf("no %s in %v", typ, typesOf(evs))
	return anthropic.BetaManagedAgentsStreamSessionEventsUnion{}
}

func say(text string) anthropic.BetaSessionEventSendParams {
	return anthropic.BetaSessionEventSendParams{Events: []anthropic.BetaManagedAgentsEventParamsUnion{{
		OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{
			Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{{OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: text}}}}}}}
}

func confirm(toolUseID string, allow bool, why string) anthropic.BetaSessionEventSendParams {
	p := &anthropic.BetaManagedAgentsUserToolConfirmationEventParams{ToolUseID: toolUseID, Result: "allow"}
	if !allow {
		p.Result, p.DenyMessage = "deny", anthropic.String(why)
	}
	return anthropic.BetaSessionEventSendParams{Events: []anthropic.BetaManagedAgentsEventParamsUnion{{OfUserToolConfirmation: p}}}
}

// A session's turns through the SDK: messages streamed to end_turn, an
// agentd tool that runs at once, an always_ask tool allowed and denied
// through requires_action, the history listed with ListAutoPaging, and a
// stream resumed with Last-Event-ID.
func TestManagedSessionEventsSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManagedWith(t, backend, eventAgents)
		ctx := t.Context()
		c := b.Client
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}, EnvironmentID: env.ID})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)

		// 1. A message, streamed with its previews to end_turn.
		sent, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, say("hello there"))
		require.NoError(t, err)
		require.Len(t, sent.Data, 1)
		require.Equal(t, "user.message", sent.Data[0].Type)
		turn := stream.untilIdle()
		require.Equal(t, "user.message", turn[0].Type)
		require.Equal(t, sent.Data[0].ID, turn[0].ID)
		require.Equal(t, "session.status_running", turn[1].Type)
		msg := firstOf(t, turn, "agent.message").AsAgentMessage()
		require.NotEmpty(t, msg.Content[0].Text)
		start := firstOf(t, turn, "event_start").AsEventStart()
		require.Equal(t, msg.ID, start.Event.ID, "the preview is reconciled by the message")
		require.Equal(t, "event_delta", firstOf(t, turn, "event_delta").Type)
		span := firstOf(t, turn, "span.model_request_end").AsSpanModelRequestEnd()
		require.Positive(t, span.ModelUsage.OutputTokens)
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// 2. agentd's clock runs at once.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("what does the clock say"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		use := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "clock", use.Name)
		require.Equal(t, "agentd", use.MCPServerName)
		require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAllow, use.EvaluatedPermission)
		res := firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, use.ID, res.MCPToolUseID)
		require.False(t, res.IsError)
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// 3. The calculator asks: requires_action, then allow.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please use the calculator"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		ask := firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "calculator", ask.Name)
		require.Equal(t, anthropic.BetaManagedAgentsAgentEvaluatedPermissionAsk, ask.EvaluatedPermission)
		idle := turn[len(turn)-1].AsSessionStatusIdle()
		require.Equal(t, "requires_action", idle.StopReason.Type)
		require.Equal(t, []string{ask.ID}, idle.StopReason.EventIDs)
		got, err := c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, got.Status, "a session waiting for the client is idle")
		// (A message sent now would be queued behind the paused turn:
		// TestManagedSessionQueuesMessagesSDK.)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm("toolu_unknown", true, ""))
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "toolu_unknown")
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm(ask.ID, true, ""))
		require.NoError(t, err)
		turn = stream.untilIdle()
		require.Equal(t, "session.status_running", turn[0].Type)
		res = firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.Equal(t, ask.ID, res.MCPToolUseID)
		require.False(t, res.IsError)
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm(ask.ID, true, ""))
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "no tool call")

		// 4. Deny: the model sees the reason.
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("calculator again please"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		ask = firstOf(t, turn, "agent.mcp_tool_use").AsAgentMCPToolUse()
		require.Equal(t, "requires_action", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, confirm(ask.ID, false, "not today"))
		require.NoError(t, err)
		turn = stream.untilIdle()
		res = firstOf(t, turn, "agent.mcp_tool_result").AsAgentMCPToolResult()
		require.True(t, res.IsError)
		require.Contains(t, res.Content[0].Text, "not today")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)

		// 5. The history, page by page: the stream's events without the
		// previews, in the same order, each once.
		var history []anthropic.BetaManagedAgentsSessionEventUnion
		pager := c.Beta.Sessions.Events.ListAutoPaging(ctx, sess.ID, anthropic.BetaSessionEventListParams{Limit: anthropic.Int(7)})
		for pager.Next() {
			history = append(history, pager.Current())
		}
		require.NoError(t, pager.Err())
		seen := map[string]bool{}
		var users, idles int
		for _, h := range history {
			require.NotEqual(t, "event_delta", h.Type)
			require.False(t, seen[h.ID], "%s twice", h.ID)
			seen[h.ID] = true
			switch h.Type {
			case "user.message":
				users++
			case "session.status_idle":
				idles++
			}
		}
		require.Equal(t, 4, users)
		require.Equal(t, 6, idles, "four end_turns and two requires_action")
		require.Equal(t, "user.message", history[0].Type)

		// 6. A stream resumed after an event sends what came after it,
		// without repeats.
		mid := history[len(history)-4]
		resumed := openStream(t, c, sess.ID, option.WithHeader("Last-Event-ID", mid.ID))
		tail := resumed.untilIdle()
		var tailIDs, wantIDs []string
		for _, e := range tail {
			if e.Type != "event_start" && e.Type != "event_delta" {
				tailIDs = append(tailIDs, e.ID)
			}
		}
		for _, h := range history[len(history)-3:] {
			wantIDs = append(wantIDs, h.ID)
		}
		require.Equal(t, wantIDs, tailIDs)

		// Another tenant cannot send to, list or stream the session.
		_, err = b.Other.Beta.Sessions.Events.Send(ctx, sess.ID, say("hi"))
		apiError(t, err, http.StatusNotFound, "not_found_error")
		_, err = b.Other.Beta.Sessions.Events.List(ctx, sess.ID, anthropic.BetaSessionEventListParams{})
		apiError(t, err, http.StatusNotFound, "not_found_error")
	})
}

// user.interrupt stops a long turn: the model call never finishes, the
// turn ends idle (end_turn) without an answer, and the session takes the
// next message.
func TestManagedSessionInterruptSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManagedWith(t, backend, `providers:
  anthropic:
    sim_latency: 20s
agents:
  - name: slow
    model: claude-sonnet-4-5
worker:
  lease_ttl: 3s
  reclaim_interval: 200ms
  poll_interval: 50ms
`)
		ctx := t.Context()
		c := b.Client
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("slow")}, EnvironmentID: env.ID})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("take your time"))
		require.NoError(t, err)
		// The stream says the turn runs (a worker claimed it) before its
		// first checkpoint: its model call takes 20 s.
		var head []string
		deadline := time.After(15 * time.Second)
		for len(head) < 2 {
			select {
			case ev := <-stream.events:
				head = append(head, ev.Type)
			case <-deadline:
				t.Fatalf("no session.status_running (got %v)", head)
			}
		}
		require.Equal(t, []string{"user.message", "session.status_running"}, head)
		got, err := c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaManagedAgentsSessionStatusRunning, got.Status)
		start := time.Now()
		sent, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{
			Events: []anthropic.BetaManagedAgentsEventParamsUnion{{OfUserInterrupt: &anthropic.BetaManagedAgentsUserInterruptEventParams{}}}})
		require.NoError(t, err)
		require.Equal(t, "user.interrupt", sent.Data[0].Type)
		turn := stream.untilIdle()
		require.Less(t, time.Since(start), 15*time.Second, "the interrupt, not the model's 20 s, ended the turn")
		require.Equal(t, "end_turn", turn[len(turn)-1].AsSessionStatusIdle().StopReason.Type)
		for _, e := range turn {
			require.NotEqual(t, "agent.message", e.Type, "the interrupted call gave no answer")
		}
		// The run's row is final a moment after its last event.
		require.Eventually(t, func() bool {
			got, err = c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
			return err == nil && got.Status == anthropic.BetaManagedAgentsSessionStatusIdle
		}, 10*time.Second, 20*time.Millisecond)
	})
}
