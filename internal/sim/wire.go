package sim

import (
	"bytes"
	"net/http"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s is valid UTF-8 in practice (it
// comes from decoded JSON or constants); invalid bytes become U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendUsage(b []byte, in, out int) []byte {
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(in), 10)
	b = append(b, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":`...)
	b = strconv.AppendInt(b, int64(out), 10)
	return append(b, '}')
}

// appendHead appends the message object up to and including `"content":`.
func (a *answer) appendHead(b []byte, req *request) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, a.id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendString(b, req.Model)
	return append(b, `,"content":`...)
}

// appendMessage appends the non-stream response body.
func (a *answer) appendMessage(b []byte, req *request) []byte {
	b = a.appendHead(b, req)
	b = append(b, '[')
	for i := range a.blocks {
		if i > 0 {
			b = append(b, ',')
		}
		ob := &a.blocks[i]
		if ob.tool {
			b = appendToolStart(b, ob, ob.input)
		} else {
			b = append(b, `{"type":"text","text":`...)
			b = appendString(b, ob.text)
			b = append(b, '}')
		}
	}
	b = append(b, `],"stop_reason":"`...)
	b = append(b, a.stop...)
	b = append(b, `","stop_sequence":null,"usage":`...)
	b = appendUsage(b, a.inTokens, a.outTokens)
	return append(b, '}')
}

func appendToolStart(b []byte, ob *outBlock, input []byte) []byte {
	b = append(b, `{"type":"tool_use","id":`...)
	b = appendString(b, ob.id)
	b = append(b, `,"name":`...)
	b = appendString(b, ob.name)
	b = append(b, `,"input":`...)
	b = append(b, input...)
	return append(b, '}')
}

// sse writes server-sent events, each flushed at once.
type sse struct {
	w   http.ResponseWriter
	f   http.Flusher
	buf *bytes.Buffer
}

func (e *sse) begin(typ string) []byte {
	e.buf.Reset()
	b := e.buf.AvailableBuffer()
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	return b
}

// end finishes the event in b and sends it; it reports whether the write
// succeeded.
func (e *sse) end(b []byte) bool {
	b = append(b, '\n', '\n')
	if _, err := e.w.Write(b); err != nil {
		return false
	}
	if e.f != nil {
		e.f.Flush()
	}
	return true
}

func (e *sse) index(typ string, i int) bool {
	b := e.begin(typ)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","index":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	return e.end(append(b, '}'))
}

func (e *sse) delta(i int, kind, field, chunk string) bool {
	b := e.begin("content_block_delta")
	b = append(b, `{"type":"content_block_delta","index":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"delta":{"type":"`...)
	b = append(b, kind...)
	b = append(b, `","`...)
	b = append(b, field...)
	b = append(b, `":`...)
	b = appendString(b, chunk)
	return e.end(append(b, '}', '}'))
}

// deltas counts the content_block_delta events the answer streams.
func (a *answer) deltas() int {
	n := 0
	for i := range a.blocks {
		if a.blocks[i].tool {
			n += len(jsonPieces(a.blocks[i].input))
		} else {
			n += len(textChunks(a.blocks[i].text))
		}
	}
	return n
}

// textChunks splits text into words, each keeping its trailing spaces, so
// that they concatenate back to text.
func textChunks(text string) []string {
	if text == "" {
		return nil
	}
	chunks := make([]string, 0, 16)
	start := 0
	for i := 0; i < len(text); i++ {
		if isSpace(text[i]) && (i+1 == len(text) || !isSpace(text[i+1])) {
			chunks = append(chunks, text[start:i+1])
			start = i + 1
		}
	}
	if start < len(text) {
		chunks = append(chunks, text[start:])
	}
	return chunks
}

// jsonPieces splits a tool input into three pieces (one when short), cut at
// rune boundaries.
func jsonPieces(input []byte) []string {
	s := string(input)
	if len(s) < 6 {
		return []string{s}
	}
	c1, c2 := len(s)/3, 2*len(s)/3
	for c1 > 0 && !utf8.RuneStart(s[c1]) {
		c1--
	}
	for c2 > c1 && !utf8.RuneStart(s[c2]) {
		c2--
	}
	return []string{s[:c1], s[c1:c2], s[c2:]}
}

// stream writes the answer as server-sent events. With cut it drops the
// connection after about half of the deltas, before message_stop.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *request, a *answer, buf *bytes.Buffer, cut bool) {
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	e := &sse{w: w, f: f, buf: buf}
	ctx := r.Context()

	cutAfter := -1
	if cut {
		cutAfter = max(1, a.deltas()/2)
	}

	b := e.begin("message_start")
	b = append(b, `{"type":"message_start","message":`...)
	b = a.appendHead(b, req)
	b = append(b, `[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	b = appendUsage(b, a.inTokens, 1)
	if !e.end(append(b, '}', '}')) {
		return
	}
	if !e.end(append(e.begin("ping"), `{"type":"ping"}`...)) {
		return
	}
	if !sleep(ctx, s.cfg.TTFT) {
		return
	}

	sent := 0
	// next paces and counts deltas; it reports whether to go on.
	next := func() bool {
		if sent > 0 && !sleep(ctx, s.cfg.EventDelay) {
			return false
		}
		return true
	}
	for i := range a.blocks {
		ob := &a.blocks[i]
		b := e.begin("content_block_start")
		b = append(b, `{"type":"content_block_start","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"content_block":`...)
		if ob.tool {
			b = appendToolStart(b, ob, []byte("{}"))
		} else {
			b = append(b, `{"type":"text","text":""}`...)
		}
		if !e.end(append(b, '}')) {
			return
		}
		var chunks []string
		kind, field := "text_delta", "text"
		if ob.tool {
			chunks = jsonPieces(ob.input)
			kind, field = "input_json_delta", "partial_json"
		} else {
			chunks = textChunks(ob.text)
		}
		for _, c := range chunks {
			if !next() || !e.delta(i, kind, field, c) {
				return
			}
			sent++
			if sent == cutAfter {
				panic(http.ErrAbortHandler)
			}
		}
		if !e.index("content_block_stop", i) {
			return
		}
	}

	b = e.begin("message_delta")
	b = append(b, `{"type":"message_delta","delta":{"stop_reason":"`...)
	b = append(b, a.stop...)
	b = append(b, `","stop_sequence":null},"usage":{"output_tokens":`...)
	b = strconv.AppendInt(b, int64(a.outTokens), 10)
	if !e.end(append(b, '}', '}')) {
		return
	}
	e.end(append(e.begin("message_stop"), `{"type":"message_stop"}`...))
}
