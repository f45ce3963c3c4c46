package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// systemOf is the system prompt of a recorded Messages API request: its
// text, whether sent as a string or as blocks.
func systemOf(t *testing.T, body []byte) string {
	t.Helper()
	var req struct {
		System json.RawMessage `json:"system"`
	}
	require.NoError(t, json.Unmarshal(body, &req))
	var s string
	if json.Unmarshal(req.System, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(req.System, &blocks), "system %s", req.System)
	var sb strings.Builder
	for _, b := range blocks {
		sb.WriteString(b.Text)
	}
	return sb.String()
}

// startRecordedManaged starts agentd on backend against a recording
// simulator, with the configured agent demo (its system prompt: system).
func startRecordedManaged(t *testing.T, backend, system string) (*recordedSim, *managedBundle) {
	t.Helper()
	rs := startRecordedSim(t)
	if system != "" {
		system = "\n    system: " + system
	}
	return rs, startManagedWith(t, backend, fmt.Sprintf(`providers:
  anthropic:
    base_url: %q
    api_key: sim-key
    simulate: never
agents:
  - name: demo
    model: claude-sonnet-4-5%s
worker:
  reclaim_interval: 200ms
  poll_interval: 50ms
`, rs.URL, system))
}

// weatherSession is a session of a new agent with the custom tool lookup
// (its system prompt: system, if any).
func weatherSession(t *testing.T, c anthropic.Client, system string) *anthropic.BetaManagedAgentsSession {
	t.Helper()
	ctx := t.Context()
	p := anthropic.BetaAgentNewParams{Name: "weather", Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
		Tools: []anthropic.BetaAgentNewParamsToolUnion{customTool("lookup")}}
	if system != "" {
		p.System = anthropic.String(system)
	}
	agent, err := c.Beta.Agents.New(ctx, p)
	require.NoError(t, err)
	env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
	require.NoError(t, err)
	sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
		Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agent.ID)}, EnvironmentID: env.ID})
	require.NoError(t, err)
	return sess
}

func sessionHistory(t *testing.T, c anthropic.Client, sessionID string) []anthropic.BetaManagedAgentsSessionEventUnion {
	t.Helper()
	var out []anthropic.BetaManagedAgentsSessionEventUnion
	p := c.Beta.Sessions.Events.ListAutoPaging(t.Context(), sessionID, anthropic.BetaSessionEventListParams{})
	for p.Next() {
		out = append(out, p.Current())
	}
	require.NoError(t, p.Err())
	return out
}

func historyTypes(evs []anthropic.BetaManagedAgentsSessionEventUnion) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func userText(text string) anthropic.BetaManagedAgentsEventParamsUnion {
	return say(text).Events[0]
}

func systemText(text string) anthropic.BetaManagedAgentsEventParamsUnion {
	return anthropic.BetaManagedAgentsEventParamsOfSystemMessage([]anthropic.BetaManagedAgentsSystemContentBlockParam{{Text: text}})
}

// An image: a content block agentd refuses (text only).
func imageMessage() anthropic.BetaManagedAgentsUserMessageEventParams {
	return anthropic.BetaManagedAgentsUserMessageEventParams{Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{
		{OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "look"}},
		{OfImage: &anthropic.BetaManagedAgentsImageBlockParam{Source: anthropic.BetaManagedAgentsImageBlockSourceUnionParam{
			OfBase64: &anthropic.BetaManagedAgentsBase64ImageSourceParam{Data: "AA==", MediaType: "image/png"}}}}}}
}

