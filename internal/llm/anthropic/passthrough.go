package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

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
	parent := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
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
		return llm.Response{}, convertError(parent, ctx, err, "", false)
	}
	defer resp.Body.Close()
	requestID := resp.Header.Get("Request-Id")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if rerr != nil {
			return llm.Response{}, convertError(parent, ctx, rerr, requestID, false)
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
		return out, e
	}
	return out, convertError(parent, ctx, err, requestID, false)
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
