package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// maxUpstreamBytes caps an upstream answer read whole (a JSON body) and
// one event of a stream: a hostile or broken upstream cannot make the
// gateway hold more (the SDK's own event decoder stops at 32 MB too).
// Found by TestHostileFiftyMBAnswer: 50 MB answers were held and relayed.
const maxUpstreamBytes = 32 << 20

// errTooLarge is an oversized upstream answer: not retried (Status 200:
// the upstream did answer, and asking again would get the same).
func errTooLarge(what string) *llm.Error {
	return &llm.Error{Status: http.StatusOK, Type: "response_too_large",
		Message: "the upstream " + what + " is larger than " + strconv.Itoa(maxUpstreamBytes>>20) + " MB"}
}

// writeTimeout bounds one write to the client: a client that stops reading
// must not hold an upstream call (and its concurrency slot) open.
const writeTimeout = 30 * time.Second

// usageJSON is the usage object of an answer, message_start and
// message_delta.
type usageJSON struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
}

// merge sets the counts u reports (message_delta's counts are cumulative
// and replace the earlier ones).
func (u *usageJSON) merge(into *llm.Usage) {
	if u.InputTokens != nil {
		into.InputTokens = *u.InputTokens
	}
	if u.OutputTokens != nil {
		into.OutputTokens = *u.OutputTokens
	}
	if u.CacheCreationInputTokens != nil {
		into.CacheCreationInputTokens = *u.CacheCreationInputTokens
	}
	if u.CacheReadInputTokens != nil {
		into.CacheReadInputTokens = *u.CacheReadInputTokens
	}
}

// respond is the Passthrough's Respond: it relays a 2xx answer, as a
// stream when it is one.
func (c *call) respond(ctx context.Context, resp *http.Response) (llm.Response, error) {
	c.upstreamHeader = resp.Header
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return c.relayStream(resp)
	}
	return c.relayBody(ctx, resp)
}

// relayBody relays a JSON answer whole, after reading it (a cut answer is
// then retried: nothing reached the client).
func (c *call) relayBody(ctx context.Context, resp *http.Response) (llm.Response, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBytes+1))
	if err != nil {
		return llm.Response{}, &llm.Error{Type: "connection_error", Message: "reading the upstream answer: " + err.Error(), Err: err}
	}
	if len(body) > maxUpstreamBytes {
		return llm.Response{}, errTooLarge("answer")
	}
	if !c.count {
		var m struct {
			ID         string    `json:"id"`
			Model      string    `json:"model"`
			StopReason string    `json:"stop_reason"`
			Usage      usageJSON `json:"usage"`
		}
		if json.Unmarshal(body, &m) == nil {
			c.msgID, c.answered, c.stopReason = m.ID, m.Model, m.StopReason
			m.Usage.merge(&c.usage)
		}
		if c.h.cfg.LogBodies {
			c.h.log.DebugContext(ctx, "gateway answer body", "body", string(body))
		}
	}
	h := c.w.Header()
	copyHeader(h, resp.Header)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(resp.StatusCode)
	c.wrote, c.status = true, resp.StatusCode
	_ = c.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.w.Write(body); err != nil {
		return c.response(), &llm.Error{Type: "client_gone", Message: err.Error(), Streamed: true, Err: err}
	}
	_ = c.rc.Flush()
	return c.response(), nil
}

