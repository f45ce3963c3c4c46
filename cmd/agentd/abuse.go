package main

import (
	"log/slog"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/abuse/abuseredis"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
	storeredis "github.com/agentd/agentd/internal/redis"
)

// buildAbuse returns the abuse detector of cfg.Abuse; nil when it is off.
// Counters are this instance's; throttles are shared through rc when there
// is one (run the detector's Run to sync them).
func buildAbuse(cfg *config.Config, rc *storeredis.Client, metrics *observe.Metrics, log *slog.Logger) *abuse.Detector {
	a := cfg.Abuse
	if !a.Enabled {
		return nil
	}
	log.Info("abuse detection on", "window", a.Window.String(), "baseline", a.Baseline.String(), "multiple", a.Multiple,
		"min_requests_per_minute", a.MinRequestsPerMinute, "min_spend_usd_per_minute", a.MinSpendUSDPerMinute,
		"throttle_for", a.ThrottleFor.String(), "webhook", a.WebhookURL.Value() != "", "shared_throttles", rc != nil)
	c := abuse.Config{
		Window: a.Window, Baseline: a.Baseline, Multiple: a.Multiple,
		MinRequests: a.MinRequestsPerMinute, MinSpendUSD: a.MinSpendUSDPerMinute, ThrottleFor: a.ThrottleFor,
		WebhookURL: a.WebhookURL.Value(), WebhookTimeout: a.WebhookTimeout,
		Metrics: abuse.NewMetrics(metrics.Registry), Log: log.With("component", "abuse"),
	}
	if rc != nil {
		c.Shared = abuseredis.New(rc.Raw(), "")
	}
	return abuse.New(c)
}
