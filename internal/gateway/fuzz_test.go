package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// FuzzScan is the gateway's request reader: scan reads model, stream and
// max_tokens from a client's body without decoding the rest. The oracle
// is encoding/json reading the same top-level keys exactly (as the
// upstream would): whenever scan accepts a body, it reads the same model,
// stream and max_tokens, and the model's byte range holds the model.
// It must never panic (its skip functions index the body directly).
// Seeds: testdata/fuzz/FuzzScan.
func FuzzScan(f *testing.F) {
	f.Add([]byte(`{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`))
	f.Add([]byte(`{"mod\u0065l":"a","model":"b"}`))
	f.Add([]byte(` { "messages" : [ { "a" : "}\"]" } ] , "max_tokens" : -9 } `))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"model":"\u00e9\ud83d\ude00","stream":false,"max_tokens":1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := scan(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("scan accepted %q, which is not a JSON object: %v", body, err)
		}
		if raw, ok := m["model"]; ok {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("scan accepted a model that is not a string: %q", body)
			}
			if got.model != want {
				t.Fatalf("model %q, upstream reads %q (body %q)", got.model, want, body)
			}
			var inRange string
			if err := json.Unmarshal(body[got.modelStart:got.modelEnd], &inRange); err != nil || inRange != want {
				t.Fatalf("model range [%d:%d] holds %q, not %q", got.modelStart, got.modelEnd, body[got.modelStart:got.modelEnd], want)
			}
		} else if got.model != "" {
			t.Fatalf("model %q read from a body without one: %q", got.model, body)
		}
		if want := string(m["stream"]) == "true"; got.stream != want {
			t.Fatalf("stream %v, upstream reads %s (body %q)", got.stream, m["stream"], body)
		}
		if raw, ok := m["max_tokens"]; ok {
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil || n != got.maxTokens {
				t.Fatalf("max_tokens %d, upstream reads %s (body %q)", got.maxTokens, raw, body)
			}
		}
	})
}

// FuzzRelayStream is the gateway's parser of upstream event streams: an
// arbitrary upstream stream is relayed to a recorder. It must never
// panic; what reaches the client is never more than the upstream sent;
// success means the upstream sent message_stop and no error event.
// Seeds: testdata/fuzz/FuzzRelayStream.
func FuzzRelayStream(f *testing.F) {
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: ping\r\ndata: {}\r\n\r\nevent: error\r\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\r\n\r\n"))
	f.Add([]byte("\n\n\n:comment\n\nevent: message_stop\n"))
	f.Add([]byte("event: message_delta\ndata: {\"usage\":{\"output_tokens\":-1}}\n\nevent:message_stop\ndata:\n\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		rec := httptest.NewRecorder()
		c := &call{w: rec, rc: http.NewResponseController(rec), start: time.Now(), upstreamHeader: http.Header{}}
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
			Body: io.NopCloser(bytes.NewReader(stream))}
		_, err := c.relayStream(resp)
		if rec.Body.Len() > len(stream) {
			t.Fatalf("relayed %d bytes of a %d-byte stream", rec.Body.Len(), len(stream))
		}
		if err == nil && (!c.stopped || c.errEvent != "") {
			t.Fatalf("success without message_stop (stopped %v, error event %q): %q", c.stopped, c.errEvent, stream)
		}
		if c.wrote != (rec.Body.Len() > 0) {
			t.Fatalf("wrote %v but %d bytes reached the client", c.wrote, rec.Body.Len())
		}
	})
}
