// Package llm holds the model-facing types of agentd: a provider-neutral
// request/response shape in the Anthropic Messages wire format, the Model
// interface the agent loop calls, and the error type providers return.
//
// Providers live in sub-packages (anthropic/). Resilience decorators (retry,
// breaker, fallback, key pool, cache) wrap a Model and return a Model.
package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Message is one conversation message. Content is a JSON array of content
// blocks exactly as the Messages API takes them.
type Message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// Block is a content block (the subset agentd reads and writes).
type Block struct {
	Type string `json:"type"`
	// text
	Text string `json:"text,omitempty"`
	// tool_use
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// tool_result
	ToolUseID string `json:"tool_use_id,omitempty"`
	Content   string `json:"content,omitempty"`
	IsError   bool   `json:"is_error,omitempty"`
}

// ToolSpec is a tool definition offered to the model.
type ToolSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// Request is one model call.
type Request struct {
	Model     string
	System    string
	Messages  []Message
	Tools     []ToolSpec
	MaxTokens int
	// Passthrough, when set, makes the call a raw Messages API exchange
	// (the gateway): the provider sends Passthrough.Body as is, with Model
	// spliced in when it differs from Passthrough.Model (a fallback), and
	// hands a successful answer to Passthrough.Respond. System, Messages,
	// Tools and MaxTokens are then unused.
	Passthrough *Passthrough
}

// Passthrough is a raw call forwarded byte for byte: the layers of the
// resilience package (key pool, retry, limit, breaker, fallback) apply to it
// as to any call, and nothing of the body is parsed by the provider.
type Passthrough struct {
	// Path is the API path with the client's query string, if any:
	// "/v1/messages", "/v1/messages?beta=true",
	// "/v1/messages/count_tokens".
	Path string
	// Body is the client's request body.
	Body []byte
	// Model is the model the body names; ModelStart and ModelEnd delimit
	// its JSON string (quotes included) in Body, so that a fallback model
	// replaces just those bytes.
	Model                string
	ModelStart, ModelEnd int
	// Header holds the request headers to forward (anthropic-version,
	// anthropic-beta, ...): never credentials, hop-by-hop headers or
	// Content-Length, which the provider sets.
	Header http.Header
	// Respond relays a 2xx answer to the client. It returns the call's
	// usage (Response.Usage, Model, ID, StopReason as far as seen), and an
	// *Error with Streamed set once anything reached the client, so that
	// no layer repeats the call after that.
	Respond func(ctx context.Context, resp *http.Response) (Response, error)
}

// RawAnswer is an upstream non-2xx answer to a Passthrough call, kept
// whole so the gateway can relay it as the provider sent it. It is the Err
// of the *Error the provider returns.
type RawAnswer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a *RawAnswer) Error() string { return fmt.Sprintf("upstream answered %d", a.Status) }

// BodyFor returns the body to send for model: Body itself, or a copy with
// the model's JSON string replaced.
func (p *Passthrough) BodyFor(model string) ([]byte, error) {
	if model == "" || model == p.Model {
		return p.Body, nil
	}
	if p.ModelEnd <= p.ModelStart || p.ModelEnd > len(p.Body) {
		return nil, fmt.Errorf("passthrough: cannot replace the model of a body without one")
	}
	q, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("passthrough: encode model: %w", err)
	}
	out := make([]byte, 0, len(p.Body)-(p.ModelEnd-p.ModelStart)+len(q))
	out = append(out, p.Body[:p.ModelStart]...)
	out = append(out, q...)
	return append(out, p.Body[p.ModelEnd:]...), nil
}

// Usage counts tokens of one call.
type Usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// Add returns u + o.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		InputTokens:              u.InputTokens + o.InputTokens,
		OutputTokens:             u.OutputTokens + o.OutputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens + o.CacheCreationInputTokens,
		CacheReadInputTokens:     u.CacheReadInputTokens + o.CacheReadInputTokens,
	}
}

// Response is a finished model call.
type Response struct {
	ID         string  `json:"id"`
	Model      string  `json:"model"`
	Content    []Block `json:"content"`
	StopReason string  `json:"stop_reason"`
	Usage      Usage   `json:"usage"`
	// RequestID is the provider's request id (for support tickets).
	RequestID string `json:"request_id,omitempty"`
	// Cached reports that the response was answered from agentd's response
	// cache, not by the provider (its Usage is then zero: a hit costs
	// nothing).
	Cached bool `json:"cached,omitempty"`
}

// Delta is a piece of streamed output.
type Delta struct {
	// Index of the content block the delta belongs to.
	Index int
	// Text is a text_delta's text.
	Text string
}

// DeltaFunc receives streamed text as it arrives. It is called from the
// calling goroutine, in order.
type DeltaFunc func(Delta)

// Model is a provider of model calls. Stream makes one call, streaming text
// deltas to onDelta (which may be nil), and returns the complete response.
type Model interface {
	Stream(ctx context.Context, req Request, onDelta DeltaFunc) (Response, error)
}

// Error is a failed model call as the provider reported it.
type Error struct {
	// Status is the HTTP status of the provider's answer; 0 when there was
	// none (connection error, cut stream).
	Status int
	// Type is the provider's error type (rate_limit_error,
	// overloaded_error, ...) or "connection_error" / "timeout".
	Type    string
	Message string
	// RetryAfter is the provider's retry-after hint; 0 if none.
	RetryAfter time.Duration
	RequestID  string
	// Streamed reports that output had already been streamed when the call
	// failed: a retry would repeat it.
	Streamed bool
	Err      error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("model call: %d %s: %s", e.Status, e.Type, e.Message)
	}
	return fmt.Sprintf("model call: %s: %s", e.Type, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the same call may succeed later (rate limits,
// overload, server errors, connection problems).
func (e *Error) Temporary() bool {
	switch {
	case e.Status == 0:
		return true
	case e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests, e.Status >= 500:
		return true
	}
	return false
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

type apiKeyKey struct{}

// WithAPIKey returns ctx carrying the API key a provider must use for calls
// made with it, overriding the provider's configured key. The key pool of the
// resilience layer sets it per attempt.
func WithAPIKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, apiKeyKey{}, key)
}

// APIKeyFrom returns the API key set by WithAPIKey, if any.
func APIKeyFrom(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(apiKeyKey{}).(string)
	return k, ok && k != ""
}
