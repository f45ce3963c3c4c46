package run

import (
	"encoding/json"

	"github.com/agentd/agentd/internal/money"
)

// Event types: the Type of a store.Event of a run. Each has one payload
// type (its Data), listed next to it.
const (
	EventStart      = "start"       // StartEvent
	EventTextDelta  = "text_delta"  // TextDeltaEvent
	EventToolUse    = "tool_use"    // ToolUseEvent
	EventToolResult = "tool_result" // ToolResultEvent
	EventUsage      = "usage"       // UsageEvent
	EventDone       = "done"        // Answer: the final answer
	EventError      = "error"       // ErrorInfo
	// EventResumed: the run continues from its checkpoint after its
	// previous attempt stopped; text deltas of the unfinished step
	// (events after the last usage/tool_result) are superseded.
	EventResumed = "resumed" // ResumedEvent
)

// EventData is the payload of an event; its type names the event.
//
// The fields of StartEvent, ToolUseEvent, ToolResultEvent, UsageEvent and
// ResumedEvent are in the alphabetical order of their JSON names: they
// were maps once, which encoding/json writes with sorted keys, and the
// bytes on the wire stay the same (events_test.go pins them).
type EventData interface {
	EventType() string
}

// StartEvent opens a run's events (seq 1).
type StartEvent struct {
	Agent          string `json:"agent"`
	ConversationID string `json:"conversation_id"`
	Model          string `json:"model"`
	RunID          string `json:"run_id"`
}

// TextDeltaEvent is a piece of the text of a model call's answer as it
// streams.
type TextDeltaEvent struct {
	Step  int    `json:"step"`
	Index int    `json:"index"` // the content block's index
	Text  string `json:"text"`
}

// ToolUseEvent is a tool call the model asked for.
type ToolUseEvent struct {
	ID    string          `json:"id"`
	Input json.RawMessage `json:"input"`
	Name  string          `json:"name"`
	Step  int             `json:"step"`
}

// ToolResultEvent is a tool call's result.
type ToolResultEvent struct {
	Content    string `json:"content"`
	DurationMS int64  `json:"duration_ms"`
	IsError    bool   `json:"is_error"`
	Name       string `json:"name"`
	Step       int    `json:"step"`
	// SystemMessage is the system text the client sent with a client
	// tool's result (store.Approval's), if any.
	SystemMessage string `json:"system_message,omitempty"`
	ToolUseID     string `json:"tool_use_id"`
}

// UsageEvent ends a model call: what it used and cost.
type UsageEvent struct {
	CacheCreationInputTokens int64       `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64       `json:"cache_read_input_tokens"`
	CostUSD                  money.Nanos `json:"cost_usd"`
	InputTokens              int64       `json:"input_tokens"`
	Model                    string      `json:"model"` // the model that answered, as the provider named it
	OutputTokens             int64       `json:"output_tokens"`
	RequestID                string      `json:"request_id"`
	Step                     int         `json:"step"`
	StopReason               string      `json:"stop_reason"`
}

// ResumedEvent: the run continues at Step; events after AfterSeq that
// belong to the step before it (text deltas) are superseded.
type ResumedEvent struct {
	AfterSeq int64 `json:"after_seq"`
	Step     int   `json:"step"`
}

// EventType implements EventData.
func (StartEvent) EventType() string { return EventStart }

// EventType implements EventData.
func (TextDeltaEvent) EventType() string { return EventTextDelta }

// EventType implements EventData.
func (ToolUseEvent) EventType() string { return EventToolUse }

// EventType implements EventData.
func (ToolResultEvent) EventType() string { return EventToolResult }

// EventType implements EventData.
func (UsageEvent) EventType() string { return EventUsage }

// EventType implements EventData.
func (ResumedEvent) EventType() string { return EventResumed }

// EventType implements EventData.
func (Answer) EventType() string { return EventDone }

// EventType implements EventData.
func (ErrorInfo) EventType() string { return EventError }
