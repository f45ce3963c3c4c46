package sim

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// outBlock is one content block of the simulated answer.
type outBlock struct {
	text  string // text block, unless isTool
	tool  bool
	id    string
	name  string
	input []byte // tool_use input, compact JSON
}

type answer struct {
	id        string
	blocks    []outBlock
	stop      string
	inTokens  int
	outTokens int
	arr       [4]outBlock
}

// maxQuote caps how much of one tool result is quoted back.
const maxQuote = 2048

var filler = [...]string{
	"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
	"elit", "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore",
	"et", "dolore", "magna", "aliqua",
}

// maxEcho is how many words of the user text a plain answer echoes.
const maxEcho = 8

// build computes the deterministic answer to req.
func (a *answer) build(req *request, words int) {
	a.id = newID("msg_")
	a.blocks = a.arr[:0]
	a.inTokens = req.inputTokens()
	a.stop = "end_turn"

	lastIdx := len(req.Messages) - 1
	last := &req.Messages[lastIdx]
	var lastBlocks []block
	if last.Role == "user" {
		lastBlocks = last.blocks()
	}

	if last.Role == "user" && hasToolResult(lastBlocks) {
		a.blocks = append(a.blocks, outBlock{text: quoteResults(req, lastIdx, lastBlocks)})
	} else {
		userText := ""
		if last.Role == "user" {
			userText = textOf(lastBlocks)
		} else {
			for i := lastIdx - 1; i >= 0; i-- {
				if req.Messages[i].Role == "user" {
					userText = textOf(req.Messages[i].blocks())
					break
				}
			}
		}
		if used := mentionedTools(req.Tools, userText); len(used) > 0 {
			var sb strings.Builder
			sb.WriteString("I'll use ")
			for i, ti := range used {
				if i > 0 {
					if i == len(used)-1 {
						sb.WriteString(" and ")
					} else {
						sb.WriteString(", ")
					}
				}
				sb.WriteString(req.Tools[ti].Name)
			}
			sb.WriteByte('.')
			a.blocks = append(a.blocks, outBlock{text: sb.String()})
			for _, ti := range used {
				t := &req.Tools[ti]
				a.blocks = append(a.blocks, outBlock{tool: true, id: newID("toolu_"), name: t.Name, input: inputFor(t.InputSchema)})
			}
			a.stop = "tool_use"
		} else {
			a.blocks = append(a.blocks, outBlock{text: plainText(userText, words)})
		}
	}

	n := 0
	for i := range a.blocks {
		b := &a.blocks[i]
		if b.tool {
			n += len(b.name) + len(b.input)
		} else {
			n += len(b.text)
		}
	}
	a.outTokens = tokens(n)
	if limit := req.MaxTokens; int64(a.outTokens) > limit {
		// Cut to max_tokens: keep the prefix of the first (text) block that fits.
		t := a.blocks[0].text
		if cut := int(min(limit*4, int64(len(t)))); cut < len(t) {
			for cut > 0 && !utf8.RuneStart(t[cut]) {
				cut--
			}
			t = t[:cut]
		}
		a.blocks = a.blocks[:1]
		a.blocks[0] = outBlock{text: t}
		a.outTokens = min(tokens(len(t)), int(limit))
		a.stop = "max_tokens"
	}
}

func hasToolResult(bs []block) bool {
	for i := range bs {
		if bs[i].Type == "tool_result" {
			return true
		}
	}
	return false
}

// quoteResults renders `Tool results: [name] => "..."; [name] => "..."`,
// naming each result by the tool_use it answers in the latest assistant
// message before it (or by its tool_use_id when there is none).
func quoteResults(req *request, lastIdx int, bs []block) string {
	var names []block
	for i := lastIdx - 1; i >= 0; i-- {
		if req.Messages[i].Role == "assistant" {
			names = req.Messages[i].blocks()
			break
		}
	}
	var sb strings.Builder
	sb.WriteString("Tool results: ")
	first := true
	for i := range bs {
		b := &bs[i]
		if b.Type != "tool_result" {
			continue
		}
		if !first {
			sb.WriteString("; ")
		}
		first = false
		name := b.ToolUseID
		for j := range names {
			if names[j].Type == "tool_use" && names[j].ID == b.ToolUseID {
				name = names[j].Name
				break
			}
		}
		sb.WriteByte('[')
		sb.WriteString(name)
		sb.WriteString("] => ")
		if b.IsError {
			sb.WriteString("error: ")
		}
		s := toolResultText(b.Content)
		if len(s) > maxQuote {
			cut := maxQuote
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			s = s[:cut] + "..."
		}
		sb.WriteString(strconv.Quote(s))
	}
	return sb.String()
}

