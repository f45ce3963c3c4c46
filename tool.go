package agentd

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/tool"
)

// Tool is a tool written in Go, made by [NewTool] and given to [New] with
// [WithTools].
type Tool struct {
	impl tool.Tool
}

// Name is the tool's name, as agents' Tools lists and the model name it.
func (t Tool) Name() string { return t.impl.Spec().Name }

// InputSchema is the JSON schema of the tool's input that the model sees.
func (t Tool) InputSchema() json.RawMessage { return t.impl.Spec().InputSchema }

// toolName is what the Messages API accepts as a tool name.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// NewTool makes a tool of fn. Its input schema is derived from In, a
// struct: a field's JSON name is its property, fields without omitempty
// or omitzero are required, and a `jsonschema:"..."` tag is the
// property's description (github.com/google/jsonschema-go). The model's
// input is validated against the schema and decoded into In before fn is
// called; an invalid input, an error returned by fn or a panic in fn
// becomes an error result the model sees (the run goes on). fn's string is
// the result the model reads; it runs with the run's context.
func NewTool[In any](name, description string, fn func(ctx context.Context, in In) (string, error)) (Tool, error) {
	if !toolName.MatchString(name) {
		return Tool{}, fmt.Errorf("agentd: tool name %q: want 1-64 letters, digits, '_' or '-'", name)
	}
	if fn == nil {
		return Tool{}, fmt.Errorf("agentd: tool %s: nil function", name)
	}
	schema, err := jsonschema.For[In](nil)
	if err != nil {
		return Tool{}, fmt.Errorf("agentd: tool %s: input schema: %w", name, err)
	}
	if schema.Type != "object" {
		return Tool{}, fmt.Errorf("agentd: tool %s: the input must be a struct (a JSON object), not %q", name, schema.Type)
	}
	resolved, err := schema.Resolve(nil)
	if err != nil {
		return Tool{}, fmt.Errorf("agentd: tool %s: input schema: %w", name, err)
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		return Tool{}, fmt.Errorf("agentd: tool %s: input schema: %w", name, err)
	}
	return Tool{impl: &goTool[In]{
		spec:   llm.ToolSpec{Name: name, Description: description, InputSchema: raw},
		schema: resolved,
		fn:     fn,
	}}, nil
}

// MustTool is NewTool that panics on an error, for tools declared at
// package level.
func MustTool[In any](name, description string, fn func(ctx context.Context, in In) (string, error)) Tool {
	t, err := NewTool(name, description, fn)
	if err != nil {
		panic(err)
	}
	return t
}

// goTool adapts a typed Go function to the loop's tool.Tool.
type goTool[In any] struct {
	spec   llm.ToolSpec
	schema *jsonschema.Resolved
	fn     func(context.Context, In) (string, error)
}

func (g *goTool[In]) Spec() llm.ToolSpec { return g.spec }

func (g *goTool[In]) Call(ctx context.Context, input json.RawMessage) (out string, err error) {
	if len(input) == 0 {
		input = json.RawMessage("{}")
	}
	var generic any
	if err := json.Unmarshal(input, &generic); err != nil {
		return "", fmt.Errorf("invalid input: %w", err)
	}
	if err := g.schema.Validate(generic); err != nil {
		return "", fmt.Errorf("invalid input: %w", err)
	}
	var in In
	if err := json.Unmarshal(input, &in); err != nil {
		return "", fmt.Errorf("invalid input: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = "", fmt.Errorf("tool %s panicked: %v", g.spec.Name, p)
		}
	}()
	return g.fn(ctx, in)
}
