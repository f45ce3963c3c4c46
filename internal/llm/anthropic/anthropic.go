// Package anthropic is the Claude provider: it implements llm.Model with the
// official SDK (github.com/anthropics/anthropic-sdk-go/v2), always streaming.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"

	"github.com/agentd/agentd/internal/llm"
)

// Config configures the client.
type Config struct {
	BaseURL string
	// APIKey is the static key. A key set on the call's context with
	// llm.WithAPIKey (the resilience layer's key pool) replaces it for that
	// call, so APIKey may be empty when a key pool is used.
	APIKey string
	// RequestTimeout bounds one call (the whole stream). 0: only ctx bounds it.
	RequestTimeout time.Duration
	// HTTPClient overrides the HTTP client (tests, custom transports).
	HTTPClient *http.Client
	// H2C speaks HTTP/2 without TLS (prior knowledge) when BaseURL is
	// http://: calls share a few connections (as many streams each as the
	// server allows, 250 for Go servers) instead of one connection and
	// two bufio buffers per call in flight. The server must accept h2c
	// (agentd sim does). https:// negotiates HTTP/2 regardless.
	H2C bool
}

// Client calls the Messages API.
type Client struct {
	sdk     sdk.Client
	timeout time.Duration
	// For raw calls (forward): the SDK is not involved.
	http    httpDoer
	baseURL string
	apiKey  string
	// sdkDeltas: the SDK decodes text deltas too (see textDeltas; tests
	// compare the two).
	sdkDeltas bool
}

// New returns a client. The SDK's own retries and environment defaults are
// off: retries belong to agentd's resilience layer, where every attempt is
// counted, and configuration comes only from agentd's config.
func New(cfg Config) *Client {
	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithMaxRetries(0),
		option.WithAPIKey(cfg.APIKey),
	}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	var client httpDoer = cfg.HTTPClient
	if cfg.HTTPClient == nil {
		// Go's default keeps 2 idle connections per host: at agent
		// concurrency (rate x model latency) that reopens connections,
		// each with a TLS handshake. Keep many.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 1024
		tr.MaxIdleConnsPerHost = 512
		// HTTP/2 over TLS (ALPN), as the Claude API speaks it: the calls
		// in flight share a few connections as streams. The default
		// transport's clone has it on already; it is said here so that a
		// later change of the TLS settings cannot turn it off silently.
		tr.ForceAttemptHTTP2 = true
		if cfg.H2C && strings.HasPrefix(cfg.BaseURL, "http://") {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			tr.Protocols = &p
		}
		client = &http.Client{Transport: tr}
		if u, err := url.Parse(cfg.BaseURL); err == nil && u.User == nil {
			client = transportDoer{tr}
		}
	}
	opts = append(opts, option.WithHTTPClient(client))
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	return &Client{sdk: sdk.NewClient(opts...), timeout: cfg.RequestTimeout, http: client, baseURL: base, apiKey: cfg.APIKey}
}

// DefaultBaseURL is the Messages API's address when Config.BaseURL is empty.
const DefaultBaseURL = "https://api.anthropic.com"

// Stream implements llm.Model. A request with a Passthrough is forwarded
// raw (see forward), on the caller's goroutine; any other goes through the
// SDK.
//
// The call itself (building the request, the HTTP round trip, reading and
// decoding the stream) runs on a goroutine of its own, started with a small
// stack; the caller's goroutine only waits for text deltas and the result.
// The caller's stack has usually grown deep before the call (the store,
// JSON) and most of the call is spent waiting for the model: this way
// neither goroutine waits with both the caller's depth and the SDK's on
// its stack (see docs/benchmarks.md, held streaming chats). onDelta is
// still called on the caller's goroutine, in order.
func (c *Client) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if req.Passthrough != nil {
		return c.forward(ctx, req)
	}
	call := c.start(ctx, &req)
	// stop releases the call's goroutine should onDelta panic; the
	// context ends its request.
	defer call.end()
	for d := range call.deltas {
		if onDelta != nil {
			onDelta(d)
		}
	}
	// deltas is closed: the call's goroutine is done with call.
	return call.result()
}

