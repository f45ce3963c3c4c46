package gateway_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/stretchr/testify/require"
)

// Hostile upstreams, through the gateway (the agent loop's client has its
// own: internal/llm/anthropic/hostile_test.go). Each must cost a bounded
// number of upstream calls, bounded time and memory, and give the client a
// clear Anthropic-shaped error.

// A 529 storm: every call is refused. Each client call makes at most the
// configured attempts (3) and answers 529 overloaded_error quickly; the
// breaker may cut the storm shorter.
func TestHostile529Storm(t *testing.T) {
	h := newHarness(t)
	h.intercept = func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(529)
		_, _ = w.Write([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
		return true
	}
	const calls = 30
	start := time.Now()
	for range calls {
		_, err := h.client(h.Token).Messages.New(t.Context(), userMessage("storm"))
		e := apiError(t, err)
		require.Contains(t, []int{529, 503}, e.StatusCode)
		require.Contains(t, []string{"overloaded_error", "api_error"}, string(e.Type()))
	}
	took := time.Since(start)
	up := h.upstreamCalls()
	require.LessOrEqual(t, up, 3*calls, "more than 3 attempts per call")
	require.Less(t, took, 20*time.Second)
	t.Logf("%d calls in a 529 storm: %d upstream attempts, %s", calls, up, took.Round(time.Millisecond))
}

// A stream cut in the middle of an event (half a data line, then the
// connection closes): the client gets the events before it and an error,
// never a half event presented as whole, and the call is not repeated.
func TestHostileStreamCutMidEvent(t *testing.T) {
	h := newHarness(t)
	h.intercept = func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"" + model + "\",\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":0}}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_del"))
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	stream := h.client(h.Token).Messages.NewStreaming(t.Context(), userMessage("cut mid-event"))
	events := 0
	for stream.Next() {
		events++
		require.Equal(t, "message_start", string(stream.Current().Type), "only whole events reach the client")
	}
	require.Error(t, stream.Err(), "the client learns that the stream broke")
	require.Equal(t, 1, events)
	require.Equal(t, 1, h.upstreamCalls(), "a stream that reached the client is not repeated")
	require.EqualValues(t, 7, h.usage(t).InputTokens, "the usage seen is kept")
}

// A 50 MB answer: a JSON body and a stream event of 50 MB each. The
// gateway refuses answers above its cap (32 MB, maxUpstreamBytes) with a
// clear 502 instead of holding them whole in memory, and repeats nothing.
func TestHostileFiftyMBAnswer(t *testing.T) {
	big := strings.Repeat("x", 50<<20)
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "json", true: "stream"}[stream]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.recordOff()
			var calls int
			var mu sync.Mutex
			h.intercept = func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
				mu.Lock()
				calls++
				mu.Unlock()
				if stream {
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(http.StatusOK)
					_, _ = w.Write([]byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\""))
					_, _ = w.Write([]byte(big))
					_, _ = w.Write([]byte("\"}}\n\n"))
					return true
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(`{"id":"msg_1","type":"message","role":"assistant","model":"` + model + `","content":[{"type":"text","text":"`))
				_, _ = w.Write([]byte(big))
				_, _ = w.Write([]byte(`"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`))
				return true
			}
			start := time.Now()
			var err error
			if stream {
				s := h.client(h.Token).Messages.NewStreaming(t.Context(), userMessage("big"))
				for s.Next() {
				}
				err = s.Err()
			} else {
				_, err = h.client(h.Token).Messages.New(t.Context(), userMessage("big"))
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "larger than")
			var e *sdk.Error
			if !stream {
				e = apiError(t, err)
				require.Equal(t, http.StatusBadGateway, e.StatusCode)
			}
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, 1, calls, "an oversized answer is not asked again")
			t.Logf("%s: refused in %s: %v", name, time.Since(start).Round(time.Millisecond), err)
		})
	}
}
