package managed

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// checkInvalid: a refusal of a body is an *InvalidError (400) with a message.
func checkInvalid(t *testing.T, data []byte, err error) {
	t.Helper()
	e, ok := AsInvalid(err)
	if !ok {
		t.Fatalf("error %T %v is not an InvalidError (body %q)", err, err, data)
	}
	if e.Message == "" {
		t.Fatalf("refusal without a message (body %q)", data)
	}
}

// FuzzAgentRequest is the body of POST /v1/agents (agent create): an
// arbitrary body decoded into AgentRequest and applied as a create
// (applyAgentRequest, with a catalog of agentd's toolset and one MCP
// server). It must never panic; a refusal is an InvalidError with a
// message; an accepted agent has a name and a model id, and applying an
// empty update to it is accepted too (what is accepted stays valid).
// Seeds: testdata/fuzz/FuzzAgentRequest.
func FuzzAgentRequest(f *testing.F) {
	f.Add([]byte(`{"name":"a","model":"claude-sonnet-4-5"}`))
	f.Add([]byte(`{"name":"a","model":{"id":"m","effort":"high"},"tools":[{"type":"custom","name":"lookup","description":"d","input_schema":{"type":"object"}},{"type":"mcp_toolset","mcp_server_name":"agentd","configs":[{"name":"clock","permission_policy":{"type":"always_allow"}}]}],"mcp_servers":[{"name":"docs","url":"https://x.example/mcp"}],"metadata":{"k":"v"}}`))
	cat := Catalog{AgentdToolset: {"clock", "calculator"}, "kv": nil}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req AgentRequest
		if json.Unmarshal(data, &req) != nil {
			return // the server's body decoder refuses it (FuzzDecode* cover that decoder)
		}
		c, err := applyAgentRequest(AgentConfig{}, req, true, cat)
		if err != nil {
			checkInvalid(t, data, err)
			return
		}
		if c.Name == "" || c.Model.ID == "" {
			t.Fatalf("accepted an agent without name or model: %+v from %q", c, data)
		}
		if _, err := applyAgentRequest(c, AgentRequest{}, false, cat); err != nil {
			t.Fatalf("an accepted agent refuses an empty update: %v (body %q)", err, data)
		}
	})
}

var centsRE = regexp.MustCompile(`^[1-9][0-9]{0,15}$`)

// FuzzSessionCreateRequest is the body of POST /v1/sessions: an arbitrary
// body decoded into SessionCreateRequest, its parts read by the parsers
// CreateSession uses (initial_events, agent, budget). It must never panic;
// a refusal is an InvalidError with a message; accepted initial events
// are at most 50 user.messages, an accepted agent reference has an id and
// no negative version, an accepted budget is a positive whole number of
// US cents.
// Seeds: testdata/fuzz/FuzzSessionCreateRequest.
func FuzzSessionCreateRequest(f *testing.F) {
	f.Add([]byte(`{"agent":"agent_1","environment_id":"env_1"}`))
	f.Add([]byte(`{"agent":{"type":"agent","id":"agent_1","version":2},"environment_id":"env_1","title":"t","budget":{"type":"limit","max_list_cost":{"amount":"150","currency":"USD"}},"initial_events":[{"type":"user.message","content":[{"type":"text","text":"hi"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req SessionCreateRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		evs, err := parseInitialEvents(req.InitialEvents)
		if err != nil {
			checkInvalid(t, data, err)
		} else {
			if len(evs) > maxInitialEvents {
				t.Fatalf("accepted %d initial events from %q", len(evs), data)
			}
			for _, e := range evs {
				if _, ok := e.(ClientUserMessage); !ok {
					t.Fatalf("accepted initial event %T from %q", e, data)
				}
			}
		}
		id, version, err := agentRef(req.Agent)
		if err != nil {
			checkInvalid(t, data, err)
		} else if id == "" || version < 0 {
			t.Fatalf("accepted agent %q version %d from %q", id, version, data)
		}
		if present(req.Budget) && !isNull(req.Budget) {
			b, err := parseBudget(req.Budget)
			if err != nil {
				checkInvalid(t, data, err)
			} else if b.Type != "limit" || b.MaxListCost.Currency != "USD" || !centsRE.MatchString(b.MaxListCost.Amount) {
				t.Fatalf("accepted budget %+v from %q", b, data)
			}
		}
	})
}

// FuzzSessionEvents is the body of POST /v1/sessions/{id}/events: an
// arbitrary body decoded as the server does (strictly, into
// SendEventsRequest) and parsed by ParseSendEvents, which SendEvents runs
// on the whole body before it applies any event. It must never panic; a
// refusal is an InvalidError with a message naming the events field; an
// accepted body has as many events as it sent, of the types it names,
// with at most one system.message, last and right after a user.message or
// a user.custom_tool_result;
// re-encoded, the accepted events parse to the same values (what is
// accepted is what the SDK would send for them).
// Seeds: testdata/fuzz/FuzzSessionEvents (bodies the SDK marshals, and
// near misses: a system.message first, not last, after a confirmation;
// an image; a thread id).
func FuzzSessionEvents(f *testing.F) {
	// As anthropic-sdk-go v2.15 sends them (client.Beta.Sessions.Events.Send);
	// testdata has more, written by marshalling the SDK's params.
	f.Add([]byte(`{"events":[{"content":[{"text":"hello there","type":"text"}],"type":"user.message"},{"content":[{"text":"Answer in French.","type":"text"}],"type":"system.message"}]}`))
	f.Add([]byte(`{"events":[{"result":"deny","tool_use_id":"toolu_01","deny_message":"not now","type":"user.tool_confirmation"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req SendEventsRequest
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if dec.Decode(&req) != nil {
			return // the server's body decoder refuses it
		}
		evs, err := ParseSendEvents(req)
		if err != nil {
			checkInvalid(t, data, err)
			if e, _ := AsInvalid(err); !strings.HasPrefix(e.Message, "events") {
				t.Fatalf("refusal %q does not name the events field (body %q)", e.Message, data)
			}
			return
		}
		if len(evs) != len(req.Events) || len(evs) == 0 {
			t.Fatalf("accepted %d events of %d from %q", len(evs), len(req.Events), data)
		}
		for i, e := range evs {
			var head struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(req.Events[i], &head) != nil || head.Type != e.EventType() {
				t.Fatalf("events[%d] sent as %q parsed as %s (body %q)", i, head.Type, e.EventType(), data)
			}
			if _, ok := e.(ClientSystemMessage); ok {
				if i != len(evs)-1 || i == 0 {
					t.Fatalf("accepted a system.message at %d of %d (body %q)", i, len(evs), data)
				}
				switch evs[i-1].(type) {
				case ClientUserMessage, ClientCustomToolResult:
				default:
					t.Fatalf("accepted a system.message after %s (body %q)", evs[i-1].EventType(), data)
				}
			}
		}
		body, err := json.Marshal(struct {
			Events []ClientEvent `json:"events"`
		}{evs})
		if err != nil {
			t.Fatalf("encode accepted events: %v (body %q)", err, data)
		}
		var again SendEventsRequest
		if err := json.Unmarshal(body, &again); err != nil {
			t.Fatalf("re-encoded body %s: %v", body, err)
		}
		evs2, err := ParseSendEvents(again)
		if err != nil {
			t.Fatalf("re-encoded body %s refused: %v (from %q)", body, err, data)
		}
		if !reflect.DeepEqual(evs, evs2) {
			t.Fatalf("re-encoded body %s parsed to %#v, not %#v", body, evs2, evs)
		}
	})
}
