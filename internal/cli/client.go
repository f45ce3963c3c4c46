package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// DefaultURL is where the client looks for agentd without -url or
// AGENTD_URL: the address of the README's quick start.
const DefaultURL = "http://127.0.0.1:8080"

// Client talks HTTP to a running agentd.
type Client struct {
	// BaseURL is agentd's address, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// APIKey, when set, is sent as "Authorization: Bearer <key>".
	APIKey string
	// HTTP is the client used; nil: a client without an overall timeout
	// (streams last as long as their run), bounded by each call's context.
	HTTP *http.Client
}

// APIError is an error answer of agentd: {"error":{type,message,...}}.
type APIError struct {
	Status    int
	Type      string
	Message   string
	RequestID string
	RunID     string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
	if e.RunID != "" {
		msg += " (run " + e.RunID + ")"
	}
	switch e.Status {
	case http.StatusUnauthorized:
		msg += "; set AGENTD_API_KEY to a key of `agentd keys create`"
	case http.StatusForbidden:
		msg += "; the key lacks the scope this command needs"
	}
	return msg
}

// UnreachableError is a request that reached no agentd at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach agentd at %s: %v (is it running? set -url or AGENTD_URL)", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// newRequest builds a request to path (with its query) carrying body as
// JSON when it is not nil.
func (c *Client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("-url %q: %w", c.BaseURL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	req.Header.Set("User-Agent", "agentd-cli")
	return req, nil
}

// send sends req and turns a failure to connect into an UnreachableError
// and an answer of 400 or above into an APIError.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &UnreachableError{URL: c.BaseURL, Err: unwrapURLError(err)}
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// do sends a request and returns the raw JSON body of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string, body any, header http.Header) ([]byte, *http.Response, error) {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	return raw, resp, nil
}

// decodeError reads agentd's JSON error body; anything else (a proxy's
// page) is shown in short.
func decodeError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error struct {
			Type      string `json:"type"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
			RunID     string `json:"run_id"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error.Type != "" {
		return &APIError{Status: resp.StatusCode, Type: body.Error.Type, Message: body.Error.Message,
			RequestID: body.Error.RequestID, RunID: body.Error.RunID}
	}
	text := strings.TrimSpace(string(raw))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	return &APIError{Status: resp.StatusCode, Type: "http_error", Message: text}
}

// unwrapURLError drops net/http's "Get \"URL\": " prefix: the URL is in
// the UnreachableError already.
func unwrapURLError(err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
