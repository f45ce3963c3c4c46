package app

import (
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// A user.message sent while a session's turn runs is queued (Managed
// Agents: processed_at null, handled after the events before it), through
// the official SDK on both stores: the send succeeds at once, the running
// turn ends idle, then the queued message's turn runs and answers it; the
// history holds both turns in the order they were sent.
func TestManagedSessionQueuesMessagesSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManagedWith(t, backend, `providers:
  anthropic:
    sim_latency: 1500ms
agents:
  - name: demo
    model: claude-sonnet-4-5
worker:
  reclaim_interval: 200ms
  poll_interval: 50ms
`)
		ctx := t.Context()
		c := b.Client
		env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "e"})
		require.NoError(t, err)
		sess, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
			Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}, EnvironmentID: env.ID})
		require.NoError(t, err)
		stream := openStream(t, c, sess.ID)

		first, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, say("alpha first message"))
		require.NoError(t, err)
		require.False(t, first.Data[0].ProcessedAt.IsZero(), "an idle session takes the message at once")
		second, err := c.Beta.Sessions.Events.Send(ctx, sess.ID, say("bravo second message"))
		require.NoError(t, err, "a message to a running session is queued, not refused")
		require.Equal(t, "user.message", second.Data[0].Type)
		require.True(t, second.Data[0].ProcessedAt.IsZero(), "queued: processed_at null")
		require.Contains(t, second.RawJSON(), `"processed_at":null`)

		turn1 := stream.untilIdle()
		require.Equal(t, first.Data[0].ID, turn1[0].ID)
		require.Contains(t, agentMessageText(firstOf(t, turn1, "agent.message")), "alpha")
		require.Equal(t, "end_turn", turn1[len(turn1)-1].AsSessionStatusIdle().StopReason.Type)
		turn2 := stream.untilIdle()
		require.Equal(t, second.Data[0].ID, turn2[0].ID, "the queued message's turn comes next")
		require.Contains(t, agentMessageText(firstOf(t, turn2, "agent.message")), "bravo", "answered on its own turn")
		require.Equal(t, "end_turn", turn2[len(turn2)-1].AsSessionStatusIdle().StopReason.Type)

		var users []string
		pager := c.Beta.Sessions.Events.ListAutoPaging(ctx, sess.ID, anthropic.BetaSessionEventListParams{})
		for pager.Next() {
			if h := pager.Current(); h.Type == "user.message" {
				require.False(t, h.ProcessedAt.IsZero(), "processed once its turn ran")
				users = append(users, h.ID)
			}
		}
		require.NoError(t, pager.Err())
		require.Equal(t, []string{first.Data[0].ID, second.Data[0].ID}, users)
	})
}

// agentMessageText is the text of an agent.message event.
func agentMessageText(ev anthropic.BetaManagedAgentsStreamSessionEventsUnion) string {
	var sb strings.Builder
	for _, c := range ev.AsAgentMessage().Content {
		sb.WriteString(c.Text)
	}
	return sb.String()
}
