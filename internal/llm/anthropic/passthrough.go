package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// maxErrorBody caps how much of an upstream error answer is read (and
// relayed by the gateway).
const maxErrorBody = 1 << 20

// forward makes a raw Messages API call: the passthrough body (with the
// model replaced when a fallback chose another), the client's forwarded
// headers, and the key of this attempt. A non-2xx answer becomes an
// *llm.Error carrying a *RawAnswer (so the layers above retry, fall back or
// mark the key bad as for any call); a 2xx answer goes to Respond.
func (c *Client) forward(ctx context.Context, req llm.Request) (llm.Response, error) {
	pt := req.Passthrough
	body, err := pt.BodyFor(req.Model)
	if err != nil {
		return llm.Response{}, err
	}
	// RequestTimeout bounds the wait for the answer's headers and each
	// silence while it is read (an idle timeout), not the whole call: a
	// long stream (extended thinking, a big max_tokens) that keeps
	// sending is not cut. A call that timed out is not repeated: it was
	// sent, and may be running (and billed) upstream.
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var idle *time.Timer
	if c.timeout > 0 {
		idle = time.AfterFunc(c.timeout, func() { cancel(errIdleTimeout) })
		defer idle.Stop()
	}
	timedOut := func(err error) error {
		if !errors.Is(context.Cause(ctx), errIdleTimeout) || parent.Err() != nil {
			return err
		}
		e := &llm.Error{Type: "timeout", Message: fmt.Sprintf("no answer from the provider for %s", c.timeout),
			Streamed: true, Err: err}
		if le, ok := llm.AsError(err); ok {
			e.RequestID = le.RequestID
		}
		return e
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+pt.Path, bytes.NewReader(body))
	if err != nil {
		return llm.Response{}, fmt.Errorf("passthrough: build request: %w", err)
	}
	for k, v := range pt.Header {
		hreq.Header[k] = v
	}
	key := c.apiKey
	if k, ok := llm.APIKeyFrom(ctx); ok {
		key = k
	}
	hreq.Header.Set("X-Api-Key", key)
	if hreq.Header.Get("Content-Type") == "" {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if hreq.Header.Get("Anthropic-Version") == "" {
		hreq.Header.Set("Anthropic-Version", "2023-06-01")
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return llm.Response{}, timedOut(convertError(parent, ctx, err, "", false))
	}
	defer resp.Body.Close()
	if idle != nil {
		// From here the timer runs only while a read waits for the
		// provider: time spent writing to a slow client is not the
		// provider's silence.
		idle.Stop()
		resp.Body = &idleBody{ReadCloser: resp.Body, t: idle, d: c.timeout}
	}
	requestID := resp.Header.Get("Request-Id")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if rerr != nil {
			return llm.Response{}, timedOut(convertError(parent, ctx, rerr, requestID, false))
		}
		e := &llm.Error{Status: resp.StatusCode, RequestID: requestID, RetryAfter: retryAfter(resp.Header),
			Err: &llm.RawAnswer{Status: resp.StatusCode, Header: resp.Header, Body: raw}}
		e.Type, e.Message = errorOf(raw)
		if e.Type == "" {
			e.Type = "api_error"
		}
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return llm.Response{}, e
	}
	out, err := pt.Respond(ctx, resp)
	out.RequestID = requestID
	if err == nil {
		return out, nil
	}
	if e, ok := llm.AsError(err); ok {
		if e.RequestID == "" {
			e.RequestID = requestID
		}
		return out, timedOut(e)
	}
	return out, timedOut(convertError(parent, ctx, err, requestID, false))
}

// errIdleTimeout is the cause of a passthrough call's cancellation when
// the provider was silent for RequestTimeout.
var errIdleTimeout = errors.New("the provider was silent for the request timeout")

// idleBody runs the idle timer during each read only: a read that waits
// longer than d for the provider cancels the call.
type idleBody struct {
	io.ReadCloser
	t *time.Timer
	d time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.t.Reset(b.d)
	n, err := b.ReadCloser.Read(p)
	b.t.Stop()
	return n, err
}

// errorOf reads the type and message of an Anthropic error body
// ({"type":"error","error":{"type":...,"message":...}}).
func errorOf(body []byte) (typ, msg string) {
	var b struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &b) != nil {
		return "", ""
	}
	return b.Error.Type, b.Error.Message
}
