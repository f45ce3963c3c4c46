package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"
)

// header reads the leading comment lines of a testdata file:
// "# error: <substring>" (first line, .bad.yaml only) and "# env: K=V".
func header(t *testing.T, path string) (wantErr string, env []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	for i, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		if s, ok := strings.CutPrefix(line, "# error: "); ok {
			require.Equal(t, 0, i, "# error: must be the first line")
			wantErr = s
		}
		if s, ok := strings.CutPrefix(line, "# env: "); ok {
			env = append(env, s)
		}
	}
	return wantErr, env
}

func TestTestdata(t *testing.T) {
	good, err := filepath.Glob("testdata/*.good.yaml")
	require.NoError(t, err)
	bad, err := filepath.Glob("testdata/*.bad.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, good)
	require.NotEmpty(t, bad)

	for _, path := range good {
		t.Run(filepath.Base(path), func(t *testing.T) {
			wantErr, env := header(t, path)
			require.Empty(t, wantErr, "a .good.yaml file must not have # error:")
			cfg, err := Load(path, env)
			require.NoError(t, err)
			require.NotNil(t, cfg)
			require.NoError(t, cfg.Validate())
		})
	}
	for _, path := range bad {
		t.Run(filepath.Base(path), func(t *testing.T) {
			wantErr, env := header(t, path)
			require.NotEmpty(t, wantErr, "a .bad.yaml file needs a first line # error: <substring>")
			cfg, err := Load(path, env)
			require.Error(t, err)
			assert.Nil(t, cfg)
			assert.Contains(t, err.Error(), wantErr)
		})
	}
}

func TestDefaultsApplied(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yaml", nil)
	require.NoError(t, err)

	assert.Equal(t, DefaultServerAddr, cfg.Server.Addr)
	assert.Equal(t, DefaultAuthCacheTTL, cfg.Auth.CacheTTL)
	assert.EqualValues(t, DefaultMaxBodyBytes, cfg.Server.MaxBodyBytes)
	assert.Equal(t, DefaultReadHeaderTimeout, cfg.Server.ReadHeaderTimeout)
	assert.Equal(t, DefaultReadTimeout, cfg.Server.ReadTimeout)
	assert.Zero(t, cfg.Server.WriteTimeout)
	assert.Equal(t, DefaultIdleTimeout, cfg.Server.IdleTimeout)
	assert.Equal(t, DefaultDrainTimeout, cfg.Server.DrainTimeout)
	assert.Equal(t, DefaultSSEPingInterval, cfg.Server.SSEPingInterval)
	assert.Equal(t, DefaultStoreURL, cfg.Store.URL)
	assert.Equal(t, DefaultConversationTTL, cfg.Store.ConversationTTL)
	assert.Equal(t, DefaultSweepInterval, cfg.Store.SweepInterval)
	assert.Equal(t, Retention{
		RunEvents: 7 * 24 * time.Hour, Checkpoints: 7 * 24 * time.Hour, Runs: 30 * 24 * time.Hour,
		Usage: 90 * 24 * time.Hour, Audit: 365 * 24 * time.Hour, AgentDefinitions: 7 * 24 * time.Hour,
		Interval: 10 * time.Minute, BatchSize: 1000,
	}, cfg.Retention)
	an := cfg.Providers.Anthropic
	assert.Equal(t, DefaultAnthropicBaseURL, an.BaseURL)
	assert.Empty(t, an.APIKey.Value())
	assert.Equal(t, DefaultModelRequestTimeout, an.RequestTimeout)
	assert.Equal(t, SimulateAuto, an.Simulate)
	assert.Zero(t, an.SimLatency)
	assert.Equal(t, "info", cfg.Log.Level)
	assert.Equal(t, "json", cfg.Log.Format)

	require.Len(t, cfg.Agents, 1)
	a := cfg.Agents[0]
	assert.Equal(t, "a", a.Name)
	assert.Equal(t, "claude-sonnet-4-5", a.Model)
	assert.Empty(t, a.System)
	assert.Empty(t, a.Tools)
	assert.Equal(t, DefaultAgentMaxSteps, a.MaxSteps)
	assert.Equal(t, DefaultAgentMaxTokens, a.MaxTokens)
	assert.Equal(t, DefaultAgentTimeout, a.Timeout)
	assert.Equal(t, DefaultAgentMaxMessages, a.MaxMessages)
	assert.Equal(t, PolicyReject, a.ConcurrencyPolicy)
}

func TestApplyDefaultsKeepsNegativeAndSetValues(t *testing.T) {
	cfg := &Config{
		Server: Server{ReadTimeout: -time.Second, Addr: ":1"},
		Agents: []Agent{{Name: "a", Model: "m", MaxSteps: -1, MaxTokens: 7}},
	}
	cfg.ApplyDefaults()
	assert.Equal(t, -time.Second, cfg.Server.ReadTimeout)
	assert.Equal(t, ":1", cfg.Server.Addr)
	assert.Equal(t, -1, cfg.Agents[0].MaxSteps)
	assert.Equal(t, 7, cfg.Agents[0].MaxTokens)
	assert.Equal(t, DefaultAgentTimeout, cfg.Agents[0].Timeout)

	err := cfg.Validate()
	require.Error(t, err)
	assert.Equal(t, "server.read_timeout: must be > 0\nagents[0].max_steps: must be > 0", err.Error())
}

func TestFullFileValues(t *testing.T) {
	cfg, err := Load("testdata/full.good.yaml", nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9090", cfg.Server.Addr)
	assert.EqualValues(t, 2048, cfg.Server.MaxBodyBytes)
	assert.Equal(t, 3*time.Second, cfg.Server.WriteTimeout)
	assert.Equal(t, 24*time.Hour, cfg.Store.ConversationTTL)
	assert.Equal(t, "sk-literal", cfg.Providers.Anthropic.APIKey.Value())
	assert.Equal(t, 50*time.Millisecond, cfg.Providers.Anthropic.SimLatency)
	assert.Equal(t, "debug", cfg.Log.Level)
	require.Len(t, cfg.Agents, 2)
	assert.Equal(t, "Price is ${env:NOT_A_REF} and ${plain} stays.", cfg.Agents[0].System)
	assert.Equal(t, []string{"clock"}, cfg.Agents[0].Tools)
	assert.Equal(t, 1000, cfg.Agents[0].MaxSteps)
	assert.Equal(t, DefaultAgentMaxSteps, cfg.Agents[1].MaxSteps)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := Load("testdata/multiple.bad.yaml", nil)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "\nserver.addr: \"nope\" is not host:port\n")
	assert.True(t, strings.HasSuffix(msg, "\nagents[0].max_tokens: must be > 0"), msg)
	assert.True(t, strings.HasPrefix(msg, "config testdata/multiple.bad.yaml is invalid:\n"), msg)
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Load("testdata/env-overrides.good.yaml", []string{
		"AGENTD_LOG_LEVEL=warn",
		"AGENTD_SERVER_MAX_BODY_BYTES=4096",
		"AGENTD_SERVER_READ_TIMEOUT=45s",
		"AGENTD_PROVIDERS_ANTHROPIC_SIMULATE=never",
		"AGENTD_PROVIDERS_ANTHROPIC_API_KEY=${env:KEY}", // references in overrides are resolved
		"AGENTD_STORE_URL=sqlite://first.db",
		"AGENTD_STORE_URL=sqlite://second.db", // later entries win
		"KEY=sk-from-env",
		"AGENTD_AGENTS=ignored", // lists have no override
		"NOT_AN_ASSIGNMENT",
	})
	require.NoError(t, err)
	assert.Equal(t, "warn", cfg.Log.Level)
	assert.EqualValues(t, 4096, cfg.Server.MaxBodyBytes)
	assert.Equal(t, 45*time.Second, cfg.Server.ReadTimeout)
	assert.Equal(t, SimulateNever, cfg.Providers.Anthropic.Simulate)
	assert.Equal(t, "sk-from-env", cfg.Providers.Anthropic.APIKey.Value())
	assert.Equal(t, "sqlite://second.db", cfg.Store.URL)
}

// TestRetentionAgentDefinitions: retention.agent_definitions is set from
// the file or AGENTD_RETENTION_AGENT_DEFINITIONS, and less than a day fails
// the load naming the field.
func TestRetentionAgentDefinitions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	writeFile(t, path, "retention:\n  agent_definitions: 48h\nagents:\n  - name: a\n    model: m\n")
	cfg, err := Load(path, nil)
	require.NoError(t, err)
	assert.Equal(t, 48*time.Hour, cfg.Retention.AgentDefinitions)

	cfg, err = Load(path, []string{"AGENTD_RETENTION_AGENT_DEFINITIONS=720h"})
	require.NoError(t, err)
	assert.Equal(t, 720*time.Hour, cfg.Retention.AgentDefinitions)

	for _, bad := range []string{"1h", "23h59m", "-48h"} {
		_, err = Load(path, []string{"AGENTD_RETENTION_AGENT_DEFINITIONS=" + bad})
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "retention.agent_definitions: must be >= 24h", bad)
	}
}