// mentionedTools returns the indexes of the tools whose name appears in text
// as a whole word (runs of ASCII letters, digits, '_' and '-'), compared
// case-insensitively, in order of first mention.
func mentionedTools(tools []tool, text string) []int {
	if len(tools) == 0 || text == "" {
		return nil
	}
	var used []int
	for i := 0; i < len(text); {
		if !isWordByte(text[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(text) && isWordByte(text[j]) {
			j++
		}
		w := text[i:j]
		i = j
		for ti := range tools {
			if asciiEqualFold(w, tools[ti].Name) && !slices.Contains(used, ti) {
				used = append(used, ti)
				break
			}
		}
	}
	return used
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// plainText is "Simulated answer to: <up to maxEcho user words> <filler...>."
// with exactly words words.
func plainText(userText string, words int) string {
	b := make([]byte, 0, 16+words*8)
	n := 0
	add := func(w string) {
		if n > 0 {
			b = append(b, ' ')
		}
		b = append(b, w...)
		n++
	}
	for _, w := range [...]string{"Simulated", "answer", "to:"} {
		if n < words {
			add(w)
		}
	}
	echoed := 0
	for i := 0; i < len(userText) && n < words && echoed < maxEcho; {
		if isSpace(userText[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(userText) && !isSpace(userText[j]) {
			j++
		}
		add(userText[i:j])
		echoed++
		i = j
	}
	for k := 0; n < words; k++ {
		add(filler[k%len(filler)])
	}
	b = append(b, '.')
	return string(b)
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// inputCache memoizes inputFor by schema text; schemas repeat on every turn.
var (
	inputCache     sync.Map // string -> []byte
	inputCacheSize atomic.Int32
)

const maxInputCache = 1024

// inputFor builds a tool input from its JSON schema: every property gets
// its const, its default, its first enum value, or a value by type (string
// "example", number/integer 1, boolean true, array [], object {}, null null).
func inputFor(schema string) []byte {
	if v, ok := inputCache.Load(schema); ok {
		return v.([]byte)
	}
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal([]byte(schema), &s)
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, k)
		out = append(out, ':')
		out = append(out, valueFor(s.Properties[k])...)
	}
	out = append(out, '}')
	if inputCacheSize.Add(1) <= maxInputCache {
		inputCache.Store(strings.Clone(schema), out) // schema aliases the request body
	}
	return out
}

func valueFor(prop json.RawMessage) string {
	var p struct {
		Type    json.RawMessage   `json:"type"`
		Enum    []json.RawMessage `json:"enum"`
		Const   json.RawMessage   `json:"const"`
		Default json.RawMessage   `json:"default"`
	}
	if json.Unmarshal(prop, &p) != nil {
		return `"example"`
	}
	if len(p.Const) > 0 {
		return string(p.Const)
	}
	if len(p.Default) > 0 {
		return string(p.Default)
	}
	if len(p.Enum) > 0 {
		return string(p.Enum[0])
	}
	typ := ""
	switch kindOf(p.Type) {
	case '"':
		_ = json.Unmarshal(p.Type, &typ)
	case '[': // ["string", "null"]: the first non-null type
		var ts []string
		_ = json.Unmarshal(p.Type, &ts)
		for _, t := range ts {
			if t != "null" {
				typ = t
				break
			}
		}
	}
	switch typ {
	case "number", "integer":
		return "1"
	case "boolean":
		return "true"
	case "array":
		return "[]"
	case "object":
		return "{}"
	case "null":
		return "null"
	default:
		return `"example"`
	}
}
