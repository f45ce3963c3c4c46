package agentd_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/agentd/agentd"
)

// weatherInput is the input of the weather tool: its JSON schema (a
// required string "city" with a description) is derived from the struct.
type weatherInput struct {
	City string `json:"city" jsonschema:"the city, e.g. Paris"`
}

func weather(_ context.Context, in weatherInput) (string, error) {
	return "sunny, 21 °C in " + in.City, nil
}

// An agent defined in code calls a Go tool; agentd's built-in Claude API
// simulator plays the model (it calls the tool the message names, filling
// string inputs with "example", and quotes the tool's result).
func Example() {
	dir, err := os.MkdirTemp("", "agentd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := &agentd.Config{Agents: []agentd.Agent{{
		Name: "assistant", Model: "claude-sonnet-4-5", System: "You answer weather questions.",
		Tools: []string{"weather"},
	}}}
	cfg.Providers.Anthropic.Simulate = "always" // set APIKey (and drop this) for Claude
	cfg.Store.URL = "sqlite://" + filepath.Join(dir, "agentd.db")

	answer, err := agentd.Chat(context.Background(), cfg,
		agentd.ChatRequest{Agent: "assistant", Message: "What's the weather in Paris? Use the weather tool."},
		agentd.WithTools(agentd.MustTool("weather", "The current weather in a city.", weather)),
		agentd.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(answer.Text)
	fmt.Println(answer.Steps, "model calls")
	// Output:
	// Tool results: [weather] => "sunny, 21 °C in example"
	// 2 model calls
}

// NewTool derives the tool's input schema from the struct.
func ExampleNewTool() {
	t, err := agentd.NewTool("weather", "The current weather in a city.", weather)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Name(), string(t.InputSchema()))
	// Output:
	// weather {"type":"object","properties":{"city":{"type":"string","description":"the city, e.g. Paris"}},"required":["city"],"additionalProperties":false}
}

// A Server serves agentd's HTTP API (chat, runs, events, usage, /metrics)
// from inside the program, and runs turns in-process while it does.
func ExampleServer() {
	dir, err := os.MkdirTemp("", "agentd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := &agentd.Config{Agents: []agentd.Agent{{Name: "assistant", Model: "claude-sonnet-4-5"}}}
	cfg.Server.Addr = "127.0.0.1:0" // any free port; Addr() tells which
	cfg.Server.DrainDelay = time.Millisecond
	cfg.Providers.Anthropic.Simulate = "always"
	ctx := context.Background()
	srv, err := agentd.New(ctx, cfg, agentd.WithStore("sqlite://"+filepath.Join(dir, "agentd.db")),
		agentd.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	first, err := srv.Chat(ctx, agentd.ChatRequest{Agent: "assistant", Message: "Hello"})
	if err != nil {
		log.Fatal(err)
	}
	second, err := srv.Chat(ctx, agentd.ChatRequest{Agent: "assistant", Message: "Again",
		ConversationID: first.ConversationID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Text)
	fmt.Println(second.Text)
	fmt.Println(second.ConversationID == first.ConversationID)

	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-done)
	// Output:
	// Simulated answer to: Hello lorem ipsum dolor sit amet consectetur adipiscing elit.
	// Simulated answer to: Again lorem ipsum dolor sit amet consectetur adipiscing elit.
	// true
	// <nil>
}
