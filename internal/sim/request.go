package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// request is the part of a Messages API request body the simulator reads;
// unknown fields are ignored. Contents and schemas are kept as raw JSON and
// decoded only where an answer needs them.
type request struct {
	Model     string
	MaxTokens int64
	HasMax    bool
	Messages  []message
	System    string // raw JSON
	Tools     []tool
	Stream    bool
}

type message struct {
	Role    string
	Content string // raw JSON: a string or an array of blocks
}

type tool struct {
	Name        string
	Description string
	InputSchema string // raw JSON
}

// block is any content block of a request message, flattened.
type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// parse decodes and validates body; it returns "" or the message of a 400
// invalid_request_error. needMaxTokens is false for count_tokens.
//
// It uses gjson rather than encoding/json: bodies grow with the conversation
// and this is the hot path of every benchmark.
func (r *request) parse(body []byte, needMaxTokens bool) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "request body is empty; expected a JSON object"
	}
	if !gjson.ValidBytes(body) {
		var v any
		err := json.Unmarshal(body, &v) // only to describe the error
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return "There was an error parsing the body: " + err.Error()
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return "There was an error parsing the body: expected a JSON object"
	}
	msg := ""
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			if v.Type != gjson.String {
				msg = "model: Input should be a valid string"
				return false
			}
			r.Model = v.Str
		case "max_tokens":
			if v.Type != gjson.Number || v.Num != float64(int64(v.Num)) {
				msg = "max_tokens: Input should be a valid integer"
				return false
			}
			r.MaxTokens, r.HasMax = int64(v.Num), true
		case "stream":
			switch v.Type {
			case gjson.True, gjson.False:
				r.Stream = v.Type == gjson.True
			default:
				msg = "stream: Input should be a valid boolean"
				return false
			}
		case "system":
			if !v.IsArray() && v.Type != gjson.String && v.Type != gjson.Null {
				msg = "system: Input should be a valid string or a list of text blocks"
				return false
			}
			r.System = v.Raw
		case "messages":
			if !v.IsArray() {
				msg = "messages: Input should be a valid list"
				return false
			}
			r.Messages = make([]message, 0, 8)
			v.ForEach(func(_, m gjson.Result) bool {
				at := "messages." + strconv.Itoa(len(r.Messages))
				if !m.IsObject() {
					msg = at + ": Input should be a valid object"
					return false
				}
				var mm message
				m.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "role":
						mm.Role = v.Str
					case "content":
						mm.Content = v.Raw
					}
					return true
				})
				switch {
				case mm.Role != "user" && mm.Role != "assistant":
					msg = at + ".role: Input should be 'user' or 'assistant'"
				case mm.Content == "":
					msg = at + ".content: Field required"
				case kindOf(mm.Content) != '"' && kindOf(mm.Content) != '[':
					msg = at + ".content: Input should be a valid string or a list of content blocks"
				}
				r.Messages = append(r.Messages, mm)
				return msg == ""
			})
		case "tools":
			if !v.IsArray() && v.Type != gjson.Null {
				msg = "tools: Input should be a valid list"
				return false
			}
			v.ForEach(func(_, t gjson.Result) bool {
				at := "tools." + strconv.Itoa(len(r.Tools))
				if !t.IsObject() {
					msg = at + ": Input should be a valid object"
					return false
				}
				var tt tool
				t.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "name":
						tt.Name = v.Str
					case "description":
						tt.Description = v.Str
					case "input_schema":
						tt.InputSchema = v.Raw
					}
					return true
				})
				if tt.Name == "" {
					msg = at + ".name: Field required"
				}
				r.Tools = append(r.Tools, tt)
				return msg == ""
			})
		}
		return msg == ""
	})
	switch {
	case msg != "":
		return msg
	case r.Model == "":
		return "model: Field required"
	case needMaxTokens && !r.HasMax:
		return "max_tokens: Field required"
	case needMaxTokens && r.MaxTokens < 1:
		return "max_tokens: Input should be greater than or equal to 1"
	case r.Messages == nil:
		return "messages: Field required"
	case len(r.Messages) == 0:
		return "messages: at least one message is required"
	}
	return ""
}

// kindOf returns the first byte of a JSON value ('"', '[', '{', 'n', ...) or 0
// when raw is empty.
func kindOf[T ~string | ~[]byte](raw T) byte {
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}

// tokens approximates a token count: ceil(n/4), at least 1.
func tokens(n int) int { return max(1, (n+3)/4) }

// inputTokens approximates the request's input tokens from the size of its
// system prompt, message contents and tool definitions.
func (r *request) inputTokens() int {
	n := len(r.System)
	for i := range r.Messages {
		n += len(r.Messages[i].Content)
	}
	for i := range r.Tools {
		t := &r.Tools[i]
		n += len(t.Name) + len(t.Description) + len(t.InputSchema)
	}
	return tokens(n)
}

// blocks decodes a message's content; a string content becomes one text
// block. Undecodable content yields nil.
func (m *message) blocks() []block {
	switch kindOf(m.Content) {
	case '"':
		var s string
		if json.Unmarshal([]byte(m.Content), &s) != nil {
			return nil
		}
		return []block{{Type: "text", Text: s}}
	case '[':
		var bs []block
		if json.Unmarshal([]byte(m.Content), &bs) != nil {
			return nil
		}
		return bs
	}
	return nil
}

// textOf joins the text blocks of bs with a space.
func textOf(bs []block) string {
	if len(bs) == 1 && bs[0].Type == "text" {
		return bs[0].Text
	}
	var sb strings.Builder
	for i := range bs {
		if bs[i].Type != "text" || bs[i].Text == "" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(bs[i].Text)
	}
	return sb.String()
}

// toolResultText renders a tool_result's content: a string, or the text of
// its blocks joined by newlines, other blocks shown as [type].
func toolResultText(raw json.RawMessage) string {
	switch kindOf(raw) {
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	case '[':
		var bs []block
		if json.Unmarshal(raw, &bs) != nil {
			return ""
		}
		var sb strings.Builder
		for i := range bs {
			if i > 0 {
				sb.WriteByte('\n')
			}
			if bs[i].Type == "text" {
				sb.WriteString(bs[i].Text)
			} else {
				sb.WriteString("[" + bs[i].Type + "]")
			}
		}
		return sb.String()
	}
	return ""
}
