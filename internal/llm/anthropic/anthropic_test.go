package anthropic_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
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
