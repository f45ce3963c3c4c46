package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/gateway"
	"github.com/agentd/agentd/internal/managed"
)

// The Managed Agents event stream (GET /v1/sessions/{id}/events/stream) as
// anthropic-sdk-go's ssestream reads it: every frame has an event: line
// (the SDK drops frames without one), named for the event's type; data: is
// the event's JSON on one line; id: is the event's id (a reconnecting
// client's Last-Event-ID). "event: ping" frames keep an idle stream alive
// (the SDK skips them; proxies see traffic); "event: error" carries an
// Anthropic error body, which the SDK returns as *anthropic.Error. The
// headers are flushed as soon as the stream opens, so a client waiting for
// its first event knows the stream is up.

// managedPing is the data of a ping frame (Anthropic's).
var managedPing = []byte(`{"type":"ping"}`)

// managedStream writes one Managed Agents event stream.
type managedStream struct {
	sw   *sseWriter
	done func()
}

// startManagedStream writes the stream's headers, flushes them, and pings
// every s.ping until close.
func (s *Server) startManagedStream(w http.ResponseWriter) *managedStream {
	sw, done := s.openStream(w, func(sw *sseWriter) bool { return sw.frame("ping", "", managedPing) == nil })
	return &managedStream{sw: sw, done: done}
}

// Events writes translated events, each a frame (event: its type, id:
// its id), and flushes once after the last.
func (m *managedStream) Events(outs []managed.Out) error {
	return m.sw.frames(func(buf *bytes.Buffer) {
		for _, o := range outs {
			appendFrame(buf, o.Type, o.ID, o.Data)
		}
	})
}

// Error writes an event: error frame with an Anthropic error body; the
// stream should end after it.
func (m *managedStream) Error(status int, message, requestID string) error {
	b, err := json.Marshal(map[string]any{
		"type":       "error",
		"error":      map[string]string{"type": gateway.ErrorType(status), "message": message},
		"request_id": requestID,
	})
	if err != nil {
		return err
	}
	return m.sw.frame("error", "", b)
}

// Close ends the stream's writes and its pings.
func (m *managedStream) Close() { m.done() }

// frame writes "event: typ", "id: id" (when set) and "data: data";
// errClientGone once a write failed.
func (s *sseWriter) frame(typ, id string, data []byte) error {
	return s.frames(func(buf *bytes.Buffer) { appendFrame(buf, typ, id, data) })
}

// appendFrame appends a frame: "event: typ", "id: id" (when set), "data:
// data" (compact JSON: one line).
func appendFrame(buf *bytes.Buffer, typ, id string, data []byte) {
	buf.WriteString("event: ")
	buf.WriteString(typ)
	if id != "" {
		buf.WriteString("\nid: ")
		buf.WriteString(id)
	}
	buf.WriteString("\ndata: ")
	buf.Write(data)
	buf.WriteString("\n\n")
}

// frames writes what fill appends in one write and one flush;
// errClientGone once a write failed.
func (s *sseWriter) frames(fill func(*bytes.Buffer)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return errClientGone
	}
	s.buf.Reset()
	fill(&s.buf)
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, s.err = s.w.Write(s.buf.Bytes()); s.err == nil {
		s.err = s.rc.Flush()
	}
	if s.err != nil {
		return errClientGone
	}
	return nil
}
