// Package tool defines what an agent can call: the Tool interface, a
// registry, and agentd's built-in tools. MCP and HTTP tools (later) implement
// the same interface.
package tool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/agentd/agentd/internal/llm"
)

// ErrUnknown is returned for a tool name nobody registered.
var ErrUnknown = errors.New("unknown tool")

// Tool is something the model may call.
type Tool interface {
	// Spec is the definition the model sees.
	Spec() llm.ToolSpec
	// Call runs the tool. An error becomes an is_error tool_result the
	// model can react to; it never fails the run.
	Call(ctx context.Context, input json.RawMessage) (string, error)
}

// Registry maps names to tools. It is built at start-up and read-only after.
type Registry struct {
	tools map[string]Tool
}

// NewRegistry returns a registry holding tools.
func NewRegistry(tools ...Tool) (*Registry, error) {
	r := &Registry{tools: make(map[string]Tool, len(tools))}
	for _, t := range tools {
		name := t.Spec().Name
		if _, dup := r.tools[name]; dup {
			return nil, fmt.Errorf("tool %q registered twice", name)
		}
		r.tools[name] = t
	}
	return r, nil
}

// Get returns the named tool.
func (r *Registry) Get(name string) (Tool, error) {
	t, ok := r.tools[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	return t, nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.tools))
	for n := range r.tools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Builtins returns agentd's built-in, side-effect-free tools.
func Builtins(now func() time.Time) []Tool {
	if now == nil {
		now = time.Now
	}
	return []Tool{clock{now: now}, calculator{}, wordCount{}}
}

type clock struct{ now func() time.Time }

func (clock) Spec() llm.ToolSpec {
	return llm.ToolSpec{
		Name:        "clock",
		Description: "Returns the current date and time in UTC (RFC 3339), or in the given IANA time zone.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string","description":"IANA time zone, e.g. Europe/Paris.","default":"UTC"}}}`),
	}
}

func (c clock) Call(_ context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Timezone string `json:"timezone"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	t := c.now().UTC()
	if in.Timezone != "" && in.Timezone != "UTC" {
		loc, err := time.LoadLocation(in.Timezone)
		if err != nil {
			// The model often invents zone names; fall back instead of
			// failing the call.
			return t.Format(time.RFC3339) + " (unknown time zone " + in.Timezone + ", showing UTC)", nil
		}
		t = t.In(loc)
	}
	return t.Format(time.RFC3339), nil
}

type calculator struct{}

func (calculator) Spec() llm.ToolSpec {
	return llm.ToolSpec{
		Name:        "calculator",
		Description: "Computes a op b for op one of + - * / ^ (power).",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"},"op":{"type":"string","enum":["+","-","*","/","^"]},"b":{"type":"number"}},"required":["a","op","b"]}`),
	}
}

func (calculator) Call(_ context.Context, input json.RawMessage) (string, error) {
	var in struct {
		A  *float64 `json:"a"`
		Op string   `json:"op"`
		B  *float64 `json:"b"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	if in.A == nil || in.B == nil {
		return "", errors.New("a and b are required numbers")
	}
	a, b := *in.A, *in.B
	var r float64
	switch in.Op {
	case "+":
		r = a + b
	case "-":
		r = a - b
	case "*":
		r = a * b
	case "/":
		if b == 0 {
			return "", errors.New("division by zero")
		}
		r = a / b
	case "^":
		r = math.Pow(a, b)
	default:
		return "", fmt.Errorf("op must be one of + - * / ^, got %q", in.Op)
	}
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return "", errors.New("result is not a finite number")
	}
	out, _ := json.Marshal(r)
	return string(out), nil
}

type wordCount struct{}

func (wordCount) Spec() llm.ToolSpec {
	return llm.ToolSpec{
		Name:        "word_count",
		Description: "Counts the words and characters of a text.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
	}
}

func (wordCount) Call(_ context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Text string `json:"text"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	words := len(strings.FieldsFunc(in.Text, unicode.IsSpace))
	return fmt.Sprintf(`{"words":%d,"characters":%d}`, words, len([]rune(in.Text))), nil
}

func decodeInput(input json.RawMessage, v any) error {
	if len(input) == 0 {
		return nil
	}
	if err := json.Unmarshal(input, v); err != nil {
		return fmt.Errorf("invalid input: %w", err)
	}
	return nil
}

// Client is a tool the client executes (a custom tool of a Managed Agents
// agent): the model sees its spec, agentd never calls it. A run that
// reaches a call of it pauses until the client sends the call's result
// (see run.Runs.SubmitToolResult).
type Client struct {
	S llm.ToolSpec
}

// Spec implements Tool.
func (c Client) Spec() llm.ToolSpec { return c.S }

// Call implements Tool; it is never called by the run loop, which pauses
// for the client instead.
func (c Client) Call(context.Context, json.RawMessage) (string, error) {
	return "", fmt.Errorf("tool %s is executed by the client, not by agentd", c.S.Name)
}

// ExecutedByClient marks the tool as the client's (see IsClient).
func (Client) ExecutedByClient() bool { return true }

// IsClient reports whether t is executed by the client (a Client, or a
// tool that says so).
func IsClient(t Tool) bool {
	c, ok := t.(interface{ ExecutedByClient() bool })
	return ok && c.ExecutedByClient()
}
