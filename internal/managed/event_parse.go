package managed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The events a client sends to a session (POST /v1/sessions/{id}/events,
// and a session's initial_events), parsed before anything is done with
// them: ParseSendEvents and parseInitialEvents are pure (no store, no
// I/O), so a request whose later event is bad is refused whole and
// changes nothing. What they cannot know (is a tool call waiting for this
// confirmation?) is checked against the session's state before any event
// is applied (Service.checkCalls), and again by the store when it is.

// ClientEvent is one parsed event of a client. Its JSON is the event as
// the SDK sends it (BetaManagedAgentsEventParamsUnion), which parses back
// to the same value.
type ClientEvent interface {
	EventType() string
	json.Marshaler
}

// ClientUserMessage is a user.message: its text blocks, in order.
type ClientUserMessage struct{ Text []string }

// ClientInterrupt is a user.interrupt.
type ClientInterrupt struct{}

// ClientToolConfirmation is a user.tool_confirmation.
type ClientToolConfirmation struct {
	ToolUseID string
	Allow     bool
	// DenyMessage is the reason of a deny ("" for none; never with allow).
	DenyMessage string
}

// ClientCustomToolResult is a user.custom_tool_result.
type ClientCustomToolResult struct {
	CustomToolUseID string
	Text            []string
	IsError         bool
}

// ClientSystemMessage is a system.message: system text for the turn of the
// user.message it follows and every later turn.
type ClientSystemMessage struct{ Text []string }

// Event types a client sends.
const (
	EvUserMessage      = "user.message"
	EvUserInterrupt    = "user.interrupt"
	EvToolConfirmation = "user.tool_confirmation"
	EvCustomToolResult = "user.custom_tool_result"
	EvSystemMessage    = "system.message"
)

func (ClientUserMessage) EventType() string      { return EvUserMessage }
func (ClientInterrupt) EventType() string        { return EvUserInterrupt }
func (ClientToolConfirmation) EventType() string { return EvToolConfirmation }
func (ClientCustomToolResult) EventType() string { return EvCustomToolResult }
func (ClientSystemMessage) EventType() string    { return EvSystemMessage }

func textBlocks(text []string) []textBlock {
	out := make([]textBlock, 0, len(text))
	for _, t := range text {
		out = append(out, textBlock{Type: "text", Text: t})
	}
	return out
}

// MarshalJSON is the event's wire form.
func (e ClientUserMessage) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type    string      `json:"type"`
		Content []textBlock `json:"content"`
	}{EvUserMessage, textBlocks(e.Text)})
}

// MarshalJSON is the event's wire form.
func (ClientInterrupt) MarshalJSON() ([]byte, error) {
	return json.Marshal(typeOnly{EvUserInterrupt})
}

// MarshalJSON is the event's wire form.
func (e ClientToolConfirmation) MarshalJSON() ([]byte, error) {
	result := "deny"
	if e.Allow {
		result = "allow"
	}
	return json.Marshal(struct {
		Type        string `json:"type"`
		ToolUseID   string `json:"tool_use_id"`
		Result      string `json:"result"`
		DenyMessage string `json:"deny_message,omitempty"`
	}{EvToolConfirmation, e.ToolUseID, result, e.DenyMessage})
}

// MarshalJSON is the event's wire form.
func (e ClientCustomToolResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type            string      `json:"type"`
		CustomToolUseID string      `json:"custom_tool_use_id"`
		Content         []textBlock `json:"content,omitempty"`
		IsError         bool        `json:"is_error,omitempty"`
	}{EvCustomToolResult, e.CustomToolUseID, textBlocks(e.Text), e.IsError})
}

// MarshalJSON is the event's wire form.
func (e ClientSystemMessage) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type    string      `json:"type"`
		Content []textBlock `json:"content"`
	}{EvSystemMessage, textBlocks(e.Text)})
}