// start starts the call's goroutine. It and result are not inlined into
// Stream: their locals (the options, the response being built) would
// otherwise be in Stream's frame while it waits, and that frame is part of
// the depth at which a held chat's goroutine waits for the model (a
// goroutine's stack is a power of two that only a GC shrinks; see
// docs/benchmarks.md, memory per chat).
//
//go:noinline
func (c *Client) start(ctx context.Context, req *llm.Request) *streamCall {
	call := &streamCall{
		req:       req,
		parent:    ctx,
		deltas:    make(chan llm.Delta, 16),
		stop:      make(chan struct{}),
		sdkDeltas: c.sdkDeltas,
	}
	if c.timeout > 0 {
		ctx, call.cancel = context.WithTimeout(ctx, c.timeout)
	}
	call.ctx = ctx
	call.opts = []option.RequestOption{option.WithResponseInto(&call.httpResp)}
	if key, ok := llm.APIKeyFrom(ctx); ok {
		// A per-request credential option replaces the client's.
		call.opts = append(call.opts, option.WithAPIKey(key))
	}
	go call.run(ctx, &c.sdk)
	return call
}

// end releases what start took: the call's goroutine (should the caller
// stop reading deltas) and the timeout's timer.
func (s *streamCall) end() {
	close(s.stop)
	if s.cancel != nil {
		s.cancel()
	}
}

// result is the call's outcome, once deltas is closed.
//
//go:noinline
func (s *streamCall) result() (llm.Response, error) {
	if s.badRequest != nil {
		return llm.Response{}, s.badRequest
	}
	requestID := ""
	if s.httpResp != nil {
		requestID = s.httpResp.Header.Get("request-id")
	}
	if s.invalid != nil {
		return llm.Response{}, &llm.Error{Type: "invalid_response", Message: s.invalid.Error(), Streamed: s.streamed, Err: s.invalid}
	}
	if s.err != nil {
		return llm.Response{}, convertError(s.parent, s.ctx, s.err, requestID, s.streamed)
	}
	if s.msg.ID == "" || s.msg.StopReason == "" {
		// The stream ended without message_stop: cut mid-way.
		return llm.Response{}, &llm.Error{Type: "connection_error", Message: "stream ended before message_stop", RequestID: requestID, Streamed: s.streamed}
	}
	return fromMessage(&s.msg, requestID), nil
}

// streamCall is one model call, run by its own goroutine (run). The caller
// reads deltas until it is closed, and only then the other fields.
type streamCall struct {
	req *llm.Request
	// parent is the caller's context, ctx the call's (with the client's
	// timeout); cancel, if set, ends ctx.
	parent, ctx context.Context
	cancel      context.CancelFunc
	opts        []option.RequestOption
	deltas      chan llm.Delta
	stop        chan struct{}

	httpResp   *http.Response
	msg        sdk.Message
	sent       []int // per block of msg: bytes of its text passed on
	streamed   bool
	started    bool  // message_start seen
	badRequest error // the request does not encode
	err        error // the stream's
	invalid    error // an event that does not fit the message
	sdkDeltas  bool  // the client's
}

func (s *streamCall) run(ctx context.Context, client *sdk.Client) {
	defer close(s.deltas)
	// A panic here would end the process (no handler's recover is above
	// this goroutine): it becomes the call's error instead.
	defer func() {
		if p := recover(); p != nil {
			s.err = fmt.Errorf("anthropic: model call panicked: %v", p)
		}
	}()
	stream := s.open(ctx, client)
	if stream == nil {
		return
	}
	defer stream.Close()
	for stream.Next() {
		if !s.accumulate(stream) {
			return
		}
	}
	s.err = stream.Err()
}

