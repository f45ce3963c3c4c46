package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/docs"
	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/llm/resilience"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// The OpenAPI contract (docs/openapi.yaml) is kept true by two tests: the
// routes the server registers against the spec's paths and its exclusion
// list, and real responses of a whole agentd validated against the spec
// with kin-openapi.

const (
	openapiAdminToken = "openapi-admin-token"
	approverAgent     = "approver"
)

// withServerConfig adjusts the server config of setupRuns last.
func withServerConfig(fn func(*server.Config)) runsOption {
	return func(r *runsConfig) { r.serverConfig = fn }
}

// contractStore is what the routes that are off by default need.
type contractStore interface {
	store.Audit
	store.Usage
	server.FeedbackStore
}

// setupContract starts agentd (SQLite, workers, the sim) with every route
// of the API on: runs, audit, usage, feedback, the gateway and Managed
// Agents routes, the admin API, and the console mounted.
func setupContract(t *testing.T, drains *atomic.Int32) (*runsBundle, *server.Health) {
	t.Helper()
	var health *server.Health
	b := setupRuns(t, "sqlite", withServerConfig(func(c *server.Config) {
		health = c.Health
		st := c.Conversations.(contractStore)
		// An agent whose calculator calls wait for a person's approval.
		c.Chat.Agents[approverAgent] = &run.ChatAgent{Agent: run.Agent{
			Name: approverAgent, Model: testModel, Tools: tool.Builtins(nil), MaxSteps: 8, MaxTokens: 1024,
			Timeout: 30 * time.Second, Approval: run.ApprovalPolicy{Tools: []string{"calculator"}},
		}, MaxMessages: 100}
		c.Agents = append(c.Agents, server.AgentInfo{Name: approverAgent, Model: testModel, Tools: []server.ToolInfo{}})
		c.Audit, c.Usage, c.Feedback = st, st, st
		c.Chat.Audit = st // approvals are audited
		// Registered only: the gateway and Managed Agents routes are
		// Anthropic's protocol, excluded from the spec and not called.
		c.Gateway = http.NotFoundHandler()
		c.Managed = &managed.Service{}
		c.AdminToken = openapiAdminToken
		c.Abuse = abuse.New(abuse.Config{Multiple: 1000, MinRequests: 1_000_000})
		c.Drain = func() { drains.Add(1) }
		c.Keys = func() []resilience.KeyStatus {
			return []resilience.KeyStatus{{Fingerprint: "0a1b2c3d", State: "active", Primary: true, Source: "env", AddedAt: time.Now()}}
		}
	}))
	b.API.Mount(http.NotFoundHandler()) // the console's patterns
	return b, health
}

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "docs/openapi.yaml is a valid OpenAPI document")
	require.True(t, doc.IsOpenAPI31OrLater())
	return doc
}

// excludedRoutes reads x-agentd-excluded: the routes deliberately not in
// the spec, each group with its reason.
func excludedRoutes(t *testing.T, doc *openapi3.T) []string {
	t.Helper()
	raw, err := json.Marshal(doc.Extensions["x-agentd-excluded"])
	require.NoError(t, err)
	var groups []struct {
		Reason string   `json:"reason"`
		Routes []string `json:"routes"`
	}
	require.NoError(t, json.Unmarshal(raw, &groups))
	require.NotEmpty(t, groups, "x-agentd-excluded lists the routes not in the spec")
	var out []string
	for _, g := range groups {
		require.NotEmpty(t, g.Reason, "every exclusion says why: %v", g.Routes)
		out = append(out, g.Routes...)
	}
	return out
}

func TestOpenAPIRoutesMatchServer(t *testing.T) {
	var drains atomic.Int32
	b, _ := setupContract(t, &drains)
	doc := loadSpec(t)
	served := b.API.Routes()
	require.Contains(t, served, "GET /openapi.json")

	var inSpec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec = append(inSpec, method+" "+path)
		}
	}
	excluded := excludedRoutes(t, doc)

	for _, p := range served {
		require.Truef(t, slices.Contains(inSpec, p) || slices.Contains(excluded, p),
			"the server registers %q: describe it in docs/openapi.yaml or list it in x-agentd-excluded with a reason", p)
	}
	for _, p := range inSpec {
		require.Containsf(t, served, p, "docs/openapi.yaml describes %q, which the server does not serve", p)
		require.NotContainsf(t, excluded, p, "%q is both described and excluded", p)
	}
	for _, p := range excluded {
		require.Containsf(t, served, p, "x-agentd-excluded lists %q, which the server does not serve", p)
	}
}