func TestEnvOverrideBeatsFileAndEmptyResetsToDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	writeFile(t, path, "log:\n  level: debug\n  format: text\nagents:\n  - name: a\n    model: m\n")
	cfg, err := Load(path, []string{"AGENTD_LOG_LEVEL=error", "AGENTD_LOG_FORMAT="})
	require.NoError(t, err)
	assert.Equal(t, "error", cfg.Log.Level)
	assert.Equal(t, DefaultLogFormat, cfg.Log.Format)
}

func TestEnvBadValuesAreAllReported(t *testing.T) {
	_, err := Load("testdata/minimal.good.yaml", []string{
		"AGENTD_SERVER_IDLE_TIMEOUT=10",
		"AGENTD_AGENTS_0_MAX_STEPS=3", // not a variable: ignored
		"AGENTD_SERVER_MAX_BODY_BYTES=lots",
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `AGENTD_SERVER_IDLE_TIMEOUT (server.idle_timeout): invalid duration "10"`)
	assert.Contains(t, err.Error(), `AGENTD_SERVER_MAX_BODY_BYTES (server.max_body_bytes): invalid integer "lots"`)
}

func TestEnvVars(t *testing.T) {
	vars := EnvVars()
	want := map[string]string{
		"AGENTD_SERVER_ADDR":                     "server.addr",
		"AGENTD_SERVER_SSE_PING_INTERVAL":        "server.sse_ping_interval",
		"AGENTD_STORE_URL":                       "store.url",
		"AGENTD_PROVIDERS_ANTHROPIC_API_KEY":     "providers.anthropic.api_key",
		"AGENTD_PROVIDERS_ANTHROPIC_SIM_LATENCY": "providers.anthropic.sim_latency",
		"AGENTD_LOG_LEVEL":                       "log.level",
		"AGENTD_BUDGETS_TENANT_DAILY_USD":        "budgets.tenant.daily_usd",
		"AGENTD_BUDGETS_RESERVATION_TTL":         "budgets.reservation_ttl",
	}
	for k, v := range want {
		assert.Equal(t, v, vars[k], k)
	}
	// One variable per scalar field: 8 server + 3 store + 5 anthropic + 2 log.
	// 63 + budgets (3 scopes × 2 limits, alert_webhook, alert_webhook_timeout,
	// reservation_ttl) + gateway (disabled, max_body_bytes, log_bodies) + 9
	// abuse + admission.tenant.max_in_flight and providers.anthropic.h2c +
	// redaction.messages + auth.cache_ttl + auth.allow_unauthenticated_network
	// + secrets_refresh (poll_interval, grace) + 9 retention + 8
	// breakers.defaults + admission.overflow + 4 console + 5 managed.
	assert.Len(t, vars, 118)
	for k := range vars {
		assert.NotContains(t, k, "AGENTS", "lists have no overrides")
	}
	// Every overridable field has a type setScalar understands.
	for _, f := range scalarFields(reflect.ValueOf(&Config{})) {
		v := reflect.New(f.value.Type()).Elem()
		s := "1"
		if f.value.Type() == durationType {
			s = "1s"
		}
		assert.NoError(t, setScalar(v, s), f.path)
		assert.False(t, v.IsZero(), f.path)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func TestReferences(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "key"), "sk-from-file\n")
	writeFile(t, filepath.Join(dir, "prompt.txt"), "Line one.\nLine two.\r\n\n")
	sub := filepath.Join(dir, "conf")
	require.NoError(t, os.Mkdir(sub, 0o700))
	writeFile(t, filepath.Join(sub, "tool"), "clock")
	path := filepath.Join(sub, "agentd.yaml")
	writeFile(t, path, fmt.Sprintf(`
store:
  url: sqlite://${env:DATA_DIR}/agentd.db
providers:
  anthropic:
    api_key: ${file:../key}
    base_url: ${env:UNSET_VAR}
agents:
  - name: ${env:AGENT_NAME}
    model: claude-${env:MODEL_SIZE}-4-5
    system: "${file:%s} Literal: $${file:x} ${other}"
    tools: ["${file:tool}", calculator]
`, filepath.Join(dir, "prompt.txt")))

	cfg, err := Load(path, []string{"DATA_DIR=/data", "AGENT_NAME=demo", "MODEL_SIZE=sonnet"})
	require.NoError(t, err)
	assert.Equal(t, "sqlite:///data/agentd.db", cfg.Store.URL)
	assert.Equal(t, "sk-from-file", cfg.Providers.Anthropic.APIKey.Value())
	assert.Equal(t, DefaultAnthropicBaseURL, cfg.Providers.Anthropic.BaseURL, "unset var → \"\" → default")
	assert.Equal(t, "demo", cfg.Agents[0].Name)
	assert.Equal(t, "claude-sonnet-4-5", cfg.Agents[0].Model)
	assert.Equal(t, "Line one.\nLine two. Literal: ${file:x} ${other}", cfg.Agents[0].System)
	assert.Equal(t, []string{"clock", "calculator"}, cfg.Agents[0].Tools)
}

func TestReferenceToUnsetVariableThenValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	writeFile(t, path, "agents:\n  - name: a\n    model: ${env:MODEL}\n")
	_, err := Load(path, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "agents[0].model: required")
}

func TestMissingReferenceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agentd.yaml")
	writeFile(t, path, "providers:\n  anthropic:\n    api_key: ${file:missing-key}\nagents:\n  - name: a\n    model: m\n    tools: [\"${file:/nonexistent/tool}\"]\n")
	_, err := Load(path, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "providers.anthropic.api_key: ${file:missing-key}: open "+filepath.Join(dir, "missing-key"))
	assert.Contains(t, err.Error(), "agents[0].tools[0]: ${file:/nonexistent/tool}: open /nonexistent/tool")
}

func TestLoadWithoutFile(t *testing.T) {
	_, err := Load("", []string{"AGENTD_LOG_LEVEL=debug"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config environment is invalid:\nagents: at least one agent is required")

	_, err = Load("", []string{"AGENTD_LOG_LEVEL=${file:nope}"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "log.level: ${file:nope}: open nope")
}

func TestLoadMissingAndEmptyFile(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "nope.yaml"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope.yaml")

	empty := filepath.Join(dir, "empty.yaml")
	writeFile(t, empty, "# nothing here\n")
	_, err = Load(empty, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "agents: at least one agent is required")
}

func TestExampleConfig(t *testing.T) {
	const example = "../../examples/agentd.yaml"
	cfg, err := Load(example, nil)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Empty(t, cfg.Providers.Anthropic.APIKey.Value())
	assert.Equal(t, SimulateAuto, cfg.Providers.Anthropic.Simulate)
	assert.Equal(t, "sqlite://agentd.db", cfg.Store.URL)
	require.Len(t, cfg.Agents, 1)
	a := cfg.Agents[0]
	assert.Equal(t, "demo", a.Name)
	assert.Equal(t, "claude-sonnet-4-5", a.Model)
	assert.Contains(t, a.System, "agentd's demo agent")
	assert.Equal(t, []string{"clock", "calculator", "word_count"}, a.Tools)
	assert.Equal(t, 8, a.MaxSteps)
	assert.Equal(t, 1024, a.MaxTokens)
	assert.Equal(t, 2*time.Minute, a.Timeout)

	cfg, err = Load(example, []string{"ANTHROPIC_API_KEY=sk-ant-example"})
	require.NoError(t, err)
	assert.Equal(t, "sk-ant-example", cfg.Providers.Anthropic.APIKey.Value())
}

// TestDocsListEveryVariable keeps docs/configuration.md in step with the
// struct: every override variable must be documented.
func TestDocsListEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	require.NoError(t, err)
	for name, path := range EnvVars() {
		assert.Contains(t, string(doc), "`"+name+"`", path)
		assert.Contains(t, string(doc), "`"+path[strings.LastIndex(path, ".")+1:]+"`", path)
	}
}

func TestSecretNeverLeaks(t *testing.T) {
	const key = "sk-ant-SUPERSECRET-0123456789"
	cfg, err := Load("testdata/minimal.good.yaml", []string{"AGENTD_PROVIDERS_ANTHROPIC_API_KEY=" + key})
	require.NoError(t, err)
	require.Equal(t, key, cfg.Providers.Anthropic.APIKey.Value())
	secret := cfg.Providers.Anthropic.APIKey

	jsonCfg, err := json.Marshal(cfg)
	require.NoError(t, err)
	yamlCfg, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	textKey, err := secret.MarshalText()
	require.NoError(t, err)

	badVerb := "%d" // not a constant, so vet lets the wrong verb through
	hexVerb := "%x" // a Config has bools since the resilience settings; vet would refuse %x
	var jsonLog, textLog bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&jsonLog, nil), slog.NewTextHandler(&textLog, nil)} {
		l := slog.New(h)
		l.Info("start", "config", cfg, "cfgval", *cfg, "key", secret, "anthropic", cfg.Providers.Anthropic)
		l.Info("start", slog.Any("key", secret), slog.String("redacted", cfg.Redacted()))
	}

	outputs := map[string]string{
		"Redacted":   cfg.Redacted(),
		"%v":         fmt.Sprintf("%v", cfg),
		"%+v":        fmt.Sprintf("%+v", cfg),
		"%#v":        fmt.Sprintf("%#v", cfg),
		"%v value":   fmt.Sprintf("%v", *cfg),
		"%+v value":  fmt.Sprintf("%+v", *cfg),
		"%#v value":  fmt.Sprintf("%#v", *cfg),
		"%s key":     fmt.Sprintf("%s", secret),
		"%q key":     fmt.Sprintf("%q", secret),
		"%x key":     fmt.Sprintf("%x", secret),
		"%d key":     fmt.Sprintf(badVerb, secret),
		"%#v key":    fmt.Sprintf("%#v", secret),
		"%10.3s key": fmt.Sprintf("%10.3s", secret),
		"%d cfg":     fmt.Sprintf(badVerb, cfg),
		"%x cfg":     fmt.Sprintf(hexVerb, *cfg),
		"json":       string(jsonCfg),
		"yaml":       string(yamlCfg),
		"text":       string(textKey),
		"slog json":  jsonLog.String(),
		"slog text":  textLog.String(),
	}
	for name, out := range outputs {
		assert.NotContains(t, out, key, name)
		assert.NotContains(t, out, "SUPERSECRET", name)
		assert.NotContains(t, out, fmt.Sprintf("%x", "SUPERSECRET"), name)
	}
	assert.Contains(t, outputs["Redacted"], "api_key: '[redacted]'")
	assert.Contains(t, outputs["json"], `"APIKey":"[redacted]"`)
	assert.Contains(t, outputs["%#v key"], `"[redacted]"`)
	assert.Contains(t, outputs["slog json"], `"key":"[redacted]"`)
	assert.Equal(t, "[redacted]", secret.String())
	assert.Equal(t, "%!d(string=[redacted])", outputs["%d key"])
	assert.Equal(t, "       [re", outputs["%10.3s key"])
}

