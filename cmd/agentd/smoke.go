package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentd/agentd/internal/loadgen"
)

func cmdSmoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agentd smoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "demo", "agent to exercise")
	timeout := fs.Duration("timeout", 2*time.Minute, "timeout of each check")
	runs := fs.Bool("runs", true, "also check the async run API (needs a worker)")
	apiKey := fs.String("api-key", os.Getenv("AGENTD_API_KEY"), "client API key (defaults to $AGENTD_API_KEY; not needed with auth: none)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: agentd smoke [flags] URL", errUsage)
	}
	return loadgen.Smoke(ctx, loadgen.SmokeConfig{BaseURL: fs.Arg(0), Agent: *agent, Timeout: *timeout, Runs: *runs, APIKey: *apiKey}, stdout)
}
