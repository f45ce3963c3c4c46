package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPricing(t *testing.T) {
	load := func(t *testing.T, yaml string) (*Config, error) {
		t.Helper()
		p := filepath.Join(t.TempDir(), "agentd.yaml")
		require.NoError(t, os.WriteFile(p, []byte("agents:\n  - name: a\n    model: claude-sonnet-4-5\n"+yaml), 0o600))
		return Load(p, nil)
	}
	cfg, err := load(t, "pricing:\n  models:\n    claude-sonnet-4-5: {input: 2.5, output: 12, cache_write: 3, cache_read: 0.25}\n    my-model: {input: 1}\n")
	require.NoError(t, err)
	require.Equal(t, ModelPrice{Input: 2.5, Output: 12, CacheWrite: 3, CacheRead: 0.25}, cfg.Pricing.Models["claude-sonnet-4-5"])
	require.Equal(t, ModelPrice{Input: 1}, cfg.Pricing.Models["my-model"])

	_, err = load(t, "pricing:\n  models:\n    m: {input: -1}\n")
	require.ErrorContains(t, err, "pricing.models.m.input: must be a price >= 0")
	_, err = load(t, "pricing:\n  models:\n    m: {inptu: 1}\n")
	require.ErrorContains(t, err, "inptu")

	// No file entry: no overrides, and no environment variable either.
	cfg, err = load(t, "")
	require.NoError(t, err)
	require.Empty(t, cfg.Pricing.Models)
	for name := range EnvVars() {
		require.NotContains(t, name, "PRICING")
	}
}