func (c *call) response() llm.Response {
	return llm.Response{ID: c.msgID, Model: c.answered, StopReason: c.stopReason, Usage: c.usage}
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// relayStream relays an event stream event by event, flushing each: the
// client sees every event (pings included) as the upstream sends it
// (events that arrived together are flushed together). The
// response status and headers are written with the first complete event,
// so a stream cut before any event is an error the retry layer may repeat.
// It reads message_start and message_delta for usage; the usage seen is
// kept when the stream ends early.
func (c *call) relayStream(resp *http.Response) (llm.Response, error) {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	evBuf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if evBuf.Cap() <= 1<<20 {
			evBuf.Reset()
			bufPool.Put(evBuf)
		}
	}()
	ev := evBuf.AvailableBuffer()
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		ev = append(ev, line...)
		if len(ev) > maxUpstreamBytes {
			le := errTooLarge("stream event")
			le.Streamed = c.wrote
			return c.response(), le
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long line: read on
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return c.response(), &llm.Error{Type: "connection_error", Message: "reading the upstream stream: " + err.Error(),
				Streamed: c.wrote, Err: err}
		}
		l := ev[lineStart:]
		if len(l) > 2 || (len(l) == 2 && l[0] != '\r') {
			lineStart = len(ev)
			continue
		}
		// A blank line ends an event.
		if lineStart > 0 {
			c.inspect(ev)
			if err := c.writeEvent(ev, !completeEventBuffered(br)); err != nil {
				return c.response(), &llm.Error{Type: "client_gone", Message: err.Error(), Streamed: true, Err: err}
			}
		}
		ev, lineStart = ev[:0], 0
	}
	switch {
	case c.errEvent != "":
		return c.response(), &llm.Error{Type: c.errEvent, Message: "the upstream stream reported an error", Streamed: true}
	case c.stopped:
		return c.response(), nil
	}
	return c.response(), &llm.Error{Type: "connection_error", Message: "the upstream stream ended before message_stop", Streamed: c.wrote}
}

// inspect reads what the gateway needs of one event.
func (c *call) inspect(ev []byte) {
	name, data := eventFields(ev)
	switch string(name) {
	case "message_start":
		var m struct {
			Message struct {
				ID    string    `json:"id"`
				Model string    `json:"model"`
				Usage usageJSON `json:"usage"`
			} `json:"message"`
		}
		if json.Unmarshal(data, &m) == nil {
			c.msgID, c.answered = m.Message.ID, m.Message.Model
			m.Message.Usage.merge(&c.usage)
		}
	case "message_delta":
		var m struct {
			Delta struct {
				StopReason string `json:"stop_reason"`
			} `json:"delta"`
			Usage usageJSON `json:"usage"`
		}
		if json.Unmarshal(data, &m) == nil {
			if m.Delta.StopReason != "" {
				c.stopReason = m.Delta.StopReason
			}
			m.Usage.merge(&c.usage)
		}
	case "message_stop":
		c.stopped = true
	case "error":
		var m struct {
			Error struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		c.errEvent = "api_error"
		if json.Unmarshal(data, &m) == nil && m.Error.Type != "" {
			c.errEvent = m.Error.Type
		}
	}
}

// eventFields returns the event name and the data of an SSE event (one
// data line, as the Messages API sends them).
func eventFields(ev []byte) (name, data []byte) {
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if v, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			name = bytes.TrimSpace(v)
		} else if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(v)
		}
	}
	return name, data
}

// completeEventBuffered reports whether br already holds a whole next
// event: it was received with the one just written, which can then wait
// for it to be flushed together (one write to the client instead of two,
// and no event ever waits for the network).
func completeEventBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := br.Peek(n)
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}

// writeEvent writes one event, flushing it unless flush is false (another
// event is already at hand), writing the status and headers first if they
// are not yet.
func (c *call) writeEvent(ev []byte, flush bool) error {
	if !c.wrote {
		h := c.w.Header()
		copyHeader(h, c.upstreamHeader)
		h.Del("Content-Length")
		c.w.WriteHeader(http.StatusOK)
		c.wrote, c.status = true, http.StatusOK
		c.firstByte = time.Since(c.start)
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.w.Write(ev); err != nil {
		return err
	}
	if !flush {
		return nil
	}
	return c.rc.Flush()
}

// errorEvent is an Anthropic error event.
func errorEvent(typ, msg string) []byte {
	b, _ := json.Marshal(errorBody{Type: "error", Error: errorDetail{Type: typ, Message: msg}})
	return []byte("event: error\ndata: " + string(b) + "\n\n")
}
