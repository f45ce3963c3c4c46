package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// ChatRequest is the body of POST /v1/chat.
type ChatRequest struct {
	Agent          string `json:"agent"`
	ConversationID string `json:"conversation_id,omitempty"`
	Message        string `json:"message"`
	Stream         bool   `json:"stream,omitempty"`
	// MaxCostUSD caps the run's cost in USD; it can lower the agent's
	// max_cost_usd, never raise it. 0: none.
	MaxCostUSD float64 `json:"max_cost_usd,omitempty"`
	// ConcurrencyPolicy, when set, overrides the agent's
	// concurrency_policy for this message: reject, enqueue, interrupt or
	// rollback (run.Policy).
	ConcurrencyPolicy string `json:"concurrency_policy,omitempty"`
}

// DecodeChatRequest reads and checks a chat request body: one JSON object,
// no unknown fields, the right types, agent and message present.
func DecodeChatRequest(body io.Reader) (ChatRequest, error) {
	var req ChatRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, err
	}
	switch {
	case strings.TrimSpace(req.Agent) == "":
		return req, badRequest("agent: required")
	case strings.TrimSpace(req.Message) == "":
		return req, badRequest("message: required and must not be blank")
	case !utf8.ValidString(req.Message):
		return req, badRequest("message: must be valid UTF-8")
	case len(req.ConversationID) > 128:
		return req, badRequest("conversation_id: too long")
	case req.MaxCostUSD < 0:
		return req, badRequest("max_cost_usd: must be >= 0 (0: no cap)")
	}
	if _, err := run.ParsePolicy(req.ConcurrencyPolicy); err != nil {
		return req, badRequest(err.Error())
	}
	return req, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields, and turns decoder errors into messages naming the field.
func decodeStrict(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			return &Error{Status: http.StatusRequestEntityTooLarge, Type: "request_too_large",
				Message: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)}
		case errors.Is(err, io.EOF):
			return badRequest("request body is empty; want a JSON object")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("request body is truncated JSON")
		case errors.As(err, &syntax):
			return badRequest(fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err))
		case errors.As(err, &typ):
			field := typ.Field
			if field == "" {
				return badRequest(fmt.Sprintf("request body must be a JSON object, not %s", typ.Value))
			}
			return badRequest(fmt.Sprintf("%s: must be %s, not %s", field, jsonType(typ.Type.Kind().String()), typ.Value))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return badRequest("invalid JSON: " + err.Error())
		}
	}
	// Trailing data after the object is a malformed request too.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Type: "request_too_large",
				Message: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)}
		}
		return badRequest("request body must hold exactly one JSON object")
	}
	return nil
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	default:
		return "a number"
	}
}

// handleChat is POST /v1/chat. Its work is split over functions that are
// not inlined (decodeChat, serveChat, streamChat's helpers) so that the
// frames on the stack of a chat waiting for its model stay small: that
// depth decides the goroutine's stack size, most of a held chat's memory
// (see docs/benchmarks.md, memory per chat).
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	req, ok := s.decodeChat(w, r)
	if !ok {
		return
	}
	// The tenant's cap first: a tenant over it must not take a slot (or a
	// place in the queue) of the instance.
	releaseTenant, err := s.tenants.Acquire(s.tenant(r), "chat")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer releaseTenant()
	release, err := admit(r.Context(), s.chats)
	if err != nil {
		s.refuseChat(w, r, req, err)
		return
	}
	defer release()
	if req.Stream {
		releaseStream, err := admit(r.Context(), s.streams)
		if err != nil {
			s.refuseChat(w, r, req, err)
			return
		}
		defer releaseStream()
	}
	s.serveChat(w, r, req)
}

