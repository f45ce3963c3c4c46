package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestManagedWebhookConfig(t *testing.T) {
	const key = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLWFnZW50ZA=="
	cfg, err := Load("testdata/minimal.good.yaml", []string{
		"AGENTD_MANAGED_WEBHOOK_URL=https://hooks.example.com/s?token=tok123456", "AGENTD_MANAGED_WEBHOOK_SIGNING_KEY=" + key})
	require.NoError(t, err)
	require.Equal(t, "https://hooks.example.com/s?token=tok123456", cfg.ManagedAgents.WebhookURL.Value())
	require.NotContains(t, cfg.Redacted(), "tok123456")
	require.NotContains(t, cfg.Redacted(), key)

	for name, env := range map[string][]string{
		"managed.webhook_signing_key": {"AGENTD_MANAGED_WEBHOOK_URL=https://hooks.example.com/s"},
		"managed.webhook_url":         {"AGENTD_MANAGED_WEBHOOK_URL=ftp://x", "AGENTD_MANAGED_WEBHOOK_SIGNING_KEY=" + key},
	} {
		_, err := Load("testdata/minimal.good.yaml", env)
		require.ErrorContains(t, err, name)
	}
	_, err = Load("testdata/minimal.good.yaml", []string{"AGENTD_MANAGED_WEBHOOK_SIGNING_KEY=c2VjcmV0"})
	require.ErrorContains(t, err, "managed.webhook_signing_key")
	require.NotContains(t, err.Error(), "c2VjcmV0")
}
