package anthropic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
)

// bodyTransport answers every request with a 200 event stream holding body.
type bodyTransport struct{ body []byte }

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/event-stream"}, "Request-Id": {"req_fuzz"}},
		Body:   io.NopCloser(bytes.NewReader(b.body))}, nil
}

// FuzzUpstreamStream is the agent loop's parser of upstream event streams
// (the SDK's SSE decoder and message accumulator, behind Client.Stream):
// an arbitrary stream from the upstream. It must never panic (a panic in
// the call's goroutine becomes an error saying so: that is a finding too),
// must end, and a success is a message with an id and a stop reason whose
// text deltas are no more than its text. The client's own decoding of text
// deltas (textDeltas) must answer exactly as the SDK's decoding of every
// event does (NewSDKDeltas): same response, deltas and error.
// Seeds: testdata/fuzz/FuzzUpstreamStream.
func FuzzUpstreamStream(f *testing.F) {
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":7,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n"))
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}]}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\nevent: message_stop\ndata: {}\n\n"))
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"model\":\"m\",\"content\":[]}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\\nb \\\"q\\\" \u00e9\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\u00e9\\ud83d\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"))
	f.Add([]byte("data: \xff\xfe\n\nevent: ping\nid: 1\nretry: x\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		cfg := anthropic.Config{BaseURL: "http://upstream.invalid", APIKey: "k",
			HTTPClient: &http.Client{Transport: bodyTransport{body: body}}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		call := func(c *anthropic.Client) (llm.Response, []llm.Delta, error) {
			var deltas []llm.Delta
			resp, err := c.Stream(ctx, llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 16,
				Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`"hi"`)}}}, func(d llm.Delta) { deltas = append(deltas, d) })
			return resp, deltas, err
		}
		resp, got, err := call(anthropic.New(cfg))
		if ctx.Err() != nil {
			t.Fatalf("the call did not end on a finite stream: %q", body)
		}
		// The client's own text-delta decoding must answer exactly as the
		// SDK's decoding of every event does.
		refResp, refDeltas, refErr := call(anthropic.NewSDKDeltas(cfg))
		if fmt.Sprint(err) != fmt.Sprint(refErr) || !reflect.DeepEqual(resp, refResp) || !reflect.DeepEqual(got, refDeltas) {
			t.Fatalf("text-delta fast path differs from the SDK's decoding on %q:\n got %+v %+v %v\nwant %+v %+v %v",
				body, resp, got, err, refResp, refDeltas, refErr)
		}
		var deltas strings.Builder
		for _, d := range got {
			deltas.WriteString(d.Text)
		}
		if err != nil {
			if strings.Contains(err.Error(), "panicked") {
				t.Fatalf("the stream made the client panic: %v (stream %q)", err, body)
			}
			return
		}
		if resp.ID == "" || resp.StopReason == "" {
			t.Fatalf("success without id or stop reason: %+v from %q", resp, body)
		}
		var text strings.Builder
		for _, b := range resp.Content {
			text.WriteString(b.Text)
		}
		if deltas.Len() > text.Len() {
			t.Fatalf("deltas %q are more than the answer's text %q", deltas.String(), text.String())
		}
	})
}
