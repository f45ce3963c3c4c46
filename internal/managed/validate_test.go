package managed

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestParseModel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    ModelConfig
		errPart string
	}{
		{`"claude-sonnet-4-5"`, ModelConfig{ID: "claude-sonnet-4-5"}, ""},
		{`{"id":"m","effort":"high"}`, ModelConfig{ID: "m", Effort: "high"}, ""},
		{`{"id":"m","effort":{"type":"max"},"speed":"standard","inference_geo":"eu"}`, ModelConfig{ID: "m", Effort: "max", InferenceGeo: "eu"}, ""},
		{`{"id":"m","speed":"fast"}`, ModelConfig{}, "not supported by this server"},
		{`{"id":"m","effort":"extreme"}`, ModelConfig{}, "model.effort"},
		{`{"id":"m","colour":"red"}`, ModelConfig{}, "colour"},
		{`{"effort":"low"}`, ModelConfig{}, "model.id: required"},
		{`""`, ModelConfig{}, "empty model id"},
		{`null`, ModelConfig{}, "cannot be null"},
	} {
		got, err := parseModel(raw(tc.in))
		if tc.errPart != "" {
			require.ErrorContains(t, err, tc.errPart, tc.in)
			_, ok := AsInvalid(err)
			require.True(t, ok, "a client error: %v", err)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestApplyAgentRequest(t *testing.T) {
	t.Parallel()
	cat := Catalog{AgentdToolset: {"clock", "calculator"}, "kv": nil}
	create := func(body string) (AgentConfig, error) {
		var req AgentRequest
		require.NoError(t, json.Unmarshal([]byte(body), &req))
		return applyAgentRequest(AgentConfig{}, req, true, cat)
	}
	c, err := create(`{"name":"a","model":"m","tools":[
		{"type":"custom","name":"lookup","description":"d","input_schema":{"type":"object"}},
		{"type":"mcp_toolset","mcp_server_name":"agentd","configs":[{"name":"clock","permission_policy":{"type":"always_allow"}}]},
		{"type":"mcp_toolset","mcp_server_name":"kv"},
		{"type":"mcp_toolset","mcp_server_name":"docs","default_config":{"enabled":false}}],
		"mcp_servers":[{"name":"docs","url":"https://x.example/mcp"}]}`)
	require.NoError(t, err)
	require.Len(t, c.Tools, 4)
	en, pol := c.Tools[1].Policy("clock")
	require.True(t, en)
	require.Equal(t, PolicyAlwaysAllow, pol)
	en, pol = c.Tools[1].Policy("calculator")
	require.True(t, en)
	require.Equal(t, PolicyAlwaysAsk, pol, "MCP toolsets ask by default")
	en, _ = c.Tools[3].Policy("anything")
	require.False(t, en)
	require.Equal(t, map[string]string{}, c.Metadata)

	for body, part := range map[string]string{
		`{"model":"m"}`: "name: required",
		`{"name":"a"}`:  "model: required",
		`{"name":"a","model":"m","tools":[{"type":"agent_toolset_20260401"}]}`:                                                                                                 "prebuilt agent toolset",
		`{"name":"a","model":"m","tools":[{"type":"custom","name":"x y","description":"d","input_schema":{}}]}`:                                                                "tools[0].name",
		`{"name":"a","model":"m","tools":[{"type":"custom","name":"x","input_schema":{}}]}`:                                                                                    "description: required",
		`{"name":"a","model":"m","tools":[{"type":"custom","name":"x","description":"d","input_schema":{"type":"array"}}]}`:                                                    "input_schema",
		`{"name":"a","model":"m","tools":[{"type":"custom","name":"x","description":"d","input_schema":{}},{"type":"custom","name":"x","description":"d","input_schema":{}}]}`: "appears twice",
		`{"name":"a","model":"m","tools":[{"type":"mcp_toolset","mcp_server_name":"agentd","configs":[{"name":"rm_rf"}]}]}`:                                                    `has no tool "rm_rf"`,
		`{"name":"a","model":"m","tools":[{"type":"mcp_toolset","mcp_server_name":"kv","default_config":{"permission_policy":{"type":"auto"}}}]}`:                              "auto permission policy",
		`{"name":"a","model":"m","mcp_servers":[{"name":"agentd","url":"https://x"}],"tools":[{"type":"mcp_toolset","mcp_server_name":"agentd"}]}`:                             "configured tool sources",
		`{"name":"a","model":"m","mcp_servers":[{"name":"s","url":"ftp://x"}]}`:                                                                                                "http(s) URL",
		`{"name":"a","model":"m","multiagent":{"type":"coordinator"}}`:                                                                                                         "multiagent",
		`{"name":"a","model":"m","execution_identity":{"type":"aws_role","role_arn":"x"}}`:                                                                                     "execution identity",
		`{"name":"a","model":"m","skills":[{"type":"anthropic","skill_id":"xlsx"}]}`:                                                                                           "Agent Skills",
		`{"name":"a","model":"m","metadata":{"":"x"}}`:                                                                                                                         "metadata",
	} {
		_, err := create(body)
		require.ErrorContains(t, err, part, body)
	}

	// Update: omitted fields are kept, metadata is a patch, null clears.
	cur := AgentConfig{Name: "a", System: "s", Description: "d", Model: ModelConfig{ID: "m"}, Metadata: map[string]string{"k": "v", "x": "y"}}
	var req AgentRequest
	require.NoError(t, json.Unmarshal([]byte(`{"description":null,"metadata":{"x":null,"n":"1"}}`), &req))
	up, err := applyAgentRequest(cur, req, false, cat)
	require.NoError(t, err)
	require.Equal(t, "s", up.System)
	require.Empty(t, up.Description)
	require.Equal(t, map[string]string{"k": "v", "n": "1"}, up.Metadata)
	require.Equal(t, map[string]string{"k": "v", "x": "y"}, cur.Metadata, "the current version is not changed")
	require.NoError(t, json.Unmarshal([]byte(`{"name":null}`), &req))
	_, err = applyAgentRequest(cur, req, false, cat)
	require.ErrorContains(t, err, "name: cannot be null")
}

func TestParseEnvConfig(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"type":"self_hosted"}`: "self_hosted",
		`{"type":"cloud"}`:       "cloud",
		`{"type":"cloud","networking":{"type":"unrestricted"},"packages":{"type":"packages","pip":[]}}`: "cloud",
	} {
		c, err := parseEnvConfig(raw(in))
		require.NoError(t, err, in)
		require.Equal(t, want, c.Type, in)
	}
	for in, part := range map[string]string{
		`{"type":"cloud","networking":{"type":"limited","allowed_hosts":["x"]}}`: "networking",
		`{"type":"cloud","packages":{"npm":["left-pad"]}}`:                       "installing packages",
		`{"type":"self_hosted","extra":1}`:                                       "extra",
		`{"type":"vm"}`:                                                          "config.type",
	} {
		_, err := parseEnvConfig(raw(in))
		require.ErrorContains(t, err, part, in)
	}
}

func TestCursorsAndLists(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	c := encodeCursor(at, "agent_x")
	gotAt, gotID, err := decodeCursor(*c)
	require.NoError(t, err)
	require.Equal(t, at, gotAt)
	require.Equal(t, "agent_x", gotID)
	for _, bad := range []string{"!!", "bm9jb2xvbg", ""} {
		_, _, err := decodeCursor(bad)
		require.Error(t, err, bad)
	}
	p, err := parseList("t", url.Values{"limit": {"5"}, "include_archived": {"true"}, "page": {*c}})
	require.NoError(t, err)
	require.Equal(t, 5, p.Limit)
	require.True(t, p.IncludeArchived)
	require.Equal(t, "agent_x", p.AfterID)
	for q, part := range map[string]string{"limit=0": "limit", "limit=101": "limit", "include_archived=maybe": "include_archived", "sort=x": `"sort"`} {
		v, _ := url.ParseQuery(q)
		_, err := parseList("t", v)
		require.ErrorContains(t, err, part, q)
	}
}

func TestIsBeta(t *testing.T) {
	t.Parallel()
	require.True(t, IsBeta([]string{"managed-agents-2026-04-01"}))
	require.True(t, IsBeta([]string{"files-api-2025-04-14, managed-agents-2026-04-01"}))
	require.True(t, IsBeta([]string{"x", "managed-agents-2026-04-01"}))
	require.False(t, IsBeta(nil))
	require.False(t, IsBeta([]string{"files-api-2025-04-14"}))
}
