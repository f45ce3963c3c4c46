// Package sdkstream decodes the stdout of a hosted agent program: the
// Claude Agent SDK's stream-JSON, one message per line (docs/agent-sdk.md).
// Decode is pure (no I/O, no state); internal/run's stream mapper acts on
// what it returns (events, the session id, the result). It is a package
// of its own so that its fuzz target (FuzzStreamJSONLine) links only it
// (see docs/reliability.md, "Fuzzing").
package sdkstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"github.com/agentd/agentd/internal/llm"
)

// MaxLine bounds one stdout (or stderr) line of a program: one JSON
// message. A longer line ends the reading with bufio.ErrTooLong.
const MaxLine = 16 << 20

// NewScanner returns a line scanner over a program's output that refuses
// lines longer than MaxLine.
func NewScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	return sc
}

// Kind is what a line is.
type Kind uint8

const (
	// Blank is an empty or all-space line: ignored.
	Blank Kind = iota
	// Stray is a line that is not a message (a console.log, a JSON value
	// that is not an object with a string type): logged, not an event.
	Stray
	// Message is an Agent SDK message (Line.Message).
	Message
)

// Line is one decoded line.
type Line struct {
	Kind Kind
	// Text is a Stray line, space trimmed.
	Text    string
	Message Msg
}

// Msg is the part of an Agent SDK message agentd acts on. Type is any
// non-empty string: a type agentd does not read ("tool_progress",
// "auth_status", a future one) has only Type and Subtype set.
type Msg struct {
	Type    string
	Subtype string
	// SessionID is a "system" message's session_id (its "init" subtype
	// carries the SDK session to resume).
	SessionID string
	// MessageID is message.id of an "assistant" message.
	MessageID string
	// Blocks are an "assistant" message's content blocks, every type kept
	// (their position is the event index); a content that is not an array
	// of blocks gives none, or those decoded before the mismatch.
	Blocks []llm.Block
	// ToolResults are the tool_result blocks of a "user" message.
	ToolResults []ToolResult
	// Delta is a "stream_event" message's text, when it is a
	// content_block_delta of a text_delta; nil for other stream events.
	Delta *TextDelta
	// Result is a "result" message's outcome.
	Result *Result
}

// TextDelta is a partial message's text (includePartialMessages).
type TextDelta struct {
	Index int
	Text  string
}

// ToolResult is a tool's result in a "user" message.
type ToolResult struct {
	ToolUseID string
	// Content is the result as text: a string content, or its text
	// blocks joined by newlines, or else the raw JSON.
	Content string
	IsError bool
}

// Result is a "result" message: the program's outcome.
type Result struct {
	Subtype    string
	IsError    bool
	Result     string
	StopReason string
	Errors     []string
}

// Failed reports whether the result is an error: is_error, or a subtype
// other than "success".
func (r *Result) Failed() bool {
	return r.IsError || (r.Subtype != "" && r.Subtype != "success")
}

// wire is the part of a stream-JSON message Decode reads.
type wire struct {
	Type      string `json:"type"`
	Subtype   string `json:"subtype"`
	SessionID string `json:"session_id"`
	Message   struct {
		ID      string          `json:"id"`
		Content json.RawMessage `json:"content"`
	} `json:"message"`
	Event struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
		Delta struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"delta"`
	} `json:"event"`
	// result
	IsError    bool     `json:"is_error"`
	Result     string   `json:"result"`
	StopReason string   `json:"stop_reason"`
	Errors     []string `json:"errors"`
}

// Decode decodes one line of a program's stdout. A line is a message when,
// space trimmed, it is a JSON object whose known fields have their types
// and whose "type" is a non-empty string; otherwise it is Stray (or Blank).
func Decode(line []byte) Line {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Line{Kind: Blank}
	}
	var w wire
	if line[0] != '{' || json.Unmarshal(line, &w) != nil || w.Type == "" {
		return Line{Kind: Stray, Text: string(line)}
	}
	m := Msg{Type: w.Type, Subtype: w.Subtype}
	switch w.Type {
	case "system":
		m.SessionID = w.SessionID
	case "stream_event":
		if w.Event.Type == "content_block_delta" && w.Event.Delta.Type == "text_delta" {
			m.Delta = &TextDelta{Index: w.Event.Index, Text: w.Event.Delta.Text}
		}
	case "assistant":
		m.MessageID = w.Message.ID
		_ = json.Unmarshal(w.Message.Content, &m.Blocks)
	case "user":
		var blocks []struct {
			Type      string          `json:"type"`
			ToolUseID string          `json:"tool_use_id"`
			Content   json.RawMessage `json:"content"`
			IsError   bool            `json:"is_error"`
		}
		_ = json.Unmarshal(w.Message.Content, &blocks)
		for _, b := range blocks {
			if b.Type == "tool_result" {
				m.ToolResults = append(m.ToolResults, ToolResult{ToolUseID: b.ToolUseID,
					Content: toolResultText(b.Content), IsError: b.IsError})
			}
		}
	case "result":
		m.Result = &Result{Subtype: w.Subtype, IsError: w.IsError, Result: w.Result,
			StopReason: w.StopReason, Errors: w.Errors}
	}
	return Line{Kind: Message, Message: m}
}

// toolResultText is a tool_result's content as text: a string, or its
// text blocks joined.
func toolResultText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []llm.Block
	if json.Unmarshal(raw, &blocks) == nil {
		var parts []string
		for _, b := range blocks {
			if b.Type == "text" {
				parts = append(parts, b.Text)
			}
		}
		return strings.Join(parts, "\n")
	}
	// Other JSON, as it is; invalid UTF-8 in its strings becomes U+FFFD,
	// as any JSON encoding of the text would make it (found by
	// FuzzStreamJSONLine: the decoded value was not stable through its
	// canonical line).
	return strings.ToValidUTF8(string(raw), "\uFFFD")
}
