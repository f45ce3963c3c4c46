package config

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary YAML (and one AGENTD_* override) to the config
// loader, including the webhook settings (abuse.webhook_url,
// budgets.alert_webhook). It must never panic; an error names its source;
// a configuration it accepts validates again after loading.
// It calls Parse, the loader behind Load, on the bytes: no file is
// written per input. References to files outside the temp dir are
// skipped (a fuzzed ${file:/dev/stdin} would block the worker, not find a
// bug).
// Seeds: testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("server:\n  addr: 127.0.0.1:0\nagents:\n  - name: demo\n    model: claude-sonnet-4-5\n"), "AGENTD_LOG_LEVEL=debug")
	f.Add([]byte("abuse:\n  enabled: true\n  webhook_url: http://127.0.0.1:9/hook\n  webhook_timeout: 1s\n"), "")
	f.Add([]byte("budgets:\n  alert_webhook: ${env:HOOK}\n"), "HOOK=ftp://x")
	f.Add([]byte("store:\n  url: postgres://u@h:1/db?sslmode=disable\nworker:\n  lease_ttl: -1s\n"), "AGENTD_WORKER_CONCURRENCY=x")
	f.Add([]byte("agents: [{name: a, model: m, tools: [clock], max_steps: 99999999999999999999}]\n"), "")
	f.Add([]byte("a: &a [*a, *a]\n"), "")
	// One empty directory for every input: relative ${file:...}
	// references resolve in it (and find nothing) without file I/O to set
	// up per input.
	dir := f.TempDir()
	path := filepath.Join(dir, "agentd.yaml")
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		for _, bad := range []string{"file:/", "file:.", "file:~", "/dev", "/proc", "/sys"} {
			if bytes.Contains(data, []byte(bad)) || strings.Contains(env, bad) {
				t.Skip("a file reference outside the temp dir")
			}
		}
		cfg, err := Parse(data, path, dir, []string{env})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config") {
				t.Fatalf("error does not name the config: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a loaded config no longer validates: %v", err)
		}
	})
}
