// Command managed-agents is a Claude Managed Agents program, written with
// anthropic-sdk-go, run against agentd: only the base URL and the API key
// (an agentd client key) say where it runs.
//
//	AGENTD_URL=http://127.0.0.1:8080 AGENTD_API_KEY=agd_... go run ./examples/managed-agents/go
//
// It creates an environment and an agent with a custom tool, opens a
// session, follows its event stream, answers the tool call, and prints a
// JSON summary of the turn (the TypeScript twin is ../ts/main.ts).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

type summary struct {
	SessionID    string   `json:"session_id"`
	ToolCalls    []string `json:"tool_calls"`
	Text         string   `json:"text"`
	StopReason   string   `json:"stop_reason"`
	Status       string   `json:"status"`
	InputTokens  int64    `json:"input_tokens"`
	OutputTokens int64    `json:"output_tokens"`
}

func main() {
	client := anthropic.NewClient(
		option.WithBaseURL(cmp.Or(os.Getenv("AGENTD_URL"), "http://127.0.0.1:8080")),
		option.WithAPIKey(os.Getenv("AGENTD_API_KEY")),
	)
	s, err := run(context.Background(), client)
	if err != nil {
		fmt.Fprintln(os.Stderr, "managed-agents:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(s)
}

func run(ctx context.Context, client anthropic.Client) (summary, error) {
	env, err := client.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "example"})
	if err != nil {
		return summary{}, err
	}
	agent, err := client.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{
		Name:   "weather",
		Model:  anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
		System: anthropic.String("You report the weather."),
		Tools: []anthropic.BetaAgentNewParamsToolUnion{{OfCustom: &anthropic.BetaManagedAgentsCustomToolParams{
			Name: "lookup", Description: "Looks up the weather in a city",
			InputSchema: anthropic.BetaManagedAgentsCustomToolInputSchemaParam{
				Properties: map[string]any{"q": map[string]any{"type": "string"}}, Required: []string{"q"}},
		}}},
	})
	if err != nil {
		return summary{}, err
	}
	sess, err := client.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
		Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agent.ID)}, EnvironmentID: env.ID})
	if err != nil {
		return summary{}, err
	}

	// Open the stream first, then send: nothing of the turn is missed.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := client.Beta.Sessions.Events.StreamEvents(sctx, sess.ID, anthropic.BetaSessionEventStreamParams{})
	defer stream.Close()
	_, err = client.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{
		Events: []anthropic.BetaManagedAgentsEventParamsUnion{{OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{
			Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{{
				OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "please lookup the weather in Oslo"}}}}}}})
	if err != nil {
		return summary{}, err
	}

	out := summary{SessionID: sess.ID, ToolCalls: []string{}}
	var text strings.Builder
	for out.StopReason == "" && stream.Next() {
		switch ev := stream.Current(); ev.Type {
		case "agent.custom_tool_use":
			use := ev.AsAgentCustomToolUse()
			out.ToolCalls = append(out.ToolCalls, use.Name)
			_, err := client.Beta.Sessions.Events.Send(ctx, sess.ID, anthropic.BetaSessionEventSendParams{
				Events: []anthropic.BetaManagedAgentsEventParamsUnion{{OfUserCustomToolResult: &anthropic.BetaManagedAgentsUserCustomToolResultEventParams{
					CustomToolUseID: use.ID,
					Content: []anthropic.BetaManagedAgentsUserCustomToolResultEventParamsContentUnion{{
						OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "sunny, 21 degrees"}}}}}}})
			if err != nil {
				return out, err
			}
		case "agent.message":
			for _, b := range ev.AsAgentMessage().Content {
				text.WriteString(b.Text)
			}
		case "session.status_idle":
			if r := ev.AsSessionStatusIdle().StopReason.Type; r != "requires_action" {
				out.StopReason = r
			}
		}
	}
	if out.StopReason == "" {
		return out, fmt.Errorf("stream ended before the turn did: %w", stream.Err())
	}
	out.Text = text.String()
	done, err := client.Beta.Sessions.Get(ctx, sess.ID, anthropic.BetaSessionGetParams{})
	if err != nil {
		return out, err
	}
	out.Status = string(done.Status)
	out.InputTokens, out.OutputTokens = done.Usage.InputTokens, done.Usage.OutputTokens
	return out, nil
}
