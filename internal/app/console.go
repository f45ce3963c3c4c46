package app

import (
	"fmt"
	"log/slog"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/console"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/observe"
	agentrun "github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
)

// mountConsole serves the operator console (/console) on api: the same
// store, health report and run event streams as the JSON API. Its charts
// sample this process's metrics (a loop of the group).
func (a *App) mountConsole(api *server.Server, cfg *config.Config, st Store, runs *agentrun.Runs, authn *auth.Authenticator,
	redactor *observe.Redactor, sessions *managed.Service, log *slog.Logger) error {
	cst, ok := st.(console.Store)
	if !ok {
		return fmt.Errorf("console: the store %T cannot find runs across tenants", st)
	}
	if cfg.Console.Disabled {
		return nil
	}
	sampler := &console.Sampler{Gatherer: a.metrics.Registry, Interval: cfg.Console.SampleInterval}
	a.addLoop("console-sampler", sampler.Run)
	var ss console.Sessions
	if sessions != nil { // a nil *managed.Service must not be a non-nil interface
		ss = sessions
	}
	c, err := console.New(console.Config{
		Sessions: ss,
		Store:    cst, Runs: runs, Approvals: runs, Auth: authn, Health: api.HealthReport, Events: api.StreamRunEvents,
		SessionEvents: api.StreamSessionEvents,
		Redactor:      redactor, Sampler: sampler, SessionTTL: cfg.Console.SessionTTL,
		SessionSecret: []byte(cfg.Console.SessionSecret.Value()), Log: log.With("component", "console"),
		Budgets: func(tenant string) (float64, float64) {
			b, ok := cfg.Budgets.Tenants[tenant]
			if !ok {
				b = cfg.Budgets.Tenant
			}
			return b.DailyUSD, b.MonthlyUSD
		},
	})
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	api.Mount(c)
	return nil
}
