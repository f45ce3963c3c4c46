package managed

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzCatalog is the configured tool sources the agent fuzz target checks
// toolsets against.
var fuzzCatalog = Catalog{AgentdToolset: {"clock", "calculator"}, "kv": nil}

// decodeAgentBody decodes a create or update body as the server does
// (unknown fields refused).
func decodeAgentBody(body []byte) (AgentRequest, bool) {
	var req AgentRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return req, dec.Decode(&req) == nil
}

// FuzzAgentRequest feeds POST /v1/agents bodies (from outside) to the
// create path's validation. Oracle: a refusal is an *InvalidError with a
// message; an accepted agent has a name (1–256 bytes) and a model, at most
// 16 metadata pairs, distinct tool names; the same body gives the same
// agent twice; sent again as an update of the agent it made, it changes
// nothing; and the agent survives the store's JSON round trip unchanged.
func FuzzAgentRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","model":"m"}`,
		`{"name":"a","model":{"id":"claude-sonnet-4-5","speed":"standard"},"system":"be brief","description":null}`,
		`{"name":"a","model":"m","tools":[{"type":"custom","name":"lookup","description":"d","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}},
			{"type":"mcp_toolset","mcp_server_name":"agentd","configs":[{"name":"clock","permission_policy":{"type":"always_allow"}}]},
			{"type":"mcp_toolset","mcp_server_name":"kv"},
			{"type":"mcp_toolset","mcp_server_name":"docs","default_config":{"enabled":false}}],
			"mcp_servers":[{"type":"url","name":"docs","url":"https://x.example/mcp"}],"metadata":{"k":"v","x":null}}`,
		`{"model":"m"}`,
		`{"name":"a","model":"m","tools":[{"type":"agent_toolset_20260401"}]}`,
		`{"name":"a","model":"m","tools":[{"type":"custom","name":"x","description":"d","input_schema":{}},{"type":"custom","name":"x","description":"d","input_schema":{}}]}`,
		`{"name":"a","model":"m","tools":[{"type":"mcp_toolset","mcp_server_name":"kv","default_config":{"permission_policy":{"type":"auto"}}}]}`,
		`{"name":"a","model":"m","mcp_servers":[{"name":"s","url":"ftp://x"}]}`,
		`{"name":"a","model":"m","multiagent":{"type":"coordinator"},"skills":[]}`,
		`{"name":"a","model":"m","execution_identity":{"type":"service_account"},"version":3}`,
		`{"name":"\u00e9\ud800","model":"  "}`,
		`{"name":"a","model":null,"tools":null,"mcp_servers":null,"metadata":{}}`,
		`{"name":"a","model":"m","unknown":1}`,
		`{"name":"a","model":"m"} trailing`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ok := decodeAgentBody(body)
		if !ok {
			return
		}
		c, err := applyAgentRequest(AgentConfig{}, req, true, fuzzCatalog)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Message == "" {
				t.Fatalf("refusal is %T %v, want an *InvalidError with a message", err, err)
			}
			return
		}
		if strings.TrimSpace(c.Name) == "" || len(c.Name) > 256 {
			t.Fatalf("accepted name %q", c.Name)
		}
		if strings.TrimSpace(c.Model.ID) == "" {
			t.Fatalf("accepted model %+v", c.Model)
		}
		if c.Metadata == nil || len(c.Metadata) > maxMetadataPairs {
			t.Fatalf("accepted metadata %v", c.Metadata)
		}
		names := map[string]bool{}
		for _, tl := range c.Tools {
			if tl.Type != ToolCustom {
				continue
			}
			if names[tl.Name] {
				t.Fatalf("tool %q accepted twice", tl.Name)
			}
			names[tl.Name] = true
		}
		again, err := applyAgentRequest(AgentConfig{}, req, true, fuzzCatalog)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("the same body gave %+v, then %+v (%v)", c, again, err)
		}
		req.Version = nil // update checks the version against the store, not here
		up, err := applyAgentRequest(c, req, false, fuzzCatalog)
		if err != nil {
			t.Fatalf("the body that created the agent, as its update: %v", err)
		}
		if !reflect.DeepEqual(c, up) {
			t.Fatalf("the body that created the agent, as its update, changed it:\n%+v\n%+v", c, up)
		}
		stored, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("store the agent: %v", err)
		}
		var back AgentConfig
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatalf("read the stored agent back: %v", err)
		}
		restored, _ := json.Marshal(back)
		if !bytes.Equal(stored, restored) {
			t.Fatalf("the stored agent changed on its way back:\n%s\n%s", stored, restored)
		}
	})
}

// FuzzParseBudget feeds a session's budget (from outside) to its parser.
// Oracle: a refusal is an *InvalidError; an accepted budget is a limit of
// a positive whole number of cents in USD, the same twice.
func FuzzParseBudget(f *testing.F) {
	for _, s := range []string{
		`{"type":"limit","max_list_cost":{"amount":"500","currency":"USD"}}`,
		`{"max_list_cost":{"amount":"1","currency":"USD"}}`,
		`{"type":"limit","max_list_cost":{"amount":"0","currency":"USD"}}`,
		`{"type":"limit","max_list_cost":{"amount":"-5","currency":"USD"}}`,
		`{"type":"limit","max_list_cost":{"amount":"5","currency":"EUR"}}`,
		`{"type":"limit","max_list_cost":{"amount":5,"currency":"USD"}}`,
		`{"type":"cap"}`,
		`{"type":"limit","extra":1}`,
		`null`,
		`"500"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := parseBudget(raw)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Message == "" {
				t.Fatalf("refusal is %T %v, want an *InvalidError with a message", err, err)
			}
			return
		}
		if b == nil || b.Type != "limit" || b.MaxListCost.Currency != "USD" || !amountRE.MatchString(b.MaxListCost.Amount) ||
			!utf8.ValidString(b.MaxListCost.Amount) {
			t.Fatalf("accepted budget %+v", b)
		}
		again, err := parseBudget(raw)
		if err != nil || !reflect.DeepEqual(b, again) {
			t.Fatalf("the same budget gave %+v, then %+v (%v)", b, again, err)
		}
	})
}
