package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRuntimeDefaultsAndDir(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "app"), 0o755))
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`agents:
  - name: hosted
    runtime:
      command: [sh, app.sh]
      dir: app
      env: {MODE: "${env:DEMO_MODE}"}
      memory_max: 512MiB
`), 0o600))
	cfg, err := Load(path, []string{"DEMO_MODE=fast"})
	require.NoError(t, err)
	rt := cfg.Agents[0].Runtime
	require.NotNil(t, rt)
	assert.Equal(t, "", cfg.Agents[0].Model, "a hosted program needs no model")
	assert.Equal(t, filepath.Join(dir, "app"), rt.Dir, "relative to the configuration file")
	assert.Equal(t, RuntimeProtocolSDKStreamJSON, rt.Protocol)
	assert.Equal(t, DefaultRuntimeMaxConcurrent, rt.MaxConcurrent)
	assert.Equal(t, DefaultRuntimeTimeout, rt.Timeout)
	assert.Equal(t, DefaultRuntimeKillGrace, rt.KillGrace)
	assert.Equal(t, ByteSize(512<<20), rt.MemoryMax)
	assert.Equal(t, "fast", rt.Env["MODE"], "env values resolve references")
}

func TestRuntimeValidation(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		rt    AgentRuntime
		field string
	}{
		"no command":      {AgentRuntime{}, "agents[0].runtime.command:"},
		"unknown program": {AgentRuntime{Command: []string{"no-such-program-agentd"}}, "agents[0].runtime.command[0]:"},
		"protocol":        {AgentRuntime{Command: []string{"sh"}, Protocol: "jsonrpc"}, "agents[0].runtime.protocol:"},
		"dir":             {AgentRuntime{Command: []string{"sh"}, Dir: filepath.Join(dir, "missing")}, "agents[0].runtime.dir:"},
		"max_concurrent":  {AgentRuntime{Command: []string{"sh"}, MaxConcurrent: -1}, "agents[0].runtime.max_concurrent:"},
		"timeout":         {AgentRuntime{Command: []string{"sh"}, Timeout: -time.Second}, "agents[0].runtime.timeout:"},
		"kill_grace":      {AgentRuntime{Command: []string{"sh"}, KillGrace: -time.Second}, "agents[0].runtime.kill_grace:"},
		"memory_max":      {AgentRuntime{Command: []string{"sh"}, MemoryMax: 1024}, "agents[0].runtime.memory_max:"},
		"reserved env":    {AgentRuntime{Command: []string{"sh"}, Env: map[string]string{"ANTHROPIC_BASE_URL": "x"}}, "agents[0].runtime.env.ANTHROPIC_BASE_URL:"},
	} {
		t.Run(name, func(t *testing.T) {
			rt := tc.rt
			cfg := &Config{Agents: []Agent{{Name: "a", Runtime: &rt}}}
			cfg.ApplyDefaults()
			assert.ErrorContains(t, cfg.Validate(), tc.field)
		})
	}
	// Without a runtime, model is still required.
	cfg := &Config{Agents: []Agent{{Name: "a"}}}
	cfg.ApplyDefaults()
	assert.ErrorContains(t, cfg.Validate(), "agents[0].model: required")
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "1024": 1024, "512MiB": 512 << 20, "2GiB": 2 << 30, "1 GB": 1e9, "10KB": 1e4} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "-1", "1.5GiB", "12XB", "99999999999GiB"} {
		_, err := ParseByteSize(in)
		assert.Error(t, err, in)
	}
}
