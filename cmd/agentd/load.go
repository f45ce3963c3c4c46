package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/loadgen"
)

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agentd load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "demo", "agent to chat with")
	message := fs.String("message", "hello from agentd load", "message text (a counter is appended)")
	stream := fs.Bool("stream", false, "use SSE streaming chats")
	rate := fs.Float64("rate", 10, "open-loop mode: chats started per second")
	duration := fs.Duration("duration", 30*time.Second, "open-loop mode: measured duration")
	warmup := fs.Duration("warmup", 2*time.Second, "open-loop mode: unmeasured warm-up")
	maxInFlight := fs.Int("max-in-flight", loadgen.DefaultMaxInFlight, "open-loop mode: chats in flight before new ones are dropped")
	concurrent := fs.Int("concurrent", 0, "hold mode: open this many chats at once (ramped over -ramp) and wait for all, instead of a fixed rate")
	ramp := fs.Duration("ramp", 5*time.Second, "hold mode: time over which the chats are opened")
	timeout := fs.Duration("timeout", 2*time.Minute, "timeout of one chat")
	pid := fs.Int("pid", 0, "report the peak RSS (VmHWM) of this process (agentd on the same machine)")
	maxErrors := fs.Float64("max-error-rate", 0, "exit non-zero when the share of failed chats is above this")
	messages := fs.Bool("messages", false, "send Anthropic Messages API calls (POST URL/v1/messages: agentd's gateway, a proxy or the sim) instead of chats")
	model := fs.String("model", "claude-sonnet-4-5", "messages mode: the model asked for")
	maxTokens := fs.Int("max-tokens", 64, "messages mode: max_tokens of each call")
	apiKey := fs.String("api-key", os.Getenv("AGENTD_API_KEY"), "client API key (defaults to $AGENTD_API_KEY; not needed with auth: none)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: agentd load [flags] URL (e.g. http://127.0.0.1:8080)", errUsage)
	}
	if !strings.HasPrefix(fs.Arg(0), "http://127.0.0.1") && !strings.HasPrefix(fs.Arg(0), "http://localhost") && os.Getenv("AGENTD_LOAD_ANY_HOST") == "" {
		return fmt.Errorf("%w: load targets 127.0.0.1 or localhost only (set AGENTD_LOAD_ANY_HOST=1 to override)", errUsage)
	}
	return loadgen.RunChatLoad(ctx, loadgen.ChatLoad{
		BaseURL: strings.TrimRight(fs.Arg(0), "/"), Agent: *agent, Message: *message, Stream: *stream,
		Messages: *messages, Model: *model, MaxTokens: *maxTokens, APIKey: *apiKey, Timeout: *timeout,
		Rate: *rate, Duration: *duration, Warmup: *warmup, MaxInFlight: *maxInFlight,
		Concurrent: *concurrent, Ramp: *ramp, PID: *pid, MaxErrorRate: *maxErrors,
	}, stdout)
}