// contract calls a real agentd and validates each exchange against the
// spec.
type contract struct {
	t      *testing.T
	b      *runsBundle
	router routers.Router
}

type call struct {
	method, path, body string
	header             map[string]string
	// badRequest: the request breaks the spec on purpose (only the
	// response is validated).
	badRequest bool
}

// do sends c, requires status want, and validates the request (unless
// c.badRequest) and the response against the spec, undocumented statuses
// included.
func (k *contract) do(c call, want int) response {
	t := k.t
	t.Helper()
	resp := k.b.do(t, c.method, c.path, c.body, c.header)
	require.Equalf(t, want, resp.Status, "%s %s: %s", c.method, c.path, resp.Body)

	req, err := http.NewRequest(c.method, k.b.URL+c.path, strings.NewReader(c.body))
	require.NoError(t, err)
	if c.body != "" {
		req.Header.Set("Content-Type", jsonType)
	}
	for name, v := range c.header {
		req.Header.Set(name, v)
	}
	route, params, err := k.router.FindRoute(req)
	require.NoErrorf(t, err, "%s %s is in the spec", c.method, c.path)
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if !c.badRequest {
		require.NoErrorf(t, openapi3filter.ValidateRequest(context.Background(), in), "request %s %s", c.method, c.path)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.Status, Header: resp.Header, Options: opts}
	out.SetBodyBytes(resp.Body)
	require.NoErrorf(t, openapi3filter.ValidateResponse(context.Background(), out), "response of %s %s (%d): %s", c.method, c.path, resp.Status, resp.Body)
	return resp
}

// events validates the data of every event of an SSE body against the
// schema x-agentd-events names for its type (an unknown type fails).
func (k *contract) events(doc *openapi3.T, body []byte) []sseEvent {
	t := k.t
	t.Helper()
	names, ok := doc.Components.Schemas["EventStream"].Value.Extensions["x-agentd-events"].(map[string]any)
	require.True(t, ok, "EventStream has x-agentd-events")
	events := parseSSE(t, bytes.NewReader(body))
	require.NotEmpty(t, events)
	for _, e := range events {
		name, ok := names[e.Event].(string)
		require.Truef(t, ok, "event type %q is in x-agentd-events", e.Event)
		k.schema(doc, name, []byte(e.Data))
	}
	return events
}

// schema validates v against components/schemas/name.
func (k *contract) schema(doc *openapi3.T, name string, data []byte) {
	k.t.Helper()
	s := doc.Components.Schemas[name]
	require.NotNilf(k.t, s, "schema %s", name)
	var v any
	require.NoError(k.t, json.Unmarshal(data, &v))
	require.NoErrorf(k.t, s.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()), "%s: %s", name, data)
}

