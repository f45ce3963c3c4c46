package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// managedBundle is a real agentd (app.New, HTTP on a port, API keys on)
// and official SDK clients of two tenants.
type managedBundle struct {
	URL    string
	Client anthropic.Client // tenant t1
	Other  anthropic.Client // tenant t2
	Key    string
	// Stop stops the agentd (as the test's cleanup does).
	Stop func()
	// Log is everything the agentd logged.
	Log *syncLog
}

// startManaged runs an agentd on backend with API keys for tenants t1 and
// t2 and returns SDK clients for them.
func startManaged(t *testing.T, backend string) *managedBundle {
	t.Helper()
	return startManagedWith(t, backend, `agents:
  - name: demo
    model: claude-sonnet-4-5
    system: You are the demo.
    tools: [clock]
`)
}

// startManagedWith is startManaged with the configuration's agents (and
// worker settings) in extra.
func startManagedWith(t testing.TB, backend, extra string) *managedBundle {
	t.Helper()
	return startManagedOn(t, managedStoreURL(t, backend), extra)
}

// managedStoreURL is a new, empty store of backend.
func managedStoreURL(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case "sqlite":
		return "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "agentd.db"))
	case "postgres":
		return pgtest.Schema(t, pgtest.BaseURL(t), 10)
	}
	t.Fatalf("backend %q", backend)
	return ""
}