// open sends the request. Not inlined, so that the request's encoding (and
// the SDK's request building) is off the stack while the goroutine waits
// for the model.
//
// The body is encoded here (requestBody) and sent with the SDK's generic
// Client.Post, which builds and sends the request as Messages.NewStreaming
// does (headers, credentials, base URL, the client's options) and hands
// back the raw response for the SDK's SSE decoder. Converting agentd's
// messages into the SDK's param types instead meant three JSON passes per
// call (ours, the SDK's decoding, its reflective encoding), and that
// encoder, nested once per level of the request (params, message, content
// block), grew every call's goroutine to a 32 KB stack; the SDK's param
// encoding of even an empty request takes it past 8 KB. What is lost: the
// SDK's own span of the call (agentd's "chat <model>" span remains).
//
//go:noinline
func (s *streamCall) open(ctx context.Context, client *sdk.Client) *ssestream.Stream[sdk.MessageStreamEventUnion] {
	body, err := requestBody(s.req)
	if err != nil {
		s.badRequest = err
		return nil
	}
	var raw *http.Response
	err = client.Post(ctx, "v1/messages", body, &raw, s.opts...)
	dec := ssestream.NewDecoder(raw)
	if dec != nil && !s.sdkDeltas {
		dec = &textDeltas{Decoder: dec, call: s, resp: raw}
	}
	return ssestream.NewStream[sdk.MessageStreamEventUnion](dec, err)
}

// textDeltas is the SSE decoder under the SDK's stream: it takes the
// stream's text deltas itself and hands every other event on to the SDK.
// A text delta is most of a stream's events, and the SDK decodes each
// event into its union type reflectively, through a map per object (12 %
// of a one-step chat's CPU; see docs/benchmarks.md): here one is decoded
// into two small fields and its text appended to the block, as the SDK's
// Message.Accumulate does. Anything that is not plainly a text delta (a
// decoding error, another delta type) goes on to the SDK unchanged, so
// the SDK decides what it means.
//
// Wrapping the decoder hides the SDK's own one, which builds an API error
// from an "error" event; textDeltas builds the same error (errorEvent).
type textDeltas struct {
	ssestream.Decoder
	call *streamCall
	resp *http.Response
	err  error
}

func (d *textDeltas) Next() bool {
	for d.Decoder.Next() {
		ev := d.Decoder.Event()
		switch ev.Type {
		case "error":
			d.err = errorEvent(d.resp, bytes.TrimSuffix(ev.Data, []byte("\n")))
			return false
		case "content_block_delta":
			handled, ok := d.call.textDelta(ev.Data)
			if !ok {
				return false
			}
			if handled {
				continue
			}
		}
		return true
	}
	return false
}

func (d *textDeltas) Err() error {
	if d.err != nil {
		return d.err
	}
	return d.Decoder.Err()
}

// errorEvent is the error of an "error" event, built as the SDK's stream
// builds it: an *sdk.Error with the response's status and request id.
func errorEvent(resp *http.Response, data []byte) error {
	if resp == nil || resp.Request == nil {
		return fmt.Errorf("received error while streaming: %s", data)
	}
	e := &sdk.Error{Request: resp.Request, Response: resp, StatusCode: resp.StatusCode, RequestID: resp.Header.Get("request-id"),
		WorkspaceID: resp.Header.Get("anthropic-workspace-id")}
	if e.UnmarshalJSON(data) != nil {
		return fmt.Errorf("received error while streaming: %s", data)
	}
	return e
}

// The one form in which the Messages API (and agentd sim) writes a text
// delta: {"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"…"}}.
var (
	textDeltaHead = []byte(`{"type":"content_block_delta","index":`)
	textDeltaMid  = []byte(`,"delta":{"type":"text_delta","text":`)
	textDeltaTail = []byte(`}}`)
)

