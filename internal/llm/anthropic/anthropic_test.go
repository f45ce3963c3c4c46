package anthropic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/sim"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// TestH2CSharesConnections: with H2C, concurrent calls to `agentd sim`
// share one connection; without it each holds its own (HTTP/1.1).
func TestH2CSharesConnections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		h2c     bool
		maxConn int64
	}{{h2c: true, maxConn: 1}, {h2c: false, maxConn: 20}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		cl := &countingListener{Listener: ln}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- sim.Serve(ctx, cl, sim.Config{APIKey: "k", Latency: 300 * time.Millisecond}, nil) }()

		c := anthropic.New(anthropic.Config{BaseURL: "http://" + ln.Addr().String(), APIKey: "k", H2C: tc.h2c})
		call := func() error {
			var text string
			resp, err := c.Stream(t.Context(), llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 64,
				Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`"hello there"`)}}},
				func(d llm.Delta) { text += d.Text })
			if err == nil && (text == "" || resp.StopReason == "") {
				err = errors.New("no answer")
			}
			return err
		}
		// A first call opens the connection (concurrent first calls may
		// each dial one before any is up).
		require.NoError(t, call())
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() { errs[i] = call() })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err, "h2c=%v", tc.h2c)
		}
		require.Equal(t, tc.maxConn, cl.accepted.Load(), "h2c=%v: connections for 20 concurrent calls", tc.h2c)
		cancel()
		require.NoError(t, <-done)
	}
}

// TestStreamCancelAndPanickingCallback: the call's goroutine ends when the
// caller's context ends or its onDelta panics (the panic reaches the
// caller, as before).
func TestStreamCancelAndPanickingCallback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// A long stream (500 words, 20 ms apart): a call that kept running
	// would hold its request open for 10 s.
	upstream := sim.New(sim.Config{APIKey: "k", EventDelay: 20 * time.Millisecond, Words: 500}, nil)
	var active atomic.Int64 // requests the sim is serving
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		upstream.ServeHTTP(w, r)
	}), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c := anthropic.New(anthropic.Config{BaseURL: "http://" + ln.Addr().String(), APIKey: "k", H2C: true})
	req := llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 256,
		Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`"one two three four five six"`)}}}

	callCtx, stop := context.WithCancel(t.Context())
	deltas := 0
	_, err = c.Stream(callCtx, req, func(llm.Delta) {
		if deltas++; deltas == 2 {
			stop()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, deltas, 10, "the stream stopped soon after the cancel")

	require.PanicsWithValue(t, "boom", func() {
		_, _ = c.Stream(t.Context(), req, func(llm.Delta) { panic("boom") })
	})
	// The panicking call's goroutine ended its request (else the sim would
	// serve it for 10 s), and the client still works.
	require.Eventually(t, func() bool { return active.Load() == 0 }, 3*time.Second, 10*time.Millisecond,
		"the canceled and the panicking calls left no request open")
	short := req
	short.MaxTokens = 5
	resp, err := c.Stream(t.Context(), short, nil)
	require.NoError(t, err)
	require.Equal(t, "max_tokens", resp.StopReason)
}

// TestStreamRequestBody: the body agentd encodes itself (instead of the
// SDK's params) is the Messages API request: system as a text block,
// messages and tool schemas byte for byte, "stream": true; the SDK's
// headers and a per-request key are sent; the simulator (which validates
// the request as the API does) answers it, here with a tool call.
func TestStreamRequestBody(t *testing.T) {
	t.Parallel()
	upstream := sim.New(sim.Config{APIKey: "tenant-key"}, nil)
	var (
		mu     sync.Mutex
		body   []byte
		header http.Header
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		body, header = b, r.Header.Clone()
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		upstream.ServeHTTP(w, r)
	}))
	defer srv.Close()

	c := anthropic.New(anthropic.Config{BaseURL: srv.URL, APIKey: "instance-key"})
	schema := json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)
	content := json.RawMessage(`[{"type":"text","text":"what is the weather in Paris? use get_weather","cache_control":{"type":"ephemeral"}}]`)
	req := llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 300, System: "You are terse.",
		Messages: []llm.Message{{Role: "user", Content: content}},
		Tools:    []llm.ToolSpec{{Name: "get_weather", Description: "Weather of a city.", InputSchema: schema}}}
	resp, err := c.Stream(llm.WithAPIKey(t.Context(), "tenant-key"), req, nil)
	require.NoError(t, err)
	require.Equal(t, "tool_use", resp.StopReason)
	require.Equal(t, "get_weather", resp.Content[len(resp.Content)-1].Name)

	mu.Lock()
	defer mu.Unlock()
	var got struct {
		Model     string          `json:"model"`
		MaxTokens int             `json:"max_tokens"`
		Stream    bool            `json:"stream"`
		System    json.RawMessage `json:"system"`
		Messages  []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools []map[string]json.RawMessage `json:"tools"`
	}
	require.NoError(t, json.Unmarshal(body, &got), "body: %s", body)
	require.Equal(t, "claude-sonnet-4-5", got.Model)
	require.Equal(t, 300, got.MaxTokens)
	require.True(t, got.Stream)
	require.JSONEq(t, `[{"type":"text","text":"You are terse."}]`, string(got.System))
	require.Len(t, got.Messages, 1)
	require.Equal(t, "user", got.Messages[0].Role)
	require.JSONEq(t, string(content), string(got.Messages[0].Content), "content is sent as is, cache_control included")
	require.Len(t, got.Tools, 1)
	require.JSONEq(t, `"get_weather"`, string(got.Tools[0]["name"]))
	require.JSONEq(t, `"Weather of a city."`, string(got.Tools[0]["description"]))
	require.JSONEq(t, string(schema), string(got.Tools[0]["input_schema"]))
	// The simulator accepts only tenant-key; the client's own key is not
	// sent alongside it.
	for name, vs := range header {
		for _, v := range vs {
			require.NotContains(t, v, "instance-key", "header %s", name)
		}
	}
	require.NotEmpty(t, header.Get("Anthropic-Version"))
	require.Equal(t, "application/json", header.Get("Content-Type"))
}

// TestStreamRefusesInvalidContent: a message whose content is not JSON
// fails before anything is sent.
func TestStreamRefusesInvalidContent(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "unexpected", http.StatusInternalServerError)
	}))
	defer srv.Close()
	c := anthropic.New(anthropic.Config{BaseURL: srv.URL, APIKey: "k"})
	_, err := c.Stream(t.Context(), llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 10,
		Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`{"oops"`)}}}, nil)
	require.ErrorContains(t, err, "encode request")
	require.Zero(t, requests.Load())
}

// TestStreamDeltas: the deltas passed on add up to the answer's text, in
// order, each with its block's index.
func TestStreamDeltas(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(sim.New(sim.Config{APIKey: "k", Words: 40}, nil))
	defer srv.Close()
	c := anthropic.New(anthropic.Config{BaseURL: srv.URL, APIKey: "k"})
	var (
		text    strings.Builder
		deltas  int
		indexes = map[int]bool{}
	)
	resp, err := c.Stream(t.Context(), llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 512,
		Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`"tell me something"`)}}}, func(d llm.Delta) {
		deltas++
		indexes[d.Index] = true
		text.WriteString(d.Text)
	})
	require.NoError(t, err)
	require.Greater(t, deltas, 5, "the answer streamed in pieces")
	require.Equal(t, map[int]bool{0: true}, indexes)
	require.Len(t, resp.Content, 1)
	require.Equal(t, resp.Content[0].Text, text.String())
}
