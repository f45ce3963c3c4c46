package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/agentd/agentd/internal/app"
)

// cmdServe is `agentd serve [-config FILE] [-role all|api|worker]`: the
// process internal/app builds and runs.
func cmdServe(ctx context.Context, args []string, stderr io.Writer, environ []string) error {
	started := time.Now()
	role := getenvDefault(environ, "AGENTD_ROLE", app.RoleAll)
	cfg, err := loadConfigFlags("serve", args, stderr, environ, func(fs *flag.FlagSet) {
		fs.StringVar(&role, "role", role, "all (API and worker), api (never executes queued runs) or worker (health and metrics HTTP only)")
	})
	if err != nil {
		return err
	}
	if role != app.RoleAll && role != app.RoleAPI && role != app.RoleWorker {
		return fmt.Errorf("%w: -role must be all, api or worker, not %q", errUsage, role)
	}
	a, err := app.New(ctx, cfg, app.Options{Role: role, Version: buildVersion(), LogOutput: stderr, Started: started})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