// parseTextDelta reads data when it is a text delta in exactly that form,
// its text a JSON string without \u escapes in valid UTF-8; ok is false
// for anything else, however close (other spellings, key orders, extra
// fields, escapes whose decoding could differ): those go to the SDK. So
// the fast path never decides what an unusual event means.
func parseTextDelta(data []byte) (index int64, text string, ok bool) {
	data = bytes.TrimSuffix(data, []byte("\n"))
	rest, ok := bytes.CutPrefix(data, textDeltaHead)
	if !ok {
		return 0, "", false
	}
	n := 0
	for n < len(rest) && n < 9 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && rest[0] == '0') {
		return 0, "", false
	}
	for _, c := range rest[:n] {
		index = index*10 + int64(c-'0')
	}
	rest, ok = bytes.CutPrefix(rest[n:], textDeltaMid)
	if !ok {
		return 0, "", false
	}
	str, ok := bytes.CutSuffix(rest, textDeltaTail)
	if !ok || len(str) < 2 || str[0] != '"' || bytes.Contains(str, []byte(`\u`)) || !utf8.Valid(str) {
		return 0, "", false
	}
	if json.Unmarshal(str, &text) != nil {
		return 0, "", false
	}
	return index, text, true
}

// textDelta takes data, a content_block_delta event, when it is a text
// delta (parseTextDelta): its text is appended to its block, as the SDK's
// Message.Accumulate does, and passed on. handled is false for anything
// else (the SDK decodes it); ok is false when the call must end.
func (s *streamCall) textDelta(data []byte) (handled, ok bool) {
	index, text, isText := parseTextDelta(data)
	if !isText {
		return false, true
	}
	if index >= int64(len(s.msg.Content)) {
		s.invalid = fmt.Errorf("received event of type content_block_delta for content block at index %d but there are only %d content blocks", index, len(s.msg.Content))
		return true, false
	}
	s.msg.Content[index].Text += text
	return true, s.passText()
}

// messagesBody is a Messages API request body. Messages and tools are
// already in the API's shape (llm.Message holds its content as raw JSON).
type messagesBody struct {
	Model     string        `json:"model"`
	MaxTokens int           `json:"max_tokens"`
	Stream    bool          `json:"stream"`
	System    []systemBlock `json:"system,omitempty"`
	Messages  []llm.Message `json:"messages"`
	Tools     []toolParam   `json:"tools,omitempty"`
}

type systemBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type toolParam struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// requestBody encodes req as a streaming Messages API request body.
func requestBody(req *llm.Request) ([]byte, error) {
	b := messagesBody{Model: req.Model, MaxTokens: req.MaxTokens, Stream: true, Messages: req.Messages}
	if b.Messages == nil {
		b.Messages = []llm.Message{}
	}
	if req.System != "" {
		b.System = []systemBlock{{Type: "text", Text: req.System}}
	}
	if len(req.Tools) > 0 {
		b.Tools = make([]toolParam, len(req.Tools))
		for i, t := range req.Tools {
			b.Tools[i] = toolParam(t)
		}
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return raw, nil
}

// accumulate adds the stream's current event to the message and passes
// the text it added on; false when the call must end. Not inlined: an
// event is 5 KB, and the SDK's Accumulate takes it by value, so this frame
// is 10 KB; it is on the stack only while an event is handled, not while
// the next one is awaited. The event is not kept in a local (a third
// copy, which took the goroutine's stack from 16 to 32 KB): the text to
// pass on is read from the message instead (passText).
//
//go:noinline
func (s *streamCall) accumulate(stream *ssestream.Stream[sdk.MessageStreamEventUnion]) bool {
	ev := stream.Current()
	if ev.Type == "message_start" {
		// A second message_start would restart the message after its
		// text went out as deltas: the caller would have streamed text
		// the answer does not hold (found by FuzzUpstreamStream).
		if s.started {
			s.invalid = errors.New("the stream started a second message")
			return false
		}
		s.started = true
	}
	if err := s.msg.Accumulate(ev); err != nil {
		s.invalid = err
		return false
	}
	return s.passText()
}

// passText passes on, as deltas, the text that text_delta events added to
// the message's blocks since the last call: s.sent holds how much of each
// block's text was passed on. A block's text at its start is not a delta.
func (s *streamCall) passText() bool {
	n := len(s.msg.Content)
	if n < len(s.sent) {
		s.sent = s.sent[:n] // message_start replaced the message
	}
	for len(s.sent) < n {
		s.sent = append(s.sent, len(s.msg.Content[len(s.sent)].Text))
	}
	for i := range n {
		b := &s.msg.Content[i]
		// Only a text block's text is the answer's (fromMessage): a text
		// delta to a block of another type is not passed on (found by
		// FuzzUpstreamStream).
		if b.Type != "text" || len(b.Text) <= s.sent[i] {
			continue
		}
		text := b.Text[s.sent[i]:]
		s.sent[i] = len(b.Text)
		s.streamed = true
		select {
		case s.deltas <- llm.Delta{Index: i, Text: text}:
		case <-s.stop:
			return false
		}
	}
	return true
}

func fromMessage(m *sdk.Message, requestID string) llm.Response {
	r := llm.Response{
		ID:         m.ID,
		Model:      string(m.Model),
		StopReason: string(m.StopReason),
		RequestID:  requestID,
		Usage: llm.Usage{
			InputTokens:              m.Usage.InputTokens,
			OutputTokens:             m.Usage.OutputTokens,
			CacheCreationInputTokens: m.Usage.CacheCreationInputTokens,
			CacheReadInputTokens:     m.Usage.CacheReadInputTokens,
		},
	}
	for _, b := range m.Content {
		switch b.Type {
		case "text":
			r.Content = append(r.Content, llm.Block{Type: "text", Text: b.Text})
		case "tool_use":
			input := b.Input
			if len(input) == 0 {
				input = json.RawMessage("{}")
			}
			r.Content = append(r.Content, llm.Block{Type: "tool_use", ID: b.ID, Name: b.Name, Input: input})
		}
		// Other block types (thinking, server tools) are not requested by
		// agentd's loop; they are dropped rather than echoed back unsigned.
	}
	return r
}

// convertError maps an SDK error to an *llm.Error. parent is the caller's
// context, ctx the call's (parent bounded by RequestTimeout): the caller's
// deadline or cancellation is reported as a context error, the call's own
// timeout as an llm.Error of Type "timeout" (an upstream failure).
func convertError(parent, ctx context.Context, err error, requestID string, streamed bool) error {
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		e := &llm.Error{
			Status:    apiErr.StatusCode,
			Type:      string(apiErr.Type()),
			Message:   apiErr.Message,
			RequestID: apiErr.RequestID,
			Streamed:  streamed,
			Err:       err,
		}
		if e.RequestID == "" {
			e.RequestID = requestID
		}
		if e.Message == "" {
			e.Message = http.StatusText(apiErr.StatusCode)
		}
		if apiErr.Response != nil {
			e.RetryAfter = retryAfter(apiErr.Response.Header)
		}
		return e
	}
	if parent.Err() != nil {
		// The caller's deadline or cancellation: report it as such so the
		// loop can tell a timeout from an upstream failure.
		return fmt.Errorf("model call: %w", context.Cause(parent))
	}
	if ctx.Err() != nil {
		return &llm.Error{Type: "timeout", Message: "the call exceeded the request timeout", RequestID: requestID, Streamed: streamed, Err: err}
	}
	return &llm.Error{Type: "connection_error", Message: err.Error(), RequestID: requestID, Streamed: streamed, Err: err}
}

func retryAfter(h http.Header) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := h.Get("retry-after"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := time.Until(t); d > 0 {
				return d
			}
		}
	}
	return 0
}