// A system.message, through the official SDK on both stores: sent after a
// user.message it is echoed (in the send's answer, the stream and the
// history, right after its user.message) and its text is appended to the
// system prompt of that turn's model calls and of every later turn's, not
// of earlier ones (the simulator records each request); a system.message
// out of place, or a bad later event, refuses the whole send, which
// changes nothing; several initial_events are taken, the later messages
// queued behind the first turn, and a bad later one refuses the create,
// which stores nothing.
func TestManagedSessionSystemMessageSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		rs, b := startRecordedManaged(t, backend, "You are the demo.")
		ctx := t.Context()
		c := b.Client
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		demo := anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)
		const extra = "Answer in French."

		// 1. A turn before any system.message: the agent's prompt alone.
		n := rs.count()
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("zero turn"))
		require.NoError(t, err)
		stream.untilIdle()
		reqs := rs.since(n)
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			require.Equal(t, "You are the demo.", systemOf(t, r))
		}

		// 2. A user.message with a system.message: both echoed, and the
		// turn's model calls carry the text after the agent's prompt.
		n = rs.count()
		sent, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{
			Events: []anthropic.BetaManagedAgentsEventParamsUnion{userText("first turn"), systemText(extra)}})
		require.NoError(t, err)
		require.Len(t, sent.Data, 2)
		require.Equal(t, "user.message", sent.Data[0].Type)
		sm := sent.Data[1].AsSystemMessage()
		require.Equal(t, "system.message", sent.Data[1].Type)
		require.Equal(t, extra, sm.Content[0].Text)
		require.NotEmpty(t, sm.ID)
		require.False(t, sm.ProcessedAt.IsZero(), "an idle session takes it at once")
		turn := stream.untilIdle()
		require.Equal(t, []string{"user.message", "system.message"}, typesOf(turn[:2]))
		require.Equal(t, sm.ID, turn[1].ID)
		require.Equal(t, "end_turn", last(turn).AsSessionStatusIdle().StopReason.Type)
		reqs = rs.since(n)
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			require.Equal(t, "You are the demo.\n\n"+extra, systemOf(t, r))
		}

		// 3. The next turn keeps it; a second system.message is added
		// after it.
		n = rs.count()
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("second turn"))
		require.NoError(t, err)
		stream.untilIdle()
		for _, r := range rs.since(n) {
			require.Equal(t, "You are the demo.\n\n"+extra, systemOf(t, r))
		}
		n = rs.count()
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{
			Events: []anthropic.BetaManagedAgentsEventParamsUnion{userText("third turn"), systemText("Be brief.")}})
		require.NoError(t, err)
		stream.untilIdle()
		for _, r := range rs.since(n) {
			require.Equal(t, "You are the demo.\n\n"+extra+"\n\nBe brief.", systemOf(t, r))
		}
		h := sessionHistory(t, c, sess.ID)
		var sys []string
		for i, e := range h {
			if e.Type == "system.message" {
				require.Equal(t, "user.message", h[i-1].Type, "after the message it came with")
				require.False(t, e.ProcessedAt.IsZero())
				sys = append(sys, e.AsSystemMessage().Content[0].Text)
			}
		}
		require.Equal(t, []string{extra, "Be brief."}, sys)

		// 4. Refused whole, changing nothing: a system.message first, one
		// not last, and a bad later event after a good message.
		before := len(h)
		n = rs.count()
		for _, tc := range []struct {
			events []anthropic.BetaManagedAgentsEventParamsUnion
			want   string
		}{
			{[]anthropic.BetaManagedAgentsEventParamsUnion{systemText(extra), userText("x")}, "events[0]"},
			{[]anthropic.BetaManagedAgentsEventParamsUnion{userText("x"), systemText(extra), userText("y")}, "events[1]: a system.message must be the last event"},
			{[]anthropic.BetaManagedAgentsEventParamsUnion{userText("should not run"), {OfUserMessage: ptrTo(imageMessage())}}, "events[1].content[1]"},
			{[]anthropic.BetaManagedAgentsEventParamsUnion{userText("should not run"), {OfUserToolConfirmation: &anthropic.BetaManagedAgentsUserToolConfirmationEventParams{
				ToolUseID: "toolu_1", Result: "maybe"}}}, "events[1].result"},
		} {
			_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{Events: tc.events})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), tc.want)
		}
		time.Sleep(300 * time.Millisecond) // a turn queued by mistake would have started
		require.Len(t, sessionHistory(t, c, sess.ID), before, "no event was applied")
		require.Equal(t, n, rs.count(), "no model call")
		got, err := c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, got.Status)

		// 5. Several initial_events: the first message starts a turn, the
		// next is queued behind it, as a message sent to a running
		// session is.
		msg := func(text string) anthropic.BetaSessionNewParamsInitialEventUnion {
			return anthropic.BetaSessionNewParamsInitialEventUnion{OfUserMessage: userText(text).OfUserMessage}
		}
		two, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID,
			InitialEvents: []anthropic.BetaSessionNewParamsInitialEventUnion{msg("alpha first"), msg("bravo second")}})
		require.NoError(t, err)
		var h2 []anthropic.BetaManagedAgentsSessionEventUnion
		require.Eventually(t, func() bool {
			h2 = sessionHistory(t, c, two.ID)
			idle := 0
			for _, e := range h2 {
				if e.Type == "session.status_idle" {
					idle++
				}
			}
			return idle == 2
		}, 30*time.Second, 50*time.Millisecond, "two turns")
		var users, answers []string
		for _, e := range h2 {
			switch e.Type {
			case "user.message":
				users = append(users, e.AsUserMessage().Content[0].Text)
			case "agent.message":
				answers = append(answers, e.AsAgentMessage().Content[0].Text)
			}
		}
		require.Equal(t, []string{"alpha first", "bravo second"}, users, "%v", historyTypes(h2))
		require.Len(t, answers, 2)
		require.Contains(t, answers[0], "alpha")
		require.Contains(t, answers[1], "bravo", "each message answered on its own turn")

		// A bad later initial event refuses the create: no session.
		list, err := c.Beta.Sessions.List(ctx, anthropic.BetaSessionListParams{})
		require.NoError(t, err)
		sessions := len(list.Data)
		_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID,
			InitialEvents: []anthropic.BetaSessionNewParamsInitialEventUnion{msg("fine"), {OfUserMessage: ptrTo(imageMessage())}}})
		require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "initial_events[1].content[1]")
		list, err = c.Beta.Sessions.List(ctx, anthropic.BetaSessionListParams{})
		require.NoError(t, err)
		require.Len(t, list.Data, sessions, "nothing stored")
	})
}

