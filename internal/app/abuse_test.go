package app

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
)

func TestBuildAbuse(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cfg := &config.Config{}
	cfg.ApplyDefaults()
	require.Nil(t, buildAbuse(cfg, nil, observe.NewMetrics("test"), log), "off by default")

	cfg.Abuse.Enabled = true
	cfg.Abuse.Multiple = 2
	cfg.Abuse.MinRequestsPerMinute = 1
	metrics := observe.NewMetrics("test")
	d := buildAbuse(cfg, nil, metrics, log)
	require.NotNil(t, d)
	// The configured multiple and floor apply: 2 × 1 per minute.
	ctx := context.Background()
	require.True(t, d.Allow(ctx, "acme", "key_a").Allowed)
	require.True(t, d.Allow(ctx, "acme", "key_a").Allowed)
	require.False(t, d.Allow(ctx, "acme", "key_a").Allowed)
	// Its metrics are on the instance's registry.
	mfs, err := metrics.Registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	require.True(t, names["agentd_abuse_flagged_total"])
	require.True(t, names["agentd_abuse_throttled_keys"])
	require.NoError(t, d.Run(ctx), "without Redis Run returns at once")
}
