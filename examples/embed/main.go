// Command embed is a Go program with agentd inside: an agent defined in
// code with a tool written in Go, served over agentd's HTTP API, or asked
// one question in-process.
//
//	go run ./examples/embed                        # serve on 127.0.0.1:8080 until Ctrl-C
//	go run ./examples/embed -ask "Where is order A-17? Use order_status."
//
// Without ANTHROPIC_API_KEY the answers come from agentd's built-in Claude
// API simulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentd/agentd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

// orderInput is the order_status tool's input; agentd derives the JSON
// schema the model sees from it.
type orderInput struct {
	OrderID string `json:"order_id" jsonschema:"the order's id, e.g. A-17"`
}

// orderStatus is the Go tool: here a map, in a real program a database.
func orderStatus(_ context.Context, in orderInput) (string, error) {
	orders := map[string]string{"A-17": "shipped on 2026-12-01", "example": "packed, ships tomorrow"}
	status, ok := orders[in.OrderID]
	if !ok {
		return "", fmt.Errorf("no order %q", in.OrderID)
	}
	return status, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP listen address")
	store := fs.String("store", "sqlite://embed.db", "store URL (sqlite://PATH or postgres://...)")
	ask := fs.String("ask", "", "ask the agent this once, print the answer and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cfg := &agentd.Config{Agents: []agentd.Agent{{
		Name:   "support",
		Model:  "claude-sonnet-4-5",
		System: "You answer questions about orders. Look orders up with order_status.",
		Tools:  []string{"order_status", "clock"}, // a Go tool and a built-in one
	}}}
	cfg.Server.Addr = *addr
	cfg.Auth.Mode = "none" // a local demo; keep "keys" (the default) anywhere else
	cfg.Providers.Anthropic.APIKey = agentd.Secret(os.Getenv("ANTHROPIC_API_KEY"))
	cfg.Log.Level = "warn"

	tool, err := agentd.NewTool("order_status", "The status of an order.", orderStatus)
	if err != nil {
		return err
	}
	opts := []agentd.Option{agentd.WithTools(tool), agentd.WithStore(*store),
		agentd.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))}

	if *ask != "" {
		answer, err := agentd.Chat(ctx, cfg, agentd.ChatRequest{Agent: "support", Message: *ask}, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, answer.Text)
		fmt.Fprintf(stdout, "(%d model calls, $%s, conversation %s)\n", answer.Steps, answer.CostUSD, answer.ConversationID)
		return nil
	}

	srv, err := agentd.New(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serving agent support on http://%s (agentd chat -url http://%s support)\n", srv.Addr(), srv.Addr())
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
