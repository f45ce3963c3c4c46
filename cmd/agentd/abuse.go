package main

import (
	"log/slog"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
)

// buildAbuse returns the abuse detector of cfg.Abuse; nil when it is off.
// Its state is this instance's (not shared through Redis).
func buildAbuse(cfg *config.Config, metrics *observe.Metrics, log *slog.Logger) *abuse.Detector {
	a := cfg.Abuse
	if !a.Enabled {
		return nil
	}
	log.Info("abuse detection on", "window", a.Window.String(), "baseline", a.Baseline.String(), "multiple", a.Multiple,
		"min_requests_per_minute", a.MinRequestsPerMinute, "min_spend_usd_per_minute", a.MinSpendUSDPerMinute,
		"throttle_for", a.ThrottleFor.String(), "webhook", a.WebhookURL.Value() != "", "cluster_wide", false)
	return abuse.New(abuse.Config{
		Window: a.Window, Baseline: a.Baseline, Multiple: a.Multiple,
		MinRequests: a.MinRequestsPerMinute, MinSpendUSD: a.MinSpendUSDPerMinute, ThrottleFor: a.ThrottleFor,
		WebhookURL: a.WebhookURL.Value(), WebhookTimeout: a.WebhookTimeout,
		Metrics: abuse.NewMetrics(metrics.Registry), Log: log.With("component", "abuse"),
	})
}
