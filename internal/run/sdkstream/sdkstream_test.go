package sdkstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/llm"
)

// known are the message types Decode reads more than the type of.
var known = map[string]bool{"system": true, "stream_event": true, "assistant": true, "user": true, "result": true}

// FuzzStreamJSONLine feeds arbitrary lines to Decode, the reader of a
// hosted program's stdout. It must never panic, and:
//   - a line is Blank exactly when it is all space; a Stray line's text is
//     the line trimmed; a Message is a JSON object (valid JSON starting
//     with '{') with a non-empty type;
//   - a type agentd does not read carries only its type and subtype (the
//     mapper then only stores the events so far, as before the split), and
//     a known type only the fields of its kind;
//   - the decoded value is stable: decoding the line again, with other
//     surrounding space, or decoding the canonical line written from the
//     value gives the same value (tool inputs compared compacted);
//   - the value's text is bounded by the line: at most 3 bytes per byte
//     of the line (an invalid UTF-8 byte becomes U+FFFD); the line itself
//     is capped at MaxLine by NewScanner (TestScannerCapsLines).
//
// Seeds: testdata/fuzz/FuzzStreamJSONLine (Agent SDK messages as the
// TypeScript and Python SDKs print them, and stray output).
func FuzzStreamJSONLine(f *testing.F) {
	f.Add([]byte(`{"type":"result","subtype":"success","is_error":false,"result":"all done","stop_reason":"end_turn"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		d := Decode(line)
		trimmed := bytes.TrimSpace(line)
		switch d.Kind {
		case Blank:
			if len(trimmed) != 0 {
				t.Fatalf("a line with %d bytes besides space is Blank", len(trimmed))
			}
			if !reflect.DeepEqual(d, Line{}) {
				t.Fatalf("a Blank line carries %+v", d)
			}
		case Stray:
			if len(trimmed) == 0 || d.Text != string(trimmed) {
				t.Fatalf("Stray text %q, want the trimmed line %q", d.Text, trimmed)
			}
			if !reflect.DeepEqual(d.Message, Msg{}) {
				t.Fatalf("a Stray line carries a message %+v", d.Message)
			}
		case Message:
			if trimmed[0] != '{' || !json.Valid(trimmed) {
				t.Fatalf("a message that is not a JSON object: %q", trimmed)
			}
			if d.Message.Type == "" || d.Text != "" {
				t.Fatalf("a message without a type, or with stray text: %+v", d)
			}
			checkShape(t, d.Message)
			if n, max := size(d.Message), 3*len(trimmed); n > max {
				t.Fatalf("decoded %d bytes of text from a %d-byte line", n, len(trimmed))
			}
			again := Decode(canonical(t, d.Message))
			if !reflect.DeepEqual(normal(again), normal(d)) {
				t.Fatalf("not stable:\nline      %q\ndecoded   %+v\ncanonical %q\nredecoded %+v", trimmed, d, canonical(t, d.Message), again)
			}
		default:
			t.Fatalf("kind %d", d.Kind)
		}
		if again := Decode(append(append([]byte(" \t"), line...), "\r\n"...)); !reflect.DeepEqual(again, d) {
			t.Fatalf("surrounding space changed the value: %+v, then %+v", d, again)
		}
	})
}

// checkShape: an unknown type has only Type and Subtype; a known one only
// the fields of its kind.
func checkShape(t *testing.T, m Msg) {
	t.Helper()
	want := Msg{Type: m.Type, Subtype: m.Subtype}
	switch m.Type {
	case "system":
		want.SessionID = m.SessionID
	case "stream_event":
		want.Delta = m.Delta
	case "assistant":
		want.MessageID, want.Blocks = m.MessageID, m.Blocks
	case "user":
		want.ToolResults = m.ToolResults
		if m.ToolResults != nil && len(m.ToolResults) == 0 {
			t.Fatalf("an empty, non-nil tool results list")
		}
	case "result":
		want.Result = m.Result
		if m.Result == nil || m.Result.Subtype != m.Subtype {
			t.Fatalf("result %+v of a result message with subtype %q", m.Result, m.Subtype)
		}
	}
	if !known[m.Type] && !reflect.DeepEqual(m, want) {
		t.Fatalf("unknown type %q carries more than type and subtype: %+v", m.Type, m)
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("a %q message carries fields of another kind: %+v", m.Type, m)
	}
}

// canonical writes m as the Agent SDK would: the line a program prints
// for this value.
func canonical(t *testing.T, m Msg) []byte {
	t.Helper()
	w := map[string]any{"type": m.Type, "subtype": m.Subtype}
	switch m.Type {
	case "system":
		w["session_id"] = m.SessionID
	case "stream_event":
		if m.Delta != nil {
			w["event"] = map[string]any{"type": "content_block_delta", "index": m.Delta.Index,
				"delta": map[string]any{"type": "text_delta", "text": m.Delta.Text}}
		}
	case "assistant":
		w["message"] = map[string]any{"id": m.MessageID, "content": m.Blocks}
	case "user":
		content := []map[string]any{}
		for _, r := range m.ToolResults {
			content = append(content, map[string]any{"type": "tool_result", "tool_use_id": r.ToolUseID,
				"content": r.Content, "is_error": r.IsError})
		}
		w["message"] = map[string]any{"role": "user", "content": content}
	case "result":
		w["is_error"], w["result"], w["stop_reason"], w["errors"] =
			m.Result.IsError, m.Result.Result, m.Result.StopReason, m.Result.Errors
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		t.Fatalf("write %+v: %v", m, err)
	}
	return b.Bytes()
}

// normal is d with its tool inputs compacted: a tool input is kept as the
// program wrote it, space included; writing it again drops the space.
func normal(d Line) Line {
	if d.Message.Blocks == nil {
		return d
	}
	bs := make([]llm.Block, len(d.Message.Blocks))
	for i, b := range d.Message.Blocks {
		var c bytes.Buffer
		if json.Compact(&c, b.Input) == nil {
			b.Input = c.Bytes()
		}
		bs[i] = b
	}
	d.Message.Blocks = bs
	return d
}

// size is the bytes of text m holds (Result.Subtype is Subtype again).
func size(m Msg) int {
	n := len(m.Type) + len(m.Subtype) + len(m.SessionID) + len(m.MessageID)
	for _, b := range m.Blocks {
		n += len(b.Type) + len(b.Text) + len(b.ID) + len(b.Name) + len(b.Input) + len(b.ToolUseID) + len(b.Content)
	}
	for _, r := range m.ToolResults {
		n += len(r.ToolUseID) + len(r.Content)
	}
	if m.Delta != nil {
		n += len(m.Delta.Text)
	}
	if m.Result != nil {
		n += len(m.Result.Result) + len(m.Result.StopReason)
		for _, e := range m.Result.Errors {
			n += len(e)
		}
	}
	return n
}

// TestDecode pins what the mapper acts on for each kind of line.
func TestDecode(t *testing.T) {
	for _, c := range []struct {
		name, line string
		want       Line
	}{
		{"blank", " \t\r", Line{}},
		{"console.log", "  a stray console.log line ", Line{Kind: Stray, Text: "a stray console.log line"}},
		{"JSON array", `[{"type":"assistant"}]`, Line{Kind: Stray, Text: `[{"type":"assistant"}]`}},
		{"no type", `{"subtype":"init"}`, Line{Kind: Stray, Text: `{"subtype":"init"}`}},
		{"type not a string", `{"type":5}`, Line{Kind: Stray, Text: `{"type":5}`}},
		{"known field of another type", `{"type":"system","message":{"id":7}}`,
			Line{Kind: Stray, Text: `{"type":"system","message":{"id":7}}`}},
		{"trailing data", `{"type":"system"} {}`, Line{Kind: Stray, Text: `{"type":"system"} {}`}},
		{"init", `{"type":"system","subtype":"init","session_id":"s1","tools":["Bash"],"model":"claude-sonnet-4-5"}`,
			Line{Kind: Message, Message: Msg{Type: "system", Subtype: "init", SessionID: "s1"}}},
		{"unknown type", `{"type":"tool_progress","tool_use_id":"toolu_1","tool_name":"Bash","elapsed_time_seconds":3,"session_id":"s1"}`,
			Line{Kind: Message, Message: Msg{Type: "tool_progress"}}},
		{"text delta", `{"type":"stream_event","event":{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"Hel"}},"session_id":"s1"}`,
			Line{Kind: Message, Message: Msg{Type: "stream_event", Delta: &TextDelta{Index: 2, Text: "Hel"}}}},
		{"input json delta", `{"type":"stream_event","event":{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"ci"}}}`,
			Line{Kind: Message, Message: Msg{Type: "stream_event"}}},
		{"assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"Let me look."},{"type":"tool_use","id":"tu_1","name":"lookup","input":{"key":"k"}}]}}`,
			Line{Kind: Message, Message: Msg{Type: "assistant", MessageID: "m1", Blocks: []llm.Block{{Type: "thinking"},
				{Type: "text", Text: "Let me look."}, {Type: "tool_use", ID: "tu_1", Name: "lookup", Input: json.RawMessage(`{"key":"k"}`)}}}}},
		{"assistant content a string", `{"type":"assistant","message":{"id":"m1","content":"hi"}}`,
			Line{Kind: Message, Message: Msg{Type: "assistant", MessageID: "m1"}}},
		{"tool results", `{"type":"user","message":{"role":"user","content":[{"type":"text","text":"x"},{"type":"tool_result","tool_use_id":"tu_1","content":[{"type":"text","text":"v1"},{"type":"image"},{"type":"text","text":"v2"}]},{"type":"tool_result","tool_use_id":"tu_2","content":"boom","is_error":true},{"type":"tool_result","tool_use_id":"tu_3","content":{"odd":1}}]}}`,
			Line{Kind: Message, Message: Msg{Type: "user", ToolResults: []ToolResult{{ToolUseID: "tu_1", Content: "v1\nv2"},
				{ToolUseID: "tu_2", Content: "boom", IsError: true}, {ToolUseID: "tu_3", Content: `{"odd":1}`}}}}},
		{"user prompt", `{"type": "user", "message": {"content": "What is the weather in Paris?"}}`,
			Line{Kind: Message, Message: Msg{Type: "user"}}},
		{"result", `{"type":"result","subtype":"error_max_turns","is_error":false,"num_turns":8,"errors":["Reached maximum number of turns (8)"],"session_id":"s1"}`,
			Line{Kind: Message, Message: Msg{Type: "result", Subtype: "error_max_turns",
				Result: &Result{Subtype: "error_max_turns", Errors: []string{"Reached maximum number of turns (8)"}}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Decode([]byte(c.line)); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Decode(%s)\n got %+v\nwant %+v", c.line, got, c.want)
			}
		})
	}
}

