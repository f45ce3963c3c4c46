package server

import (
	"encoding/json"
	"fmt"
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

// Event writes a translated event: event: its type, id: its id.
func (m *managedStream) Event(o managed.Out) error { return m.sw.frame(o.Type, o.ID, o.Data) }

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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return errClientGone
	}
	s.buf.Reset()
	fmt.Fprintf(&s.buf, "event: %s\n", typ)
	if id != "" {
		fmt.Fprintf(&s.buf, "id: %s\n", id)
	}
	s.buf.WriteString("data: ")
	s.buf.Write(data) // compact JSON: one line
	s.buf.WriteString("\n\n")
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, s.err = s.w.Write(s.buf.Bytes()); s.err == nil {
		s.err = s.rc.Flush()
	}
	if s.err != nil {
		return errClientGone
	}
	return nil
}
