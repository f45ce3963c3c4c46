package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// smoke runs end-to-end checks against a running agentd: what an operator
// runs after a deploy (or a blue-green switch) before sending traffic.
type smoke struct {
	base   string
	agent  string
	client *http.Client
	conv   string
}

// SmokeConfig is one `agentd smoke` run.
type SmokeConfig struct {
	// BaseURL is the running agentd's base URL.
	BaseURL string
	// Agent is the agent exercised.
	Agent string
	// Timeout bounds each check.
	Timeout time.Duration
	// Runs also checks the async run API (needs a worker).
	Runs bool
	// APIKey is sent as a Bearer token when set.
	APIKey string
}

// Smoke runs the checks of c, one line each to out, and fails if any does.
func Smoke(ctx context.Context, c SmokeConfig, out io.Writer) error {
	s := &smoke{base: strings.TrimRight(c.BaseURL, "/"), agent: c.Agent,
		client: &http.Client{Timeout: c.Timeout, Transport: withAPIKey(http.DefaultTransport, c.APIKey)}}
	checks := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"readyz", s.readyz},
		{"healthz", s.healthz},
		{"agents", s.agents},
		{"bad input is refused", s.badInput},
		{"chat", s.chat},
		{"chat stream", s.chatStream},
		{"conversation", s.conversation},
	}
	if c.Runs {
		checks = append(checks, struct {
			name string
			fn   func(context.Context) error
		}{"async run", s.asyncRun})
	}
	checks = append(checks, struct {
		name string
		fn   func(context.Context) error
	}{"delete conversation", s.deleteConversation})
	failed := 0
	for _, c := range checks {
		start := time.Now()
		err := c.fn(ctx)
		if err != nil {
			failed++
			fmt.Fprintf(out, "FAIL %-22s %v\n", c.name, err)
			continue
		}
		fmt.Fprintf(out, "ok   %-22s %s\n", c.name, time.Since(start).Round(time.Millisecond))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d smoke checks failed", failed, len(checks))
	}
	fmt.Fprintf(out, "all %d smoke checks passed\n", len(checks))
	return nil
}

// call sends a request and decodes a JSON answer into out (if not nil); it
// fails unless the status is want.
func (s *smoke) call(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (s *smoke) readyz(ctx context.Context) error {
	return s.call(ctx, http.MethodGet, "/readyz", nil, http.StatusOK, nil)
}

func (s *smoke) healthz(ctx context.Context) error {
	var h struct {
		Status string `json:"status"`
	}
	if err := s.call(ctx, http.MethodGet, "/healthz", nil, http.StatusOK, &h); err != nil {
		return err
	}
	if h.Status != "ok" && h.Status != "degraded" {
		return fmt.Errorf("health is %q", h.Status)
	}
	return nil
}

func (s *smoke) agents(ctx context.Context) error {
	var a struct {
		Agents []struct {
			Name string `json:"name"`
		} `json:"agents"`
	}
	if err := s.call(ctx, http.MethodGet, "/v1/agents", nil, http.StatusOK, &a); err != nil {
		return err
	}
	for _, ag := range a.Agents {
		if ag.Name == s.agent {
			return nil
		}
	}
	return fmt.Errorf("agent %q is not served", s.agent)
}

func (s *smoke) badInput(ctx context.Context) error {
	var e struct {
		Error struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := s.call(ctx, http.MethodPost, "/v1/chat", map[string]any{"agent": s.agent}, http.StatusBadRequest, &e); err != nil {
		return err
	}
	if e.Error.Type != "invalid_request" || e.Error.RequestID == "" {
		return fmt.Errorf("unexpected error body: %+v", e)
	}
	return nil
}

func (s *smoke) chat(ctx context.Context) error {
	var a struct {
		ConversationID string `json:"conversation_id"`
		Text           string `json:"text"`
		StopReason     string `json:"stop_reason"`
	}
	if err := s.call(ctx, http.MethodPost, "/v1/chat", map[string]any{"agent": s.agent, "message": "agentd smoke test: say hello"}, http.StatusOK, &a); err != nil {
		return err
	}
	if a.ConversationID == "" || a.StopReason == "" {
		return fmt.Errorf("incomplete answer: %+v", a)
	}
	s.conv = a.ConversationID
	return nil
}

// readSSE reads an event stream and checks ids run 1, 2, 3… (or after) and
// that it ends with done.
func readSSE(body io.Reader, after int64) (int, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	next, n, typ := after+1, 0, ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id, err := strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			if err != nil || id != next {
				return n, fmt.Errorf("event id %q, want %d", line, next)
			}
			next++
			n++
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
			if typ == "error" {
				return n, errors.New("stream ended with an error event")
			}
		case line == "" && typ == "done":
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, errors.New("stream ended without done")
}

func (s *smoke) chatStream(ctx context.Context) error {
	if s.conv == "" {
		return errors.New("no conversation (chat failed)")
	}
	raw, _ := json.Marshal(map[string]any{"agent": s.agent, "conversation_id": s.conv, "message": "and once more, streamed", "stream": true})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/v1/chat", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return fmt.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_, err = readSSE(resp.Body, 0)
	return err
}

func (s *smoke) conversation(ctx context.Context) error {
	if s.conv == "" {
		return errors.New("no conversation (chat failed)")
	}
	var c struct {
		Messages []struct {
			Seq  int64  `json:"seq"`
			Role string `json:"role"`
		} `json:"messages"`
	}
	if err := s.call(ctx, http.MethodGet, "/v1/conversations/"+s.conv, nil, http.StatusOK, &c); err != nil {
		return err
	}
	if len(c.Messages) < 4 || c.Messages[0].Role != "user" {
		return fmt.Errorf("want at least 4 messages starting with user, got %d", len(c.Messages))
	}
	return nil
}

func (s *smoke) asyncRun(ctx context.Context) error {
	var r struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := s.call(ctx, http.MethodPost, "/v1/runs", map[string]any{"agent": s.agent, "message": "agentd smoke test: an async run"}, http.StatusAccepted, &r); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/runs/"+r.ID+"/events", nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("events: status %d", resp.StatusCode)
	}
	if _, err := readSSE(resp.Body, 0); err != nil {
		return fmt.Errorf("events of %s: %w", r.ID, err)
	}
	if err := s.call(ctx, http.MethodGet, "/v1/runs/"+r.ID, nil, http.StatusOK, &r); err != nil {
		return err
	}
	if r.Status != "succeeded" {
		return fmt.Errorf("run %s is %s", r.ID, r.Status)
	}
	return nil
}

func (s *smoke) deleteConversation(ctx context.Context) error {
	if s.conv == "" {
		return errors.New("no conversation (chat failed)")
	}
	if err := s.call(ctx, http.MethodDelete, "/v1/conversations/"+s.conv, nil, http.StatusNoContent, nil); err != nil {
		return err
	}
	return s.call(ctx, http.MethodGet, "/v1/conversations/"+s.conv, nil, http.StatusNotFound, nil)
}

// withAPIKey sends key as a Bearer token on every request (none if empty).
func withAPIKey(rt http.RoundTripper, key string) http.RoundTripper {
	if key == "" {
		return rt
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+key)
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