func TestEmptySecretPrintsEmpty(t *testing.T) {
	var s Secret
	assert.Equal(t, "", s.String())
	assert.Equal(t, `""`, s.GoString())
	assert.Equal(t, "", s.LogValue().String())
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.Equal(t, `""`, string(b))
	y, err := yaml.Marshal(struct {
		K Secret `yaml:"k"`
	}{})
	require.NoError(t, err)
	assert.Equal(t, "k: \"\"\n", string(y))
}

func TestRedactedRoundTrips(t *testing.T) {
	cfg, err := Load("testdata/full.good.yaml", nil)
	require.NoError(t, err)
	out := cfg.Redacted()
	for _, want := range []string{"read_timeout: 2s", "conversation_ttl: 24h0m0s", "sim_latency: 50ms", "- name: first_agent-1"} {
		assert.Contains(t, out, want)
	}

	path := filepath.Join(t.TempDir(), "redacted.yaml")
	writeFile(t, path, out)
	again, err := Load(path, nil)
	require.NoError(t, err)
	assert.Equal(t, "[redacted]", again.Providers.Anthropic.APIKey.Value())
	again.Providers.Anthropic.APIKey = cfg.Providers.Anthropic.APIKey
	// The literal "${env:NOT_A_REF}" in the system prompt is printed
	// unescaped, so it would be resolved again on reload: compare the rest.
	again.Agents[0].System = cfg.Agents[0].System
	// A nil list is printed as [] and comes back empty, not nil.
	assert.Empty(t, again.Agents[1].Tools)
	again.Agents[1].Tools = cfg.Agents[1].Tools
	assert.Equal(t, cfg, again)
}

func TestValidateAgentNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "0": true, "demo_agent-2": true, strings.Repeat("a", 64): true,
		"": false, "-a": false, "_a": false, "Demo": false, "a b": false, "a.b": false, strings.Repeat("a", 65): false,
	} {
		cfg := &Config{Agents: []Agent{{Name: name, Model: "m"}}}
		cfg.ApplyDefaults()
		err := cfg.Validate()
		if ok {
			assert.NoError(t, err, name)
		} else {
			assert.ErrorContains(t, err, "agents[0].name:", name)
		}
	}
}

func TestValidateAddrs(t *testing.T) {
	for addr, ok := range map[string]bool{
		":8080": true, "127.0.0.1:0": true, "[::1]:443": true, "localhost:80": true,
		"8080": false, ":http": false, ":-1": false, "host:": false, "": true, // "" → default
	} {
		cfg := &Config{Server: Server{Addr: addr}, Agents: []Agent{{Name: "a", Model: "m"}}}
		cfg.ApplyDefaults()
		err := cfg.Validate()
		if ok {
			assert.NoError(t, err, addr)
		} else {
			assert.ErrorContains(t, err, "server.addr:", addr)
		}
	}
}

func TestBudgetDefaults(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yaml", nil)
	require.NoError(t, err)
	b := cfg.Budgets
	assert.Equal(t, DefaultBudgetAlertFractions(), b.AlertFractions)
	assert.Equal(t, DefaultBudgetReservationTTL, b.ReservationTTL)
	assert.Equal(t, DefaultBudgetAlertWebhookTimeout, b.AlertWebhookTimeout)
	assert.False(t, cfg.AnyBudget())

	cfg, err = Load("testdata/budgets.good.yaml", nil)
	require.NoError(t, err)
	assert.True(t, cfg.AnyBudget())
	assert.Equal(t, []float64{0.5, 0.9, 1.0}, cfg.Budgets.AlertFractions)
	assert.InDelta(t, 500, cfg.Budgets.Tenants["acme"].DailyUSD, 1e-9)
	assert.InDelta(t, 0.5, cfg.Agents[0].MaxCostUSD, 1e-9)
	assert.NotContains(t, cfg.Redacted(), "hooks.example.com", "the webhook URL is a secret (it may carry a token)")
}