func TestResultFailed(t *testing.T) {
	for _, c := range []struct {
		r    Result
		want bool
	}{
		{Result{Subtype: "success"}, false},
		{Result{}, false},
		{Result{Subtype: "success", IsError: true}, true},
		{Result{Subtype: "error_during_execution"}, true},
	} {
		if got := c.r.Failed(); got != c.want {
			t.Errorf("%+v.Failed() = %v, want %v", c.r, got, c.want)
		}
	}
}

// endless is a line that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// TestScannerCapsLines: a program printing a line without end costs a
// bounded read (bufio.ErrTooLong after MaxLine), and a line under the cap
// is read whole.
func TestScannerCapsLines(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sc := NewScanner(endless{})
	if sc.Scan() {
		t.Fatalf("an endless line was read: %d bytes", len(sc.Bytes()))
	}
	runtime.ReadMemStats(&after)
	if !errors.Is(sc.Err(), bufio.ErrTooLong) {
		t.Fatalf("err %v, want bufio.ErrTooLong", sc.Err())
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 3*MaxLine {
		t.Fatalf("allocated %d bytes for a line capped at %d", n, MaxLine)
	}

	big := `{"type":"result","subtype":"success","result":"` + strings.Repeat("x", MaxLine-100) + `"}`
	sc = NewScanner(strings.NewReader(big + "\n" + `{"type":"system"}` + "\n"))
	if !sc.Scan() {
		t.Fatalf("a %d-byte line was refused: %v", len(big), sc.Err())
	}
	d := Decode(sc.Bytes())
	if d.Kind != Message || d.Message.Result == nil || len(d.Message.Result.Result) != MaxLine-100 {
		t.Fatalf("the big result was not decoded whole")
	}
	if !sc.Scan() || Decode(sc.Bytes()).Message.Type != "system" {
		t.Fatalf("the line after the big one: %v", sc.Err())
	}
}