// startManagedOn is startManagedWith on the store at storeURL (several
// agentd processes may share one, one after the other or at once).
func startManagedOn(t testing.TB, storeURL, extra string) *managedBundle {
	t.Helper()
	dir := t.TempDir()
	// The keys exist before the server starts, as `agentd keys create`
	// makes them.
	ctx := t.Context()
	be, err := OpenBackend(ctx, storeURL, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, be.Store.Migrate(ctx))
	k1, err := auth.CreateKey(ctx, be.Store, auth.CreateParams{Tenant: "t1", Scopes: []string{auth.ScopeRuns, auth.ScopeApprove}})
	require.NoError(t, err)
	k2, err := auth.CreateKey(ctx, be.Store, auth.CreateParams{Tenant: "t2", Scopes: []string{auth.ScopeChat}})
	require.NoError(t, err)
	require.NoError(t, be.Close())

	yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: %q
auth:
  mode: keys
`, storeURL) + extra
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	logs := &syncLog{}
	a, err := New(ctx, cfg, Options{LogOutput: logs, Version: "test"})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	var once sync.Once
	stopNow := func() {
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("agentd did not stop")
			}
		})
	}
	t.Cleanup(stopNow)
	waitReady(t, a)
	url := "http://" + a.Addr().String()
	client := func(key string) anthropic.Client {
		return anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(url), option.WithAPIKey(key),
			option.WithMaxRetries(0), option.WithRequestTimeout(20*time.Second))
	}
	return &managedBundle{URL: url, Client: client(k1.Token), Other: client(k2.Token), Key: k1.Token, Stop: stopNow, Log: logs}
}

// apiError asserts err is the SDK's *anthropic.Error with status and an
// Anthropic error type, and returns its message.
func apiError(t *testing.T, err error, status int, typ string) string {
	t.Helper()
	var ae *anthropic.Error
	require.True(t, errors.As(err, &ae), "want *anthropic.Error, got %T: %v", err, err)
	require.Equal(t, status, ae.StatusCode, "%v", err)
	var body struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(ae.RawJSON()), &body), ae.RawJSON())
	require.Equal(t, "error", body.Type, ae.RawJSON())
	require.Equal(t, typ, body.Error.Type, ae.RawJSON())
	require.NotEmpty(t, body.RequestID)
	require.NotEmpty(t, body.Error.Message)
	return body.Error.Message
}

func customTool(name string) anthropic.BetaAgentNewParamsToolUnion {
	return anthropic.BetaAgentNewParamsToolUnion{OfCustom: &anthropic.BetaManagedAgentsCustomToolParams{
		Name: name, Description: "Looks up " + name,
		InputSchema: anthropic.BetaManagedAgentsCustomToolInputSchemaParam{
			Properties: map[string]any{"q": map[string]any{"type": "string"}}, Required: []string{"q"},
		},
	}}
}

func TestManagedAgentsSDK(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		b := startManaged(t, backend)
		ctx := t.Context()
		c := b.Client

		t.Run("Agents", func(t *testing.T) {
			created, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{
				Name:   "researcher",
				Model:  anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				System: anthropic.String("You research."),
				Tools: []anthropic.BetaAgentNewParamsToolUnion{
					customTool("lookup"),
					{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "docs"}},
					{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "agentd",
						DefaultConfig: anthropic.BetaManagedAgentsMCPToolsetDefaultConfigParams{Enabled: anthropic.Bool(false)},
						Configs: []anthropic.BetaManagedAgentsMCPToolConfigParams{{Name: "clock", Enabled: anthropic.Bool(true),
							PermissionPolicy: anthropic.BetaManagedAgentsMCPToolConfigParamsPermissionPolicyUnion{
								OfAlwaysAllow: &anthropic.BetaManagedAgentsAlwaysAllowPolicyParam{}}}}}},
				},
				MCPServers: []anthropic.BetaManagedAgentsURLMCPServerParams{{Name: "docs", URL: "https://mcp.example.com/mcp"}},
				Metadata:   map[string]string{"team": "a"},
			})
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(created.ID, "agent_"), created.ID)
			require.Equal(t, int64(1), created.Version)
			require.Equal(t, "claude-sonnet-4-5", created.Model.ID)
			require.Equal(t, "You research.", created.System)
			require.Equal(t, map[string]string{"team": "a"}, created.Metadata)
			require.Len(t, created.Tools, 3)
			custom := created.Tools[0].AsCustom()
			require.Equal(t, "lookup", custom.Name)
			require.Equal(t, []string{"q"}, custom.InputSchema.Required)
			docs := created.Tools[1].AsMCPToolset()
			require.Equal(t, "docs", docs.MCPServerName)
			require.True(t, docs.DefaultConfig.Enabled)
			require.Equal(t, "always_ask", docs.DefaultConfig.PermissionPolicy.Type, "MCP toolsets ask by default")
			own := created.Tools[2].AsMCPToolset()
			require.False(t, own.DefaultConfig.Enabled)
			require.Len(t, own.Configs, 1)
			require.Equal(t, "always_allow", own.Configs[0].PermissionPolicy.Type)
			require.Equal(t, "https://mcp.example.com/mcp", created.MCPServers[0].URL)
			require.Equal(t, "service_account", created.ExecutionIdentity.Type)
			require.True(t, created.ArchivedAt.IsZero())

			got, err := c.Beta.Agents.Get(ctx, created.ID, anthropic.BetaAgentGetParams{})
			require.NoError(t, err)
			require.Equal(t, created.ID, got.ID)
			require.Equal(t, created.CreatedAt, got.CreatedAt)

			// The model may arrive as a plain string.
			str, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "plain"},
				option.WithJSONSet("model", "claude-haiku-4-5"))
			require.NoError(t, err)
			require.Equal(t, "claude-haiku-4-5", str.Model.ID)

			// Update: a new version; the version check refuses a stale one.
			up, err := c.Beta.Agents.Update(ctx, created.ID, anthropic.BetaAgentUpdateParams{
				Version: anthropic.Int(1), System: anthropic.String("You research carefully."),
				Metadata: map[string]string{"tier": "gold"},
			})
			require.NoError(t, err)
			require.Equal(t, int64(2), up.Version)
			require.Equal(t, "You research carefully.", up.System)
			require.Equal(t, map[string]string{"team": "a", "tier": "gold"}, up.Metadata, "metadata is a patch")
			require.Len(t, up.Tools, 3, "omitted fields are kept")
			_, err = c.Beta.Agents.Update(ctx, created.ID, anthropic.BetaAgentUpdateParams{Version: anthropic.Int(1), Name: anthropic.String("x")})
			apiError(t, err, http.StatusConflict, "invalid_request_error")
			same, err := c.Beta.Agents.Update(ctx, created.ID, anthropic.BetaAgentUpdateParams{System: anthropic.String("You research carefully.")})
			require.NoError(t, err)
			require.Equal(t, int64(2), same.Version, "an update that changes nothing adds no version")

			v1, err := c.Beta.Agents.Get(ctx, created.ID, anthropic.BetaAgentGetParams{Version: anthropic.Int(1)})
			require.NoError(t, err)
			require.Equal(t, "You research.", v1.System)
			var versions []int64
			pager := c.Beta.Agents.Versions.ListAutoPaging(ctx, created.ID, anthropic.BetaAgentVersionListParams{Limit: anthropic.Int(1)})
			for pager.Next() {
				versions = append(versions, pager.Current().Version)
			}
			require.NoError(t, pager.Err())
			require.Equal(t, []int64{2, 1}, versions)

			// agentd's configured agents are there too, read-only.
			demo, err := c.Beta.Agents.Get(ctx, "demo", anthropic.BetaAgentGetParams{})
			require.NoError(t, err)
			require.Equal(t, "You are the demo.", demo.System)
			require.Equal(t, int64(1), demo.Version)
			require.Equal(t, "agentd", demo.Tools[0].AsMCPToolset().MCPServerName)
			require.Equal(t, "clock", demo.Tools[0].AsMCPToolset().Configs[0].Name)
			_, err = c.Beta.Agents.Update(ctx, "demo", anthropic.BetaAgentUpdateParams{System: anthropic.String("x")})
			msg := apiError(t, err, http.StatusBadRequest, "invalid_request_error")
			require.Contains(t, msg, "read-only")

			var listed []string
			agents := c.Beta.Agents.ListAutoPaging(ctx, anthropic.BetaAgentListParams{Limit: anthropic.Int(1)})
			for agents.Next() {
				listed = append(listed, agents.Current().ID)
			}
			require.NoError(t, agents.Err())
			require.Equal(t, []string{str.ID, created.ID, "demo"}, listed, "newest first, one per page")

			arch, err := c.Beta.Agents.Archive(ctx, str.ID, anthropic.BetaAgentArchiveParams{})
			require.NoError(t, err)
			require.False(t, arch.ArchivedAt.IsZero())
			page, err := c.Beta.Agents.List(ctx, anthropic.BetaAgentListParams{})
			require.NoError(t, err)
			require.Len(t, page.Data, 2, "archived agents are left out")
			page, err = c.Beta.Agents.List(ctx, anthropic.BetaAgentListParams{IncludeArchived: anthropic.Bool(true)})
			require.NoError(t, err)
			require.Len(t, page.Data, 3)

			// Another tenant sees the configured agent, not t1's.
			_, err = b.Other.Beta.Agents.Get(ctx, created.ID, anthropic.BetaAgentGetParams{})
			apiError(t, err, http.StatusNotFound, "not_found_error")
			other, err := b.Other.Beta.Agents.List(ctx, anthropic.BetaAgentListParams{})
			require.NoError(t, err)
			require.Len(t, other.Data, 1)
			require.Equal(t, "demo", other.Data[0].ID)
		})

		t.Run("AgentErrors", func(t *testing.T) {
			_, err := c.Beta.Agents.Get(ctx, "agent_nope", anthropic.BetaAgentGetParams{})
			require.Contains(t, apiError(t, err, http.StatusNotFound, "not_found_error"), "agent not found")
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x",
				Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Tools: []anthropic.BetaAgentNewParamsToolUnion{{OfAgentToolset20260401: &anthropic.BetaManagedAgentsAgentToolset20260401Params{}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x",
				Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Tools: []anthropic.BetaAgentNewParamsToolUnion{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "nowhere"}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "nowhere")
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x",
				Model:      anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				MCPServers: []anthropic.BetaManagedAgentsURLMCPServerParams{{Name: "lonely", URL: "https://x.example.com"}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not referenced")
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x",
				Model:  anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Skills: []anthropic.BetaManagedAgentsSkillParamsUnion{{OfAnthropic: &anthropic.BetaManagedAgentsAnthropicSkillParams{SkillID: "xlsx"}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "Agent Skills")
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x",
				Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"}}, option.WithJSONSet("colour", "red"))
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "colour")
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "x"})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "model")
		})

		t.Run("Environments", func(t *testing.T) {
			env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "prod",
				Description: anthropic.String("the workers"), Metadata: map[string]string{"region": "eu"}})
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(env.ID, "env_"), env.ID)
			require.Equal(t, "self_hosted", env.Config.Type)
			require.Equal(t, "the workers", env.Description)
			cloud, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "cloud",
				Config: anthropic.BetaEnvironmentNewParamsConfigUnion{OfCloud: &anthropic.BetaCloudConfigParams{
					Networking: anthropic.BetaCloudConfigParamsNetworkingUnion{OfUnrestricted: &anthropic.BetaUnrestrictedNetworkParam{}}}}})
			require.NoError(t, err)
			require.Equal(t, "cloud", cloud.Config.Type)
			require.Equal(t, "unrestricted", cloud.Config.Networking.Type)

			_, err = c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "pkgs",
				Config: anthropic.BetaEnvironmentNewParamsConfigUnion{OfCloud: &anthropic.BetaCloudConfigParams{
					Packages: anthropic.BetaPackagesParams{Pip: []string{"pandas"}}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")
			_, err = c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "limited",
				Config: anthropic.BetaEnvironmentNewParamsConfigUnion{OfCloud: &anthropic.BetaCloudConfigParams{
					Networking: anthropic.BetaCloudConfigParamsNetworkingUnion{OfLimited: &anthropic.BetaLimitedNetworkParams{AllowedHosts: []string{"x.com"}}}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "networking")

			up, err := c.Beta.Environments.Update(ctx, env.ID, anthropic.BetaEnvironmentUpdateParams{Name: anthropic.String("production"),
				Metadata: map[string]string{"region": "", "tier": "1"}})
			require.NoError(t, err)
			require.Equal(t, "production", up.Name)
			require.Equal(t, "the workers", up.Description)
			require.Equal(t, map[string]string{"tier": "1"}, up.Metadata, "an empty value deletes the key")

			var names []string
			envs := c.Beta.Environments.ListAutoPaging(ctx, anthropic.BetaEnvironmentListParams{Limit: anthropic.Int(1)})
			for envs.Next() {
				names = append(names, envs.Current().Name)
			}
			require.NoError(t, envs.Err())
			require.Equal(t, []string{"cloud", "production"}, names)

			arch, err := c.Beta.Environments.Archive(ctx, cloud.ID, anthropic.BetaEnvironmentArchiveParams{})
			require.NoError(t, err)
			require.NotEmpty(t, arch.ArchivedAt)
			del, err := c.Beta.Environments.Delete(ctx, cloud.ID, anthropic.BetaEnvironmentDeleteParams{})
			require.NoError(t, err)
			require.Equal(t, cloud.ID, del.ID)
			require.Equal(t, "environment_deleted", string(del.Type))
			_, err = c.Beta.Environments.Get(ctx, cloud.ID, anthropic.BetaEnvironmentGetParams{})
			require.Contains(t, apiError(t, err, http.StatusNotFound, "not_found_error"), "environment not found")
			_, err = b.Other.Beta.Environments.Get(ctx, env.ID, anthropic.BetaEnvironmentGetParams{})
			apiError(t, err, http.StatusNotFound, "not_found_error")
		})

		t.Run("Sessions", func(t *testing.T) {
			agent, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "sess",
				Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Tools: []anthropic.BetaAgentNewParamsToolUnion{customTool("lookup")}})
			require.NoError(t, err)
			_, err = c.Beta.Agents.Update(ctx, agent.ID, anthropic.BetaAgentUpdateParams{System: anthropic.String("v2")})
			require.NoError(t, err)
			env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "sessions"})
			require.NoError(t, err)

			latest, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
				Agent:         anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(agent.ID)},
				EnvironmentID: env.ID, Title: anthropic.String("first"), Metadata: map[string]string{"user": "u1"},
			})
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(latest.ID, "sesn_"), latest.ID)
			require.Equal(t, anthropic.BetaManagedAgentsSessionStatusIdle, latest.Status)
			require.Equal(t, int64(2), latest.Agent.Version, "an id string pins the latest version")
			require.Equal(t, "v2", latest.Agent.System)
			require.Equal(t, "lookup", latest.Agent.Tools[0].Name)
			require.Equal(t, env.ID, latest.EnvironmentID)
			require.Equal(t, "first", latest.Title)
			require.Zero(t, latest.Usage.InputTokens)

			pinned, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
				Agent: anthropic.BetaSessionNewParamsAgentUnion{OfBetaManagedAgentsAgents: &anthropic.BetaManagedAgentsAgentParams{
					ID: agent.ID, Version: anthropic.Int(1)}},
				EnvironmentID: env.ID,
				Budget: anthropic.BetaManagedAgentsBudgetLimitParam{MaxListCost: anthropic.BetaMonetaryAmountParam{
					Amount: "2500", Currency: anthropic.BetaCurrencyUsd}},
			})
			require.NoError(t, err)
			require.Equal(t, int64(1), pinned.Agent.Version)
			require.Empty(t, pinned.Agent.System)
			require.Equal(t, "2500", pinned.Budget.MaxListCost.Amount)
			config, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
				Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}, EnvironmentID: env.ID})
			require.NoError(t, err, "a configured agent runs sessions too")

			got, err := c.Beta.Sessions.Get(ctx, latest.ID, anthropic.BetaSessionGetParams{})
			require.NoError(t, err)
			require.Equal(t, latest.CreatedAt, got.CreatedAt)
			require.Equal(t, map[string]string{"user": "u1"}, got.Metadata)
			up, err := c.Beta.Sessions.Update(ctx, latest.ID, anthropic.BetaSessionUpdateParams{Title: anthropic.String("renamed"),
				Metadata: map[string]string{"k": "v"}})
			require.NoError(t, err)
			require.Equal(t, "renamed", up.Title)
			require.Equal(t, map[string]string{"user": "u1", "k": "v"}, up.Metadata)

			var ids []string
			sessions := c.Beta.Sessions.ListAutoPaging(ctx, anthropic.BetaSessionListParams{Limit: anthropic.Int(2)})
			for sessions.Next() {
				ids = append(ids, sessions.Current().ID)
			}
			require.NoError(t, sessions.Err())
			require.Equal(t, []string{config.ID, pinned.ID, latest.ID}, ids, "newest first across pages")
			ids = nil
			sessions = c.Beta.Sessions.ListAutoPaging(ctx, anthropic.BetaSessionListParams{Limit: anthropic.Int(1),
				Order: anthropic.BetaSessionListParamsOrderAsc, AgentID: anthropic.String(agent.ID)})
			for sessions.Next() {
				ids = append(ids, sessions.Current().ID)
			}
			require.NoError(t, sessions.Err())
			require.Equal(t, []string{latest.ID, pinned.ID}, ids)

			arch, err := c.Beta.Sessions.Archive(ctx, pinned.ID, anthropic.BetaSessionArchiveParams{})
			require.NoError(t, err)
			require.Equal(t, anthropic.BetaManagedAgentsSessionStatusTerminated, arch.Status)
			require.False(t, arch.ArchivedAt.IsZero())
			page, err := c.Beta.Sessions.List(ctx, anthropic.BetaSessionListParams{Statuses: []string{"terminated"}, IncludeArchived: anthropic.Bool(true)})
			require.NoError(t, err)
			require.Len(t, page.Data, 1)
			require.Equal(t, pinned.ID, page.Data[0].ID)
			_, err = c.Beta.Sessions.Update(ctx, pinned.ID, anthropic.BetaSessionUpdateParams{Title: anthropic.String("x")})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "terminated")

			del, err := c.Beta.Sessions.Delete(ctx, config.ID, anthropic.BetaSessionDeleteParams{})
			require.NoError(t, err)
			require.Equal(t, "session_deleted", string(del.Type))
			_, err = c.Beta.Sessions.Get(ctx, config.ID, anthropic.BetaSessionGetParams{})
			require.Contains(t, apiError(t, err, http.StatusNotFound, "not_found_error"), "session not found")

			// Another tenant's session is 404, for every method.
			_, err = b.Other.Beta.Sessions.Get(ctx, latest.ID, anthropic.BetaSessionGetParams{})
			apiError(t, err, http.StatusNotFound, "not_found_error")
			_, err = b.Other.Beta.Sessions.Delete(ctx, latest.ID, anthropic.BetaSessionDeleteParams{})
			apiError(t, err, http.StatusNotFound, "not_found_error")
			_, err = b.Other.Beta.Sessions.Update(ctx, latest.ID, anthropic.BetaSessionUpdateParams{Title: anthropic.String("x")})
			apiError(t, err, http.StatusNotFound, "not_found_error")
			others, err := b.Other.Beta.Sessions.List(ctx, anthropic.BetaSessionListParams{})
			require.NoError(t, err)
			require.Empty(t, others.Data)
		})

		t.Run("SessionErrors", func(t *testing.T) {
			env, err := c.Beta.Environments.New(ctx, anthropic.BetaEnvironmentNewParams{Name: "errors"})
			require.NoError(t, err)
			demo := anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("demo")}
			_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
				Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("agent_nope")}, EnvironmentID: env.ID})
			require.Contains(t, apiError(t, err, http.StatusNotFound, "not_found_error"), "agent_nope")
			_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: "env_nope"})
			require.Contains(t, apiError(t, err, http.StatusNotFound, "not_found_error"), "env_nope")
			hi := anthropic.BetaSessionNewParamsInitialEventUnion{OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{
				Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{{OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "hi"}}}}}
			// A bad later initial event refuses the whole create.
			_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID,
				InitialEvents: []anthropic.BetaSessionNewParamsInitialEventUnion{hi, {OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "initial_events[1].content: at least one non-empty text block")
			_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID, VaultIDs: []string{"vlt_1"}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")
			_, err = c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{Agent: demo, EnvironmentID: env.ID},
				option.WithJSONSet("colour", "red"))
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "colour")
			_, err = c.Beta.Sessions.List(ctx, anthropic.BetaSessionListParams{Page: anthropic.String("garbage!")})
			apiError(t, err, http.StatusBadRequest, "invalid_request_error")

			// An MCP server by URL at a private address is refused at
			// create (managed_mcp_test.go has the rest).
			_, err = c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "api",
				Model:      anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Tools:      []anthropic.BetaAgentNewParamsToolUnion{{OfMCPToolset: &anthropic.BetaManagedAgentsMCPToolsetParams{MCPServerName: "docs"}}},
				MCPServers: []anthropic.BetaManagedAgentsURLMCPServerParams{{Name: "docs", URL: "http://10.0.0.7/mcp"}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "mcp_servers[0].url (http://10.0.0.7/mcp)")
			apiAgent, err := c.Beta.Agents.New(ctx, anthropic.BetaAgentNewParams{Name: "api",
				Model: anthropic.BetaManagedAgentsModelConfigParams{ID: "claude-sonnet-4-5"},
				Tools: []anthropic.BetaAgentNewParamsToolUnion{customTool("lookup")}})
			require.NoError(t, err)
			s, err := c.Beta.Sessions.New(ctx, anthropic.BetaSessionNewParams{
				Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String(apiAgent.ID)}, EnvironmentID: env.ID})
			require.NoError(t, err)
			kept, err := c.Beta.Sessions.List(ctx, anthropic.BetaSessionListParams{AgentID: anthropic.String(apiAgent.ID)})
			require.NoError(t, err)
			require.Len(t, kept.Data, 1)
			require.Equal(t, s.ID, kept.Data[0].ID)
			_, err = c.Beta.Sessions.Events.Send(ctx, s.ID, anthropic.BetaSessionEventSendParams{
				Events: []anthropic.BetaManagedAgentsEventParamsUnion{{OfUserCustomToolResult: &anthropic.BetaManagedAgentsUserCustomToolResultEventParams{
					CustomToolUseID: "toolu_1"}}}})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "no custom tool call")
			_, err = c.Beta.Sessions.Events.Send(ctx, s.ID, anthropic.BetaSessionEventSendParams{})
			apiError(t, err, http.StatusBadRequest, "invalid_request_error")
			events, err := c.Beta.Sessions.Events.List(ctx, s.ID, anthropic.BetaSessionEventListParams{})
			require.NoError(t, err)
			require.Empty(t, events.Data)
			_, err = c.Beta.Sessions.Events.List(ctx, "sesn_nope", anthropic.BetaSessionEventListParams{})
			apiError(t, err, http.StatusNotFound, "not_found_error")

			// Services this server does not offer say so.
			_, err = c.Beta.Sessions.Resources.List(ctx, s.ID, anthropic.BetaSessionResourceListParams{})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")
			_, err = c.Beta.Sessions.Threads.List(ctx, s.ID, anthropic.BetaSessionThreadListParams{})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")
			_, err = c.Beta.Environments.Work.Poll(ctx, env.ID, anthropic.BetaEnvironmentWorkPollParams{})
			require.Contains(t, apiError(t, err, http.StatusBadRequest, "invalid_request_error"), "not supported by this server")

			bad := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(b.URL), option.WithAPIKey("agd_wrong"), option.WithMaxRetries(0))
			_, err = bad.Beta.Sessions.Get(ctx, s.ID, anthropic.BetaSessionGetParams{})
			apiError(t, err, http.StatusUnauthorized, "authentication_error")
		})

		// agentd's own GET /v1/agents answer is unchanged without the
		// beta header (agentd's API, not Anthropic's: plain HTTP).
		t.Run("AgentdAgentList", func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/v1/agents", nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+b.Key)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			var out struct {
				Agents []struct {
					Name string `json:"name"`
				} `json:"agents"`
			}
			require.NoError(t, json.Unmarshal(body, &out))
			require.True(t, slices.ContainsFunc(out.Agents, func(a struct {
				Name string `json:"name"`
			}) bool {
				return a.Name == "demo"
			}), string(body))
			require.NotContains(t, string(body), `"data"`)
		})
	})
}
