package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAbuseDefaults(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, Abuse{
		Window: time.Minute, Baseline: time.Hour, Multiple: 10, MinRequestsPerMinute: 10,
		MinSpendUSDPerMinute: 0.10, ThrottleFor: 15 * time.Minute, WebhookTimeout: 5 * time.Second,
	}, cfg.Abuse, "off by default, with every default filled in")
}

func TestAbuseFromFileAndEnv(t *testing.T) {
	cfg, err := Load("testdata/abuse.good.yaml", []string{"ABUSE_HOOK_TOKEN=tok123456", "AGENTD_ABUSE_MULTIPLE=12"})
	require.NoError(t, err)
	require.Equal(t, Abuse{
		Enabled: true, Window: 30 * time.Second, Baseline: 2 * time.Hour, Multiple: 12, MinRequestsPerMinute: 20,
		MinSpendUSDPerMinute: 0.5, ThrottleFor: 30 * time.Minute,
		WebhookURL: "https://hooks.example.com/agentd?token=tok123456", WebhookTimeout: 2 * time.Second,
	}, cfg.Abuse)
	// The webhook URL is a secret: masked when printed, scrubbed from logs.
	require.NotContains(t, cfg.Redacted(), "tok123456")
	require.Contains(t, cfg.AllSecretValues(), "https://hooks.example.com/agentd?token=tok123456")
}

func TestAbuseWebhookNotInError(t *testing.T) {
	_, err := Load("testdata/abuse-webhook.bad.yaml", nil)
	require.ErrorContains(t, err, "abuse.webhook_url")
	require.NotContains(t, err.Error(), "hunter22")
}
