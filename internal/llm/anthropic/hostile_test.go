package anthropic_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
)

// Hostile upstreams of the agent loop's client (the gateway's relay has
// its own: internal/gateway/hostile_test.go). Each call must end within
// its bound with a typed error, never a success built from a broken answer.

func hostileCall(t *testing.T, base string, timeout time.Duration) (llm.Response, error, time.Duration) {
	t.Helper()
	c := anthropic.New(anthropic.Config{BaseURL: base, APIKey: "k", RequestTimeout: timeout})
	start := time.Now()
	resp, err := c.Stream(t.Context(), llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 16,
		Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`"hi"`)}}}, nil)
	return resp, err, time.Since(start)
}

const startEvent = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n"

// An upstream that accepts the connection and never answers (slowloris
// the other way round): the call ends at its timeout, typed "timeout".
func TestHostileUpstreamNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never written to
		}
	}()
	_, err, took := hostileCall(t, "http://"+ln.Addr().String(), 500*time.Millisecond)
	le, ok := llm.AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "timeout", le.Type)
	require.Less(t, took, 3*time.Second)
}

// An upstream that starts a stream and then goes silent: the same bound
// holds after the first event.
func TestHostileUpstreamStallsMidStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(startEvent))
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	_, err, took := hostileCall(t, srv.URL, 500*time.Millisecond)
	le, ok := llm.AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "timeout", le.Type)
	require.Less(t, took, 3*time.Second)
}

// A stream cut in the middle of an event: an error, not a message made of
// the events before the cut.
func TestHostileUpstreamCutMidEvent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(startEvent + "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del"))
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	resp, err, _ := hostileCall(t, srv.URL, 5*time.Second)
	le, ok := llm.AsError(err)
	require.True(t, ok, "%v (response %+v)", err, resp)
	require.Equal(t, "connection_error", le.Type)
}

// A 50 MB event: the SDK's decoder stops at 32 MB per line; the call fails
// with an error instead of holding the whole event.
func TestHostileUpstreamFiftyMBEvent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(startEvent + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\""))
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 50 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = w.Write([]byte("\"}}\n\n"))
	}))
	defer srv.Close()
	_, err, took := hostileCall(t, srv.URL, 30*time.Second)
	require.Error(t, err)
	require.Contains(t, err.Error(), "token too long")
	t.Logf("refused after %s: %v", took.Round(time.Millisecond), err)
}