func ptrTo[T any](v T) *T { return &v }

// A system.message after a user.custom_tool_result, through the official
// SDK on both stores: echoed after the result (in the send's answer, the
// stream and the history, under one id), its text is appended to the
// system prompt of the resumed turn's model calls (not of the call that
// asked for the tool) and of every later turn's. Before it, a request
// whose later event a session's state refuses (a second result for the
// call, an answer after a user.interrupt) is refused whole: the turn
// still waits, nothing was interrupted or resumed.
func TestManagedSystemMessageAfterCustomResultSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		rs, b := startRecordedManaged(t, backend, "")
		ctx := t.Context()
		c := b.Client
		sess := weatherSession(t, c, "You report the weather.")
		stream := openStream(t, c, sess.ID)
		const extra = "Answer in French."

		n := rs.count()
		_, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, say("please lookup the weather in Oslo"))
		require.NoError(t, err)
		turn := stream.untilIdle()
		use := firstOf(t, turn, "agent.custom_tool_use").AsAgentCustomToolUse()
		require.Equal(t, "requires_action", last(turn).AsSessionStatusIdle().StopReason.Type)
		for _, r := range rs.since(n) {
			require.Equal(t, "You report the weather.", systemOf(t, r))
		}

		// Refused whole by the session's state, changing nothing.
		result := customResult(use.ID, "sunny", false).Events[0]
		interrupt := anthropic.BetaManagedAgentsEventParamsUnion{OfUserInterrupt: &anthropic.BetaManagedAgentsUserInterruptEventParams{}}
		before := len(sessionHistory(t, c, sess.ID))
		n = rs.count()
		for _, tc := range []struct {
			events []anthropic.BetaManagedAgentsEventParamsUnion
			want   string
		}{
			// The first result resumes the turn: nothing waits after it.
			{[]anthropic.BetaManagedAgentsEventParamsUnion{result, result}, "events[1]: no custom tool call of this session waits for a result"},
			{[]anthropic.BetaManagedAgentsEventParamsUnion{interrupt, result}, "events[1]: no custom tool call of this session waits for a result"},
			{[]anthropic.BetaManagedAgentsEventParamsUnion{result, confirm(use.ID, true, "").Events[0]}, "events[1]: no tool call of this session waits for a confirmation"},
		} {
			_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{Events: tc.events})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), tc.want)
		}
		time.Sleep(300 * time.Millisecond) // a resumed or interrupted turn would have moved
		require.Len(t, sessionHistory(t, c, sess.ID), before, "no event was applied")
		require.Equal(t, n, rs.count(), "no model call")
		got, err := c.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
		require.NoError(t, err)
		require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, got.Status)

		// The result with a system.message: both echoed; the resumed
		// turn's model calls carry the text.
		n = rs.count()
		sent, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{
			Events: []anthropic.BetaManagedAgentsEventParamsUnion{result, systemText(extra)}})
		require.NoError(t, err)
		require.Equal(t, []string{"user.custom_tool_result", "system.message"}, []string{sent.Data[0].Type, sent.Data[1].Type})
		sm := sent.Data[1].AsSystemMessage()
		require.Equal(t, extra, sm.Content[0].Text)
		turn = stream.untilIdle()
		require.Equal(t, []string{"user.custom_tool_result", "system.message", "session.status_running"}, typesOf(turn[:3]))
		require.Equal(t, sent.Data[0].ID, turn[0].ID)
		require.Equal(t, sm.ID, turn[1].ID, "the stream shows it under the id its send answered")
		require.Equal(t, "end_turn", last(turn).AsSessionStatusIdle().StopReason.Type)
		reqs := rs.since(n)
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			require.Equal(t, "You report the weather.\n\n"+extra, systemOf(t, r))
		}

		// The next turn keeps it.
		n = rs.count()
		_, err = c.Beta.Sessions.Events.Send(ctx, sess.ID, say("and tomorrow?"))
		require.NoError(t, err)
		stream.untilIdle()
		reqs = rs.since(n)
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			require.Equal(t, "You report the weather.\n\n"+extra, systemOf(t, r))
		}
		h := sessionHistory(t, c, sess.ID)
		found := false
		for i, e := range h {
			if e.Type == "system.message" {
				require.Equal(t, "user.custom_tool_result", h[i-1].Type)
				require.Equal(t, sm.ID, e.ID)
				require.Equal(t, extra, e.AsSystemMessage().Content[0].Text)
				found = true
			}
		}
		require.True(t, found, "the history has the system.message: %v", historyTypes(h))
	})
}
