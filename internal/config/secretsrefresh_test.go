package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRefreshableSecrets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "crm"), "crm-one\n")
	writeFile(t, filepath.Join(dir, "pass"), "pass-one")
	path := filepath.Join(dir, "agentd.yaml")
	writeFile(t, path, `
secrets:
  crm: ${file:crm}
  basic: ${env:BASIC_USER}:${file:pass}
  from_env: ${env:WEATHER_KEY}
  literal: literal-value
  escaped: $${file:not-a-ref}
agents: [{name: a, model: m}]
`)
	cfg, err := Load(path, []string{"WEATHER_KEY=w-value", "BASIC_USER=bob"})
	require.NoError(t, err)
	assert.Equal(t, time.Duration(0), cfg.SecretsRefresh.PollInterval, "0: the tool layer's default (5s)")
	rs := cfg.RefreshableSecrets()
	require.Len(t, rs, 2, "only secrets that reference a file are re-read")
	assert.Equal(t, "basic", rs[0].Name)
	assert.Equal(t, []string{"pass"}, rs[0].Files)
	assert.Equal(t, "crm", rs[1].Name)
	assert.Equal(t, "crm-one", cfg.Secrets["crm"].Value())

	writeFile(t, filepath.Join(dir, "crm"), "crm-two\n")
	writeFile(t, filepath.Join(dir, "pass"), "pass-two")
	v, err := rs[1].Read()
	require.NoError(t, err)
	assert.Equal(t, "crm-two", v)
	v, err = rs[0].Read()
	require.NoError(t, err)
	assert.Equal(t, "bob:pass-two", v, "the ${env:} part keeps the load-time environment")

	require.NoError(t, os.Remove(filepath.Join(dir, "crm")))
	_, err = rs[1].Read()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "${file:crm}: open ")
	writeFile(t, filepath.Join(dir, "crm"), "\n")
	_, err = rs[1].Read()
	assert.EqualError(t, err, "empty value")

	assert.Empty(t, (&Config{}).RefreshableSecrets(), "a Config not from Load has none")
}

func TestSecretsRefreshValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	writeFile(t, path, `
secrets_refresh: {poll_interval: 10ms, grace: -1m}
agents: [{name: a, model: m}]
`)
	_, err := Load(path, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "secrets_refresh.poll_interval: must be at least 100ms")
	assert.Contains(t, err.Error(), "secrets_refresh.grace: must be >= 0")

	writeFile(t, path, "agents: [{name: a, model: m}]\n")
	_, err = Load(path, []string{"AGENTD_SECRETS_REFRESH_POLL_INTERVAL=-5s"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "secrets_refresh.poll_interval: must be >= 0")
	_, err = Load(path, []string{"AGENTD_SECRETS_REFRESH_POLL_INTERVAL=soon"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "AGENTD_SECRETS_REFRESH_POLL_INTERVAL (secrets_refresh.poll_interval): invalid duration")

	cfg, err := Load(path, []string{"AGENTD_SECRETS_REFRESH_POLL_INTERVAL=1m", "AGENTD_SECRETS_REFRESH_GRACE=1h"})
	require.NoError(t, err)
	assert.Equal(t, SecretsRefresh{PollInterval: time.Minute, Grace: time.Hour}, cfg.SecretsRefresh)
}