// decodeChat reads the request body; false when it answered with an error.
//
//go:noinline
func (s *Server) decodeChat(w http.ResponseWriter, r *http.Request) (*ChatRequest, bool) {
	if !s.checkJSON(w, r) {
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	req, err := DecodeChatRequest(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return &req, true
}

// serveChat runs an admitted chat.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request, req *ChatRequest) {
	params := runChatParams(s.tenant(r), *req)
	if r.Header.Get("Idempotency-Key") != "" && s.replayChat(w, r, req, &params) {
		return
	}
	var chat *run.Chat
	var err error
	if s.runs != nil {
		// Under the message's concurrency policy (reject: Prepare).
		chat, err = s.runs.PrepareChat(r.Context(), params)
	} else {
		chat, err = s.chat.Prepare(r.Context(), params)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setConversationID(w, chat.ConversationID())
	if req.Stream {
		s.streamChat(w, r, chat)
		return
	}
	s.answerChat(w, r, req, chat)
}

// answerChat runs a chat and answers with its JSON.
//
//go:noinline
func (s *Server) answerChat(w http.ResponseWriter, r *http.Request, req *ChatRequest, chat *run.Chat) {
	answer, err := chat.Execute(r.Context(), nil)
	if errors.Is(err, run.ErrRequiresAction) {
		// Paused for a person's approval; it goes on as an async run.
		w.Header().Set("Location", "/v1/runs/"+chat.RunID())
		writeJSON(w, http.StatusOK, answer)
		return
	}
	if err != nil {
		if queued, ok := s.enqueueUnavailable(r, *req, chat, err); ok {
			w.Header().Set("Location", "/v1/runs/"+queued.ID)
			setConversationID(w, queued.ConversationID)
			writeJSON(w, http.StatusAccepted, run.NewRunBody(queued))
			return
		}
		he := toHTTP(err)
		he.RunID = chat.RunID()
		if errors.Is(err, run.ErrTurnTimeout) {
			w.Header().Set("Location", "/v1/runs/"+chat.RunID())
		}
		s.writeError(w, r, withCause(he, err))
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

// enqueueUnavailable is the last rung of the fallback ladder: when every
// model of the agent is unavailable and the agent says so
// (on_unavailable: enqueue), the chat's message becomes a queued run that
// executes when capacity returns.
func (s *Server) enqueueUnavailable(r *http.Request, req ChatRequest, chat *run.Chat, err error) (store.Run, bool) {
	if s.runs == nil || !chat.EnqueueWhenUnavailable() || toHTTP(err).Type != "upstream_unavailable" {
		return store.Run{}, false
	}
	queued, _, qerr := s.runs.Submit(r.Context(), run.SubmitParams{
		Tenant: s.tenant(r), Agent: req.Agent, ConversationID: req.ConversationID, Message: req.Message,
		MaxCostUSD: req.MaxCostUSD,
	})
	if qerr != nil {
		s.log.WarnContext(r.Context(), "enqueue a chat whose models are unavailable", "err", qerr)
		return store.Run{}, false
	}
	s.log.InfoContext(r.Context(), "models unavailable: chat accepted as a queued run", "queued_run_id", queued.ID)
	return queued, true
}

func runChatParams(tenant string, req ChatRequest) run.ChatParams {
	pol, _ := run.ParsePolicy(req.ConcurrencyPolicy) // checked by DecodeChatRequest
	return run.ChatParams{Tenant: tenant, Agent: req.Agent, ConversationID: req.ConversationID, Message: req.Message,
		MaxCostUSD: req.MaxCostUSD, ConcurrencyPolicy: pol}
}

// withCause keeps err's chain for the log while answering with he.
func withCause(he *Error, err error) error { return &causedError{he: he, err: err} }

type causedError struct {
	he  *Error
	err error
}

func (c *causedError) Error() string { return c.err.Error() }
func (c *causedError) Unwrap() []error {
	return []error{c.he, c.err}
}

// checkJSON refuses a Content-Type other than JSON (none is accepted).
func (s *Server) checkJSON(w http.ResponseWriter, r *http.Request) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.writeError(w, r, &Error{Status: http.StatusUnsupportedMediaType, Type: "unsupported_media_type",
				Message: "Content-Type must be application/json"})
			return false
		}
	}
	return true
}

// streamChat answers with server-sent events, one per run event. The error
// event, if any, is already on the stream (the loop emits it); the cause is
// logged here.
func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, chat *run.Chat) {
	sw, done := s.startSSE(w, r)
	defer done()
	answer, err := chat.Execute(r.Context(), sw.event)
	if errors.Is(err, run.ErrRequiresAction) {
		// After the approval_required events: the run waits, and goes
		// on as an async run (follow it with GET /v1/runs/{id}/events).
		raw, _ := json.Marshal(answer)
		sw.unnumbered("requires_action", raw)
		return
	}
	if err != nil {
		s.streamChatFailed(r, sw, chat, err)
	}
}

