package toolset_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/toolset"
)

type memAudit struct {
	mu   sync.Mutex
	rows []store.AuditEntry
}

func (m *memAudit) AppendAudit(_ context.Context, e store.AuditEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows = append(m.rows, e)
	return nil
}

type textIn struct {
	Text string `json:"text"`
}

func mcpServer(t *testing.T) string {
	s := sdk.NewServer(&sdk.Implementation{Name: "t", Version: "1"}, nil)
	for _, name := range []string{"echo", "kv_get", "kv_put", "other"} {
		sdk.AddTool(s, &sdk.Tool{Name: name, Description: name + " tool"}, func(_ context.Context, req *sdk.CallToolRequest, in textIn) (*sdk.CallToolResult, any, error) {
			key, _ := req.Params.Meta["io.agentd/idempotency-key"].(string)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ":" + in.Text + ":" + key}}}, nil, nil
		})
	}
	ts := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp"
}

func baseConfig(t *testing.T) *config.Config {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"ok":true,"got":`+string(b)+`,"idem":"`+r.Header.Get("Idempotency-Key")+`"}`)
	}))
	t.Cleanup(api.Close)
	cfg := &config.Config{
		Secrets: map[string]config.Secret{"tok": "tok-1234567"},
		Tools: config.Tools{
			MCPServers: []config.MCPServer{
				{Name: "demo", URL: mcpServer(t), ConsequentialTools: []string{"kv_put"}, Headers: map[string]string{"Authorization": "Bearer {{secret:tok}}"}},
				{Name: "down", Command: []string{"/nonexistent/server"}, ConnectTimeout: 200 * time.Millisecond},
			},
			HTTP: []config.HTTPTool{{Name: "ticket", Method: "POST", URL: api.URL + "/t", AllowPrivate: true, Consequential: true,
				InputSchema: map[string]any{"type": "object"}}},
		},
		Agents: []config.Agent{{
			Name: "a", Model: "m", Tools: []string{"clock", "ticket"},
			MCP: []config.AgentMCP{{Server: "demo", Tools: []string{"echo", "kv_*"}}, {Server: "down", Tools: []string{"ping", "x*"}}},
		}, {Name: "b", Model: "m"}},
	}
	cfg.ApplyDefaults()
	require.NoError(t, cfg.Validate())
	return cfg
}

func TestStart(t *testing.T) {
	cfg := baseConfig(t)
	audit := &memAudit{}
	set, err := toolset.Start(t.Context(), cfg, toolset.Options{Audit: audit, Metrics: tool.NewMetrics(nil)})
	require.NoError(t, err)
	defer set.Stop()

	var names []string
	byName := map[string]tool.Tool{}
	for _, tl := range set.Tools("a") {
		names = append(names, tl.Spec().Name)
		byName[tl.Spec().Name] = tl
	}
	assert.Equal(t, []string{"clock", "ticket", "demo_echo", "demo_kv_get", "demo_kv_put", "down_ping"}, names)
	assert.Empty(t, set.Tools("b"))
	assert.Equal(t, config.DefaultMCPTimeout+5*time.Second, set.ToolTimeout("a"))
	assert.Zero(t, set.ToolTimeout("b"))
	infos := set.Infos("a")
	assert.Equal(t, toolset.Info{Name: "clock", Description: infos[0].Description, Source: "builtin"}, infos[0])
	assert.Equal(t, toolset.Info{Name: "demo_kv_put", Description: "kv_put tool", Source: "mcp", Server: "demo", Consequential: true}, infos[4])

	ctx := tool.WithCallInfo(t.Context(), tool.CallInfo{Tenant: "default", Agent: "a", RunID: "run_1", Step: 1, ToolUseID: "tu_1"})
	out, err := byName["demo_echo"].Call(ctx, json.RawMessage(`{"text":"hi"}`))
	require.NoError(t, err)
	assert.Contains(t, out, "echo:hi:\n")
	out, err = byName["demo_kv_put"].Call(ctx, json.RawMessage(`{"text":"v"}`))
	require.NoError(t, err)
	assert.Contains(t, out, "kv_put:v:run_1:1:tu_1")
	out, err = byName["ticket"].Call(ctx, json.RawMessage(`{"title":"x"}`))
	require.NoError(t, err)
	assert.Contains(t, out, `"idem":"run_1:1:tu_1"`)
	_, err = byName["down_ping"].Call(ctx, json.RawMessage(`{}`))
	require.Error(t, err)
	assert.Equal(t, tool.KindUnavailable, tool.Outcome(err))

	require.Len(t, audit.rows, 4) // kv_put and ticket: call + result each
	assert.Equal(t, "demo_kv_put", audit.rows[0].Tool)
	assert.Equal(t, "ticket", audit.rows[3].Tool)
	assert.Equal(t, "ok", audit.rows[3].Outcome)
}

func TestConsequentialNeedsAudit(t *testing.T) {
	_, err := toolset.Start(t.Context(), baseConfig(t), toolset.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tools.http[0].consequential: consequential tools need the audit log")
	assert.Contains(t, err.Error(), "tools.mcp_servers[0].consequential")
}

func TestCheck(t *testing.T) {
	cfg := baseConfig(t)
	require.NoError(t, toolset.Check(cfg))

	cfg.Agents[0].Tools = []string{"clock", "nope"}
	cfg.Tools.HTTP = append(cfg.Tools.HTTP, config.HTTPTool{Name: "calculator", URL: "https://example.com/", Method: "GET"})
	err := toolset.Check(cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `agents[0].tools[1]: unknown tool "nope" (built-in tools: calculator, clock, word_count; HTTP tools: ticket, calculator)`)
	assert.Contains(t, err.Error(), `tools.http[1].name: "calculator" is already a built-in or HTTP tool`)
}

func TestNameClash(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Tools.MCPServers[0].BareToolNames = true
	cfg.Tools.HTTP[0].Name = "echo"
	cfg.Agents[0].Tools = []string{"echo"}
	_, err := toolset.Start(t.Context(), cfg, toolset.Options{Audit: &memAudit{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `agents[0].mcp[0]: tool name "echo" clashes with agents[0].tools[0]`)
}
