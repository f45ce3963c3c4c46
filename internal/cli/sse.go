package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// event is one server-sent event of agentd: id is the run's sequence
// number, name the event type (start, text_delta, ..., done, error).
type event struct {
	ID   int64
	Name string
	Data json.RawMessage
}

// terminal reports whether ev ends its stream.
func (ev event) terminal() bool { return ev.Name == "done" || ev.Name == "error" }

// sseReader reads server-sent events. Next returns io.EOF when the stream
// ended cleanly between events and io.ErrUnexpectedEOF when it was cut in
// the middle of one (the partial event is dropped).
type sseReader struct {
	r *bufio.Reader
}

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReaderSize(r, 16<<10)} }

func (s *sseReader) Next() (event, error) {
	var (
		ev      event
		data    bytes.Buffer
		started bool
		hasData bool
	)
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if started || line != "" {
					return event{}, io.ErrUnexpectedEOF
				}
				return event{}, io.EOF
			}
			return event{}, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if !started {
				continue
			}
			if hasData {
				ev.Data = json.RawMessage(bytes.Clone(data.Bytes()))
			}
			if ev.Name == "" {
				ev.Name = "message"
			}
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue // a keep-alive comment
		}
		started = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return event{}, fmt.Errorf("event id %q is not a number", value)
			}
			ev.ID = n
		case "event":
			ev.Name = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		}
	}
}

// Payloads of the events the renderer shows (docs/api.md, streaming).
type (
	textDelta struct {
		Text string `json:"text"`
	}
	toolUse struct {
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	}
	toolResult struct {
		Name       string `json:"name"`
		Content    string `json:"content"`
		IsError    bool   `json:"is_error"`
		DurationMS int64  `json:"duration_ms"`
	}
	startData struct {
		RunID          string `json:"run_id"`
		ConversationID string `json:"conversation_id"`
		Agent          string `json:"agent"`
		Model          string `json:"model"`
	}
	resumedData struct {
		Step     int   `json:"step"`
		AfterSeq int64 `json:"after_seq"`
	}
	doneData struct {
		RunID          string      `json:"run_id"`
		ConversationID string      `json:"conversation_id"`
		Text           string      `json:"text"`
		StopReason     string      `json:"stop_reason"`
		Steps          int         `json:"steps"`
		Usage          tokenUsage  `json:"usage"`
		CostUSD        json.Number `json:"cost_usd"`
	}
	errorData struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	tokenUsage struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	}
)

// RunError is a stream that ended with an error event: the run failed or
// was cancelled.
type RunError struct {
	Type    string
	Message string
}

func (e *RunError) Error() string { return "run failed: " + e.Type + ": " + e.Message }

// eventError returns the RunError of an error event.
func eventError(ev event) error {
	var d errorData
	_ = json.Unmarshal(ev.Data, &d)
	if d.Type == "" {
		d.Type = "error"
	}
	return &RunError{Type: d.Type, Message: d.Message}
}

// renderer prints events for a person: the model's text as it arrives,
// one line per tool call and tool result.
type renderer struct {
	w io.Writer
	// header prints the start event and a summary after done (runs tail);
	// chat shows only the conversation.
	header  bool
	midLine bool
}

// maxResultShown caps a tool result in the transcript.
const maxResultShown = 160

func (r *renderer) newline() {
	if r.midLine {
		fmt.Fprintln(r.w)
		r.midLine = false
	}
}

func (r *renderer) line(format string, args ...any) {
	r.newline()
	fmt.Fprintf(r.w, format+"\n", args...)
}

// render prints ev; events it does not know are shown by name so that a
// newer server's events are not silently lost.
func (r *renderer) render(ev event) {
	switch ev.Name {
	case "start":
		if r.header {
			var d startData
			_ = json.Unmarshal(ev.Data, &d)
			r.line("run %s · agent %s · model %s · conversation %s", d.RunID, d.Agent, d.Model, d.ConversationID)
		}
	case "text_delta":
		var d textDelta
		_ = json.Unmarshal(ev.Data, &d)
		if d.Text != "" {
			fmt.Fprint(r.w, d.Text)
			r.midLine = !strings.HasSuffix(d.Text, "\n")
		}
	case "tool_use":
		var d toolUse
		_ = json.Unmarshal(ev.Data, &d)
		r.line("  ⚙ %s %s", d.Name, compact(d.Input))
	case "tool_result":
		var d toolResult
		_ = json.Unmarshal(ev.Data, &d)
		mark, content := "→", shorten(d.Content, maxResultShown)
		if d.IsError {
			mark, content = "✗", "error: "+content
		}
		r.line("  %s %s (%d ms) %s", d.Name, mark, d.DurationMS, content)
	case "usage":
		// Summed up in done.
	case "resumed":
		var d resumedData
		_ = json.Unmarshal(ev.Data, &d)
		r.line("  ↻ resumed on another worker: step %d starts again (text of the cut step above is superseded)", d.Step)
	case "done":
		r.newline()
		if r.header {
			var d doneData
			_ = json.Unmarshal(ev.Data, &d)
			r.line("done: %s · %d steps · %d input / %d output tokens · $%s",
				d.StopReason, d.Steps, d.Usage.InputTokens, d.Usage.OutputTokens, d.CostUSD)
		}
	case "error":
		// The caller reports it (RunError).
		r.newline()
	default:
		r.line("  [%s] %s", ev.Name, shorten(string(compact(ev.Data)), maxResultShown))
	}
}

// compact is raw JSON on one line.
func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// shorten puts s on one line and cuts it to at most n runes.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// jsonLine is an event as a line of -o json output.
type jsonLine struct {
	ID    int64           `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func writeJSONEvent(w io.Writer, ev event) error {
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	b, err := json.Marshal(jsonLine{ID: ev.ID, Event: ev.Name, Data: data})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
