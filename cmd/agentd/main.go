// Command agentd serves Claude agents in production. main only wires the
// process to run; everything else is in run and the internal packages.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	agentrun "github.com/agentd/agentd/internal/run"
)

func main() {
	if agentrun.IsSupervisor() {
		// A hosted agent program's supervisor (agents[].runtime).
		os.Exit(agentrun.Supervise())
	}
	agentrun.EnableSupervisor()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "agentd:", err)
		os.Exit(1)
	}
}