func TestAdmissionTenantsAndH2C(t *testing.T) {
	cfg, err := Load("testdata/admission-tenants.good.yaml", nil)
	require.NoError(t, err)
	assert.Equal(t, 10, cfg.Admission.Tenant.MaxInFlight)
	assert.Equal(t, map[string]TenantAdmission{"acme": {MaxInFlight: 100}, "internal": {}}, cfg.Admission.Tenants)
	assert.True(t, cfg.Providers.Anthropic.H2C)
	cfg, err = Load("testdata/admission-tenants.good.yaml", []string{"AGENTD_ADMISSION_TENANT_MAX_IN_FLIGHT=3", "AGENTD_PROVIDERS_ANTHROPIC_H2C=false"})
	require.NoError(t, err)
	assert.Equal(t, 3, cfg.Admission.Tenant.MaxInFlight)
	assert.False(t, cfg.Providers.Anthropic.H2C)
}

// TestSessionsCacheBytes: unset is the default, an explicit 0 is off.
func TestSessionsCacheBytes(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yaml", nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultSessionCacheBytes, cfg.Sessions.CacheSize())
	dir := t.TempDir()
	for _, tc := range []struct {
		yaml string
		want int64
	}{{"sessions: {cache_bytes: 0}\n", 0}, {"sessions: {cache_bytes: 1048576}\n", 1 << 20}} {
		path := filepath.Join(dir, "c.yaml")
		require.NoError(t, os.WriteFile(path, []byte(tc.yaml+"agents:\n  - name: a\n    model: m\n"), 0o600))
		cfg, err := Load(path, nil)
		require.NoError(t, err)
		assert.Equal(t, tc.want, cfg.Sessions.CacheSize(), tc.yaml)
	}
}