func TestOpenAPIResponsesValidate(t *testing.T) {
	openapi3filter.RegisterBodyDecoder(eventStream, openapi3filter.PlainBodyDecoder)
	t.Cleanup(func() { openapi3filter.UnregisterBodyDecoder(eventStream) })
	var drains atomic.Int32
	b, health := setupContract(t, &drains)
	doc := loadSpec(t)
	doc.Servers = openapi3.Servers{{URL: b.URL}}
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	k := &contract{t: t, b: b, router: router}

	// What GET /openapi.json serves is this spec.
	served := k.do(call{method: "GET", path: "/openapi.json"}, 200)
	want, err := docs.OpenAPIJSON()
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(served.Body))
	_, err = openapi3.NewLoader().LoadFromData(served.Body)
	require.NoError(t, err, "the served JSON loads as OpenAPI")

	k.do(call{method: "GET", path: "/livez"}, 200)
	k.do(call{method: "GET", path: "/readyz"}, 503)
	k.do(call{method: "GET", path: "/healthz"}, 503)
	health.SetReady(true)
	health.Check(t.Context())
	k.do(call{method: "GET", path: "/readyz"}, 200)
	k.do(call{method: "GET", path: "/healthz"}, 200)
	k.do(call{method: "GET", path: "/v1/agents"}, 200)

	// Chat: JSON, then streamed in the same conversation.
	resp := k.do(call{method: "POST", path: "/v1/chat", body: `{"agent":"demo","message":"hello"}`}, 200)
	var ans answer
	require.NoError(t, json.Unmarshal(resp.Body, &ans))
	require.NotEmpty(t, ans.ConversationID)
	resp = k.do(call{method: "POST", path: "/v1/chat", body: mustJSON(t, map[string]any{
		"agent": "demo", "message": "and again", "conversation_id": ans.ConversationID, "stream": true})}, 200)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), eventStream))
	events := k.events(doc, resp.Body)
	require.Equal(t, "done", events[len(events)-1].Event)
	k.do(call{method: "GET", path: "/v1/conversations/" + ans.ConversationID}, 200)

	// An async run to completion, its events, the list, cancel and
	// interrupt of the finished run (200, unchanged).
	resp = k.do(call{method: "POST", path: "/v1/runs", body: `{"agent":"demo","message":"What is 6 times 7? Use the calculator."}`,
		header: map[string]string{"Idempotency-Key": "openapi-1"}}, 202)
	runID := decodeRun(t, resp.Body).ID
	b.waitRun(t, runID, "succeeded")
	k.do(call{method: "POST", path: "/v1/runs", body: `{"agent":"demo","message":"What is 6 times 7? Use the calculator."}`,
		header: map[string]string{"Idempotency-Key": "openapi-1"}}, 200)
	got := decodeRun(t, k.do(call{method: "GET", path: "/v1/runs/" + runID}, 200).Body)
	require.Equal(t, "succeeded", got.Status)
	resp = k.do(call{method: "GET", path: "/v1/runs/" + runID + "/events"}, 200)
	events = k.events(doc, resp.Body)
	require.Equal(t, "done", events[len(events)-1].Event)
	require.Contains(t, eventTypes(events), "tool_result", "the run used a tool: its events are checked too")
	k.do(call{method: "GET", path: "/v1/runs/" + runID + "/events?after=1"}, 200)
	k.do(call{method: "GET", path: "/v1/runs?limit=1"}, 200)
	k.do(call{method: "GET", path: "/v1/runs?status=succeeded&agent=demo"}, 200)
	k.do(call{method: "POST", path: "/v1/runs/" + runID + "/cancel"}, 200)
	k.do(call{method: "POST", path: "/v1/runs/" + runID + "/interrupt"}, 200)
	// A second run canceled while queued or running (200 or 202; which
	// one depends on the workers), then read back.
	resp = k.do(call{method: "POST", path: "/v1/runs", body: `{"agent":"other","message":"hi"}`}, 202)
	second := decodeRun(t, resp.Body).ID
	resp = b.do(t, "POST", "/v1/runs/"+second+"/cancel", "", nil)
	require.Contains(t, []int{200, 202}, resp.Status, "%s", resp.Body)
	k.do(call{method: "GET", path: "/v1/runs/" + second}, 200)

	// Approvals: the run waits for no call.
	resp = k.do(call{method: "POST", path: "/v1/runs/" + runID + "/approvals",
		body: `{"tool_use_id":"toolu_none","decision":"approve"}`}, 404)
	require.Contains(t, string(resp.Body), `"not_found"`)

	// Approvals: a chat that pauses for a person, the paused run, the
	// decision (200), the run resumed to its end with the decision in its
	// events.
	resp = k.do(call{method: "POST", path: "/v1/chat", body: `{"agent":"approver","message":"What is 6 times 7? Use the calculator."}`}, 200)
	var paused struct {
		RunID            string `json:"run_id"`
		StopReason       string `json:"stop_reason"`
		PendingApprovals []struct {
			ToolUseID string `json:"tool_use_id"`
		} `json:"pending_approvals"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &paused))
	require.Equal(t, "approval_required", paused.StopReason)
	require.Len(t, paused.PendingApprovals, 1)
	require.Equal(t, "requires_action", decodeRun(t, k.do(call{method: "GET", path: "/v1/runs/" + paused.RunID}, 200).Body).Status)
	k.do(call{method: "POST", path: "/v1/runs/" + paused.RunID + "/approvals",
		body: mustJSON(t, map[string]any{"tool_use_id": paused.PendingApprovals[0].ToolUseID, "decision": "approve", "reason": "ok"})}, 200)
	b.waitRun(t, paused.RunID, "succeeded")
	events = k.events(doc, k.do(call{method: "GET", path: "/v1/runs/" + paused.RunID + "/events"}, 200).Body)
	require.Contains(t, eventTypes(events), "approval_decided")
	k.do(call{method: "POST", path: "/v1/runs/" + paused.RunID + "/approvals",
		body: mustJSON(t, map[string]any{"tool_use_id": paused.PendingApprovals[0].ToolUseID, "decision": "deny"})}, 409)
	resp = k.do(call{method: "GET", path: "/v1/audit?run_id=" + paused.RunID}, 200)
	require.Contains(t, string(resp.Body), `"phase":"approval"`, "the audit log has the approval: its entries are checked")

	// Feedback: first (201), replaced (200), listed, summed up.
	k.do(call{method: "POST", path: "/v1/runs/" + runID + "/feedback", body: `{"rating":-1,"comment":"slow","tags":["speed"]}`}, 201)
	k.do(call{method: "POST", path: "/v1/runs/" + runID + "/feedback", body: `{"rating":1}`}, 200)
	k.do(call{method: "GET", path: "/v1/feedback?agent=demo&rating=positive&limit=10"}, 200)
	k.do(call{method: "GET", path: "/v1/feedback/summary"}, 200)

	k.do(call{method: "GET", path: "/v1/usage?group_by=model"}, 200)
	k.do(call{method: "GET", path: "/v1/audit?run_id=" + runID}, 200)
	k.do(call{method: "GET", path: "/metrics"}, 200)

	// Errors have the one error shape.
	k.do(call{method: "GET", path: "/v1/audit", badRequest: true}, 400)
	k.do(call{method: "GET", path: "/v1/runs/run_nope"}, 404)
	k.do(call{method: "POST", path: "/v1/chat", body: `{"agent":"demo","message":"x","foo":1}`, badRequest: true}, 400)
	k.do(call{method: "POST", path: "/v1/chat", body: `{"agent":"nope","message":"x"}`}, 404)
	k.do(call{method: "POST", path: "/v1/runs/" + runID + "/feedback", body: `{"rating":5}`, badRequest: true}, 400)
	k.do(call{method: "DELETE", path: "/v1/conversations/" + ans.ConversationID}, 204)
	k.do(call{method: "GET", path: "/v1/conversations/" + ans.ConversationID}, 404)

	// The admin API.
	admin := map[string]string{"Authorization": "Bearer " + openapiAdminToken}
	k.do(call{method: "GET", path: "/admin/keys"}, 401)
	k.do(call{method: "GET", path: "/admin/keys", header: admin}, 200)
	k.do(call{method: "GET", path: "/admin/abuse", header: admin}, 200)
	k.do(call{method: "DELETE", path: "/admin/abuse/key_none", header: admin}, 404)
	k.do(call{method: "POST", path: "/admin/drain", header: admin}, 202)
	require.EqualValues(t, 1, drains.Load())
}

// TestOpenAPIAuthErrors validates the answers of API keys: none (401)
// and one without the route's scope (403), and a key that works.
func TestOpenAPIAuthErrors(t *testing.T) {
	b := setupRuns(t, "sqlite", withRunsAuth())
	doc := loadSpec(t)
	doc.Servers = openapi3.Servers{{URL: b.URL}}
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	k := &contract{t: t, b: b, router: router}
	chatOnly := newTestKey(t, b.St.(store.APIKeys), "acme", "chat")
	k.do(call{method: "GET", path: "/v1/runs"}, 401)
	k.do(call{method: "GET", path: "/v1/runs", header: chatOnly.bearer()}, 403)
	k.do(call{method: "GET", path: "/v1/agents", header: chatOnly.bearer()}, 200)
	k.do(call{method: "GET", path: "/v1/agents", header: map[string]string{"x-api-key": chatOnly.Token}}, 200)
}

// TestOpenAPIOverflowAndOverload validates a chat refused for memory:
// queued as a run (202, admission.overflow: queue) or refused (503).
func TestOpenAPIOverflowAndOverload(t *testing.T) {
	for _, overflow := range []bool{true, false} {
		b := setupRuns(t, "sqlite", withChats(shedding(), overflow))
		doc := loadSpec(t)
		doc.Servers = openapi3.Servers{{URL: b.URL}}
		router, err := legacy.NewRouter(doc)
		require.NoError(t, err)
		k := &contract{t: t, b: b, router: router}
		want := http.StatusServiceUnavailable
		if overflow {
			want = http.StatusAccepted
		}
		k.do(call{method: "POST", path: "/v1/chat", body: `{"agent":"demo","message":"hello while memory is high"}`}, want)
	}
}

// TestOpenAPISpecCatchesDrift proves the validation can fail: a response
// with a field the spec does not know is refused.
func TestOpenAPISpecCatchesDrift(t *testing.T) {
	doc := loadSpec(t)
	var v any
	require.NoError(t, json.Unmarshal([]byte(`{"error":{"type":"not_found","message":"x","request_id":"req_1","extra":1}}`), &v))
	require.Error(t, doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()))
	require.NoError(t, json.Unmarshal([]byte(`{"status":"teleported"}`), &v))
	require.Error(t, doc.Components.Schemas["Probe"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()))
}