// ParseSendEvents parses and checks the body of POST
// /v1/sessions/{id}/events: every event, and their order. A refusal is an
// *InvalidError naming the field (events[1].content, ...).
func ParseSendEvents(req SendEventsRequest) ([]ClientEvent, error) {
	if len(req.Events) == 0 {
		return nil, invalid("events: at least one event")
	}
	evs := make([]ClientEvent, 0, len(req.Events))
	for i, raw := range req.Events {
		ev, err := parseEvent(fmt.Sprintf("events[%d]", i), raw)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	if err := checkOrder("events", evs); err != nil {
		return nil, err
	}
	return evs, nil
}

// maxInitialEvents bounds initial_events, as the API does.
const maxInitialEvents = 50

// parseInitialEvents parses and checks a session's initial_events
// (absent or null: none). The API takes user.message and
// user.define_outcome there; outcomes are not supported.
func parseInitialEvents(raw json.RawMessage) ([]ClientEvent, error) {
	if !present(raw) || isNull(raw) {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, invalid("initial_events: want an array of events")
	}
	if len(list) > maxInitialEvents {
		return nil, invalid("initial_events: at most %d events, got %d", maxInitialEvents, len(list))
	}
	evs := make([]ClientEvent, 0, len(list))
	for i, e := range list {
		f := fmt.Sprintf("initial_events[%d]", i)
		typ, err := eventType(f, e)
		if err != nil {
			return nil, err
		}
		switch typ {
		case EvUserMessage:
		case "user.define_outcome":
			return nil, unsupported(f, typ)
		default:
			return nil, invalid("%s.type: initial_events take user.message (and user.define_outcome), got %q", f, typ)
		}
		ev, err := parseEvent(f, e)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// eventType reads an event's type.
func eventType(f string, raw json.RawMessage) (string, error) {
	var head struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || !isObject(raw) {
		return "", invalid("%s: want an object with a type", f)
	}
	if head.Type == nil {
		return "", invalid("%s.type: required", f)
	}
	return *head.Type, nil
}

func isObject(raw json.RawMessage) bool {
	return bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), []byte("{"))
}

// parseEvent parses one event; f names it (events[2]).
func parseEvent(f string, raw json.RawMessage) (ClientEvent, error) {
	typ, err := eventType(f, raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case EvUserMessage:
		var m struct {
			Type    string            `json:"type"`
			Content []json.RawMessage `json:"content"`
		}
		if err := decodeStrict(f, raw, &m); err != nil {
			return nil, err
		}
		text, err := parseText(f+".content", m.Content, "user message", true)
		if err != nil {
			return nil, err
		}
		return ClientUserMessage{Text: text}, nil
	case EvUserInterrupt:
		var m struct {
			Type            string          `json:"type"`
			SessionThreadID json.RawMessage `json:"session_thread_id"`
		}
		if err := decodeStrict(f, raw, &m); err != nil {
			return nil, err
		}
		if present(m.SessionThreadID) && !isNull(m.SessionThreadID) {
			return nil, unsupported(f+".session_thread_id", "session threads (multiagent sessions)")
		}
		return ClientInterrupt{}, nil
	case EvToolConfirmation:
		var m struct {
			Type        string  `json:"type"`
			ToolUseID   string  `json:"tool_use_id"`
			Result      string  `json:"result"`
			DenyMessage *string `json:"deny_message"`
		}
		if err := decodeStrict(f, raw, &m); err != nil {
			return nil, err
		}
		if m.ToolUseID == "" {
			return nil, invalid("%s.tool_use_id: required, the id of the tool call to confirm", f)
		}
		ev := ClientToolConfirmation{ToolUseID: m.ToolUseID}
		switch m.Result {
		case "allow":
			ev.Allow = true
			if m.DenyMessage != nil {
				return nil, invalid("%s.deny_message: only with result deny", f)
			}
		case "deny":
			if m.DenyMessage != nil {
				ev.DenyMessage = *m.DenyMessage
			}
		default:
			return nil, invalid("%s.result: want allow or deny, got %q", f, m.Result)
		}
		return ev, nil
	case EvCustomToolResult:
		var m struct {
			Type            string            `json:"type"`
			CustomToolUseID string            `json:"custom_tool_use_id"`
			Content         []json.RawMessage `json:"content"`
			IsError         bool              `json:"is_error"`
		}
		if err := decodeStrict(f, raw, &m); err != nil {
			return nil, err
		}
		if m.CustomToolUseID == "" {
			return nil, invalid("%s.custom_tool_use_id: required", f)
		}
		text, err := parseText(f+".content", m.Content, "custom tool result", false)
		if err != nil {
			return nil, err
		}
		return ClientCustomToolResult{CustomToolUseID: m.CustomToolUseID, Text: text, IsError: m.IsError}, nil
	case EvSystemMessage:
		var m struct {
			Type    string            `json:"type"`
			Content []json.RawMessage `json:"content"`
		}
		if err := decodeStrict(f, raw, &m); err != nil {
			return nil, err
		}
		text, err := parseText(f+".content", m.Content, "system message", true)
		if err != nil {
			return nil, err
		}
		return ClientSystemMessage{Text: text}, nil
	case "user.define_outcome", "user.tool_result":
		return nil, unsupported(f, typ)
	default:
		return nil, invalid("%s.type: unknown event type %q", f, typ)
	}
}

// parseText reads content blocks, text only; with need, at least one
// holds more than white space.
func parseText(f string, blocks []json.RawMessage, what string, need bool) ([]string, error) {
	text := make([]string, 0, len(blocks))
	for j, c := range blocks {
		bf := fmt.Sprintf("%s[%d]", f, j)
		typ, err := eventType(bf, c)
		if err != nil {
			return nil, err
		}
		if typ != "text" {
			return nil, unsupported(bf, fmt.Sprintf("%q content in a %s (text only)", typ, what))
		}
		var b struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := decodeStrict(bf, c, &b); err != nil {
			return nil, err
		}
		if b.Text == nil {
			return nil, invalid("%s.text: required", bf)
		}
		text = append(text, *b.Text)
	}
	if need && strings.TrimSpace(strings.Join(text, "")) == "" {
		return nil, invalid("%s: at least one non-empty text block", f)
	}
	if len(text) == 0 {
		text = nil
	}
	return text, nil
}

// checkOrder checks where a system.message stands: at most one per
// request, the last event, right after the user.message or
// user.custom_tool_result it accompanies (the API also takes it after a
// user.tool_result, which agentd refuses: it runs no client-side agent
// toolset).
func checkOrder(field string, evs []ClientEvent) error {
	for i, e := range evs {
		if _, ok := e.(ClientSystemMessage); !ok {
			continue
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		if i != len(evs)-1 {
			return invalid("%s: a system.message must be the last event of a request (at most one per request), after the user.message or user.custom_tool_result it accompanies", f)
		}
		if i == 0 {
			return invalid("%s: a system.message accompanies a user.message or user.custom_tool_result: send it right after one, in the same request", f)
		}
		switch evs[i-1].(type) {
		case ClientUserMessage, ClientCustomToolResult:
		default:
			return invalid("%s: a system.message must follow the user.message or user.custom_tool_result it accompanies, not a %s", f, evs[i-1].EventType())
		}
	}
	return nil
}
