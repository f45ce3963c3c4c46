package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/tool"
)

// A server's tools as agentd's tool.Tool: selection per agent, naming, and
// calls with their results and errors.

// ToolOptions select and mark a server's tools for one agent.
type ToolOptions struct {
	// Allow are the tool names the agent may use; path.Match globs ("kv_*",
	// "*"). Literal names are offered also while the server is down (their
	// calls fail as unavailable until it is up); globs match the tools
	// known when Tools is called.
	Allow []string
	// Consequential reports whether calls of a tool (server's name) carry
	// an idempotency key in _meta.
	Consequential func(name string) bool
}

// Tools returns one tool.Tool per allowed tool, in name order. The model
// sees Config.ToolPrefix + the server's name; specs follow the server's
// latest tool list.
func (s *Server) Tools(o ToolOptions) ([]tool.Tool, error) {
	for _, p := range o.Allow {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("bad tool pattern %q: %w", p, err)
		}
	}
	names := map[string]bool{}
	for _, p := range o.Allow {
		if !isGlob(p) {
			names[p] = true
			continue
		}
		for _, n := range s.ToolNames() {
			if ok, _ := path.Match(p, n); ok {
				names[n] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []tool.Tool
	for _, n := range sorted {
		t := &mcpTool{s: s, name: n, exposed: ExposedName(s.cfg.ToolPrefix, n)}
		if o.Consequential != nil {
			t.consequential = o.Consequential(n)
		}
		out = append(out, t)
	}
	return out, nil
}

func isGlob(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// ExposedName is the name the model sees: prefix+name with every character
// outside [a-zA-Z0-9_-] replaced by "_", at most 64 bytes.
func ExposedName(prefix, name string) string {
	b := []byte(prefix + name)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

type mcpTool struct {
	s             *Server
	name          string // the server's
	exposed       string // the model's
	consequential bool
}

func (t *mcpTool) Spec() llm.ToolSpec {
	t.s.mu.Lock()
	d, ok := t.s.tools[t.name]
	t.s.mu.Unlock()
	if !ok {
		return llm.ToolSpec{
			Name:        t.exposed,
			Description: fmt.Sprintf("Tool %s of MCP server %s (currently unavailable).", t.name, t.s.cfg.Name),
			InputSchema: json.RawMessage(`{"type":"object"}`),
		}
	}
	spec := d.spec
	spec.Name = t.exposed
	return spec
}

func (t *mcpTool) Call(ctx context.Context, input json.RawMessage) (string, error) {
	cs, err := t.s.current(ctx, callWaitForSession)
	if _, open := breaker.AsOpen(err); open {
		return "", tool.CircuitOpen(t.exposed, err)
	}
	if err != nil {
		return "", err
	}
	t.s.mu.Lock()
	d, ok := t.s.tools[t.name]
	t.s.mu.Unlock()
	if !ok {
		return "", tool.Errorf(tool.KindUnavailable, "MCP server %s does not offer tool %s (offered: %s)", t.s.cfg.Name, t.name, strings.Join(t.s.ToolNames(), ", "))
	}
	if len(strings.TrimSpace(string(input))) == 0 {
		input = json.RawMessage(`{}`)
	}
	if !json.Valid(input) {
		return "", tool.Errorf(tool.KindInvalidInput, "input is not valid JSON")
	}
	params := &sdk.CallToolParams{Name: t.name, Arguments: input}
	if t.consequential {
		if key := tool.CallInfoFrom(ctx).IdempotencyKey(); key != "" {
			params.Meta = sdk.Meta{MetaIdempotencyKey: key}
		}
	}
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if _, open := breaker.AsOpen(err); open {
			// The server's breaker refused the request before it was
			// sent: the session is fine.
			return "", tool.CircuitOpen(t.exposed, err)
		}
		var we *jsonrpc.Error
		if errors.As(err, &we) && !connectionLevel(we.Code) {
			// The server answered with a JSON-RPC error (unknown tool,
			// invalid params, ...): the session is fine.
			return "", tool.Errorf(tool.KindToolError, "MCP server %s: %s (code %d)", t.s.cfg.Name, we.Message, we.Code)
		}
		// Connection-level failure (server crashed, malformed JSON-RPC,
		// HTTP error): reconnect.
		select {
		case t.s.kick <- struct{}{}:
		default:
		}
		t.s.drop(cs, err)
		return "", tool.Errorf(tool.KindUnavailable, "MCP server %s: call failed: %v", t.s.cfg.Name, err)
	}
	text, err := resultText(res)
	if err != nil {
		return "", tool.Errorf(tool.KindProtocol, "MCP server %s: %v", t.s.cfg.Name, err)
	}
	if res.IsError {
		return "", tool.Errorf(tool.KindToolError, "%s", text)
	}
	if d.output != nil && res.StructuredContent != nil {
		raw, err := json.Marshal(res.StructuredContent)
		if err == nil {
			err = d.output.Validate(raw)
		}
		if err != nil {
			return "", tool.Errorf(tool.KindInvalidOutput, "MCP tool %s returned structured content that does not match its output schema: %v", t.name, err)
		}
	}
	return text, nil
}

// connectionLevel reports whether a JSON-RPC error code means the request
// did not reach the server's tool (transport rejected it, e.g. an HTTP
// error or a lost session; either side closing): the session is replaced.
func connectionLevel(code int64) bool {
	switch code {
	case -32005, -32004, -32003: // rejected by transport, server/client closing
		return true
	}
	return false
}

// resultText renders a result's content: text as is, other content as a
// short placeholder; the structured content when there is no content.
func resultText(res *sdk.CallToolResult) (string, error) {
	var parts []string
	for _, c := range res.Content {
		switch x := c.(type) {
		case *sdk.TextContent:
			parts = append(parts, x.Text)
		case *sdk.ImageContent:
			parts = append(parts, fmt.Sprintf("[image (%s, %d bytes) omitted]", x.MIMEType, len(x.Data)))
		case *sdk.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio (%s, %d bytes) omitted]", x.MIMEType, len(x.Data)))
		case *sdk.EmbeddedResource:
			if x.Resource != nil && x.Resource.Text != "" {
				parts = append(parts, x.Resource.Text)
			} else if x.Resource != nil {
				parts = append(parts, fmt.Sprintf("[resource %s omitted]", x.Resource.URI))
			}
		case *sdk.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource link %s]", x.URI))
		default:
			parts = append(parts, fmt.Sprintf("[%T content omitted]", c))
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		raw, err := json.Marshal(res.StructuredContent)
		if err != nil {
			return "", fmt.Errorf("structured content: %w", err)
		}
		return string(raw), nil
	}
	return strings.Join(parts, "\n"), nil
}

// ServerToolName is the tool's name on its server (the model sees
// ToolPrefix + this).
func (t *mcpTool) ServerToolName() string { return t.name }
