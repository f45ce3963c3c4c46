package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

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