// streamChatFailed ends a stream whose chat failed: a queued run when the
// models are unavailable and the agent says so, else the log line.
//
//go:noinline
func (s *Server) streamChatFailed(r *http.Request, sw *sseWriter, chat *run.Chat, err error) {
	if queued, ok := s.enqueueUnavailable(r, ChatRequest{Agent: chat.Agent(), ConversationID: chat.RequestedConversationID(), Message: chat.Message()}, chat, err); ok {
		// After the error event: the message lives on as a queued run
		// (follow it with GET /v1/runs/{id}/events).
		raw, _ := json.Marshal(run.NewRunBody(queued))
		sw.unnumbered("queued", raw)
		return
	}
	he := toHTTP(err)
	if errors.Is(err, run.ErrTurnTimeout) {
		// No run event says it: the run has not started.
		raw, _ := json.Marshal(errorDetail{Type: he.Type, Message: he.Message, RequestID: requestID(r.Context()), RunID: chat.RunID()})
		sw.unnumbered("error", raw)
	}
	if he.Status >= 500 {
		s.log.ErrorContext(r.Context(), "streamed run failed", "type", he.Type, "err", err)
	} else {
		s.log.InfoContext(r.Context(), "streamed run ended", "type", he.Type, "err", err)
	}
}

// startSSE writes the headers of an event stream and keeps it alive with
// ping comments until done is called. Each event is written as id: (its
// seq), event: (its type) and one line of JSON data:, and flushed.
//
//go:noinline
func (s *Server) startSSE(w http.ResponseWriter, _ *http.Request) (*sseWriter, func()) {
	return s.openStream(w, func(sw *sseWriter) bool { return sw.comment("ping") })
}

// openStream writes an event stream's headers, flushes them and calls ping
// every s.ping (while it reports success) until the returned func is
// called; agentd's streams ping with a comment, Managed Agents' with an
// event (startManagedStream).
func (s *Server) openStream(w http.ResponseWriter, ping func(*sseWriter) bool) (*sseWriter, func()) {
	rc := http.NewResponseController(w)
	// Streams outlive the server's write timeout; each write gets its own
	// deadline instead (sseWriteTimeout), so a client that stops reading
	// cannot hold the stream, its run and its slots forever.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	s.sse.Add(1)
	if s.metrics != nil {
		s.metrics.SSEStreams.Inc()
	}
	sw := &sseWriter{w: w, rc: rc}
	// A timer, not a goroutine per stream: an idle stream costs no stack
	// (thousands of streams may be open).
	// Created stopped and armed after the assignment: the callback reads
	// timer.
	var timer *time.Timer
	timer = time.AfterFunc(time.Hour, func() {
		if ping(sw) {
			timer.Reset(s.ping)
		}
	})
	timer.Reset(s.ping)
	return sw, func() {
		sw.close()
		timer.Stop()
		s.sse.Add(-1)
		if s.metrics != nil {
			s.metrics.SSEStreams.Dec()
		}
	}
}

// sseWriteTimeout bounds one write to an event stream: a client that reads
// nothing for that long is dropped.
const sseWriteTimeout = 30 * time.Second

// errClientGone: writing to the event stream failed.
var errClientGone = errors.New("event stream client went away")

// sseWriter serialises events and pings onto one response.
type sseWriter struct {
	mu  sync.Mutex
	w   io.Writer
	rc  *http.ResponseController
	buf bytes.Buffer
	err error
}

// unnumbered writes an event that is not one of the run's (no id: line).
func (s *sseWriter) unnumbered(typ string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, s.err = fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", typ, data); s.err == nil {
		s.err = s.rc.Flush()
	}
}

// event writes ev, ignoring errors (the loop's OnEvent).
func (s *sseWriter) event(ev store.Event) { _ = s.send(ev) }

// send writes ev; errClientGone once a write failed.
func (s *sseWriter) send(ev store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return errClientGone
	}
	s.buf.Reset()
	s.buf.WriteString("id: ")
	s.buf.WriteString(strconv.FormatInt(ev.Seq, 10))
	s.buf.WriteString("\nevent: ")
	s.buf.WriteString(ev.Type)
	s.buf.WriteString("\ndata: ")
	s.buf.Write(ev.Data) // compact JSON: no newlines
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

// comment writes a comment line; false once the stream is closed or broken.
func (s *sseWriter) comment(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, s.err = io.WriteString(s.w, ": "+text+"\n\n"); s.err == nil {
		s.err = s.rc.Flush()
	}
	return s.err == nil
}

// close ends writing: the handler returns, and a late ping must not touch
// the finished response.
func (s *sseWriter) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = errClientGone
	}
}
