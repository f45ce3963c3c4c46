package managed

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// The translation of agentd's run events (internal/run/events.go) into
// Managed Agents session events, as anthropic-sdk-go decodes them
// (BetaManagedAgentsSessionEventUnion for the history,
// BetaManagedAgentsStreamSessionEventsUnion for the stream). Pure: it reads
// events and returns events; storing, streaming and the run machinery are
// the caller's.
//
//	run event        session events
//	start            session.status_running
//	text_delta       (stream only, opted in with event_deltas=agent.message)
//	                 event_start {agent.message preview} once per model call,
//	                 then event_delta {content_delta}
//	tool_use         agent.message (the model call's text, if any), then
//	                 agent.custom_tool_use (a custom tool: the client runs it),
//	                 agent.mcp_tool_use (a tool of an MCP toolset, agentd's
//	                 own included) or agent.tool_use (any other tool)
//	usage            agent.message (text not yet sent), then
//	                 span.model_request_end with the call's tokens
//	                 (span.model_request_start comes before the call's first
//	                 event), then session.usage: the session's usage so far
//	                 (the sums of every usage event translated)
//	tool_result      agent.mcp_tool_result or agent.tool_result (none for a
//	                 custom tool: its result is the user's
//	                 user.custom_tool_result)
//	done             session.status_idle {end_turn}
//	error            interrupted or canceled: session.status_idle {end_turn};
//	                 budget_exceeded: session.status_idle {budget_reached};
//	                 else session.error, then session.status_idle
//	                 {retries_exhausted}
//	resumed          nothing; the unfinished model call's streamed text is
//	                 dropped (the new attempt streams it again)
//
// A paused run (requires_action) is RequiresAction's.
//
// Event ids are deterministic, so that a reconnecting stream and the
// history agree without duplicates: "sevt_<run id>_<seq>[_<n>]". A tool
// call's event id is the model's tool_use id (toolu_...), so that a
// user.custom_tool_result's custom_tool_use_id or a user.tool_confirmation's
// tool_use_id is the id agentd's run knows the call by.

// Out is one translated event.
type Out struct {
	ID   string
	Type string
	// StreamOnly: event_start / event_delta, sent to streams that asked
	// for deltas, never kept in the history.
	StreamOnly bool
	// Data is the event's JSON object.
	Data json.RawMessage
}

// ToolKind says who runs a tool and how its calls are reported.
type ToolKind int

// Tool kinds.
const (
	ToolKindServer ToolKind = iota // agent.tool_use / agent.tool_result
	ToolKindCustom                 // agent.custom_tool_use; the client runs it
	ToolKindMCP                    // agent.mcp_tool_use / agent.mcp_tool_result
)

// ToolInfo is how a tool's calls are reported.
type ToolInfo struct {
	Kind ToolKind
	// Server is the mcp_server_name (ToolKindMCP).
	Server string
	// Policy is the permission policy (PolicyAlwaysAllow, PolicyAlwaysAsk;
	// empty: allow), reported as evaluated_permission.
	Policy string
}

// Translator translates the events of one session's runs, in order. Not
// safe for concurrent use.
type Translator struct {
	// Tools reports how the calls of a tool are reported (nil or a name it
	// does not know: ToolKindServer).
	Tools func(name string) ToolInfo

	step      int    // the model call whose events are open (0: none)
	startID   string // its span.model_request_start id
	previewID string // its agent.message preview/event id
	text      map[int]*strings.Builder
	indexes   []int
	flushed   bool
	tools     map[string]ToolInfo // tool_use id → info, for the results
	// lastText: the last finished model call streamed text (else done
	// sends the answer's text as the agent.message).
	lastText bool
	// pending: tool calls waiting for a decision (approval_required) not
	// yet reported by a requires_action idle; pauseID is that idle's id.
	pending []string
	pauseID string
	pauseAt time.Time
	// idle: the last event translated ended the turn (an idle); ended
	// reports a finished run's end only when it did not.
	idle bool

	// Budget is the session's budget, reported by session.usage (the
	// caller changes it as the session's updates did).
	Budget *Budget
	// usage: the session's usage so far (every usage event translated),
	// reported by session.usage after each span.model_request_end;
	// active the time of its finished turns, runStart the start of the
	// current one.
	usage    SessionUsage
	active   time.Duration
	runStart time.Time
}

// sessionUsage is a session.usage event (BetaManagedAgentsSessionUsageEvent).
type sessionUsage struct {
	evBase
	Usage  SessionUsage `json:"usage"`
	Budget *Budget      `json:"budget"`
}

// endRun adds the time of the run that started at runStart and ended at
// end to the session's active time.
func (t *Translator) endRun(end time.Time) {
	if !t.runStart.IsZero() {
		t.active += max(0, end.Sub(t.runStart))
		t.runStart = time.Time{}
	}
}

// ToolsOf returns the Tools function of an agent: its custom tools, its MCP
// toolsets' tools (by mcp, the server a tool name belongs to; nil: none
// known), the rest server tools.
func ToolsOf(c AgentConfig, mcp func(name string) (server string, ok bool)) func(string) ToolInfo {
	custom := map[string]bool{}
	toolsets := map[string]Tool{}
	for _, t := range c.Tools {
		switch t.Type {
		case ToolCustom:
			custom[t.Name] = true
		case ToolMCPToolset:
			toolsets[t.MCPServerName] = t
		}
	}
	return func(name string) ToolInfo {
		if custom[name] {
			return ToolInfo{Kind: ToolKindCustom}
		}
		if mcp != nil {
			if server, ok := mcp(name); ok {
				info := ToolInfo{Kind: ToolKindMCP, Server: server}
				if ts, ok := toolsets[server]; ok {
					_, info.Policy = ts.Policy(name)
				}
				return info
			}
		}
		return ToolInfo{Kind: ToolKindServer}
	}
}

func (t *Translator) tool(name string) ToolInfo {
	if t.Tools == nil {
		return ToolInfo{}
	}
	return t.Tools(name)
}

// wire event bodies

type evBase struct {
	ID          string `json:"id,omitempty"`
	Type        string `json:"type"`
	ProcessedAt string `json:"processed_at,omitempty"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type evMessage struct {
	evBase
	Content []textBlock `json:"content"`
}

type evToolUse struct {
	evBase
	Name                string          `json:"name"`
	Input               json.RawMessage `json:"input"`
	MCPServerName       string          `json:"mcp_server_name,omitempty"`
	EvaluatedPermission string          `json:"evaluated_permission,omitempty"`
}

type evToolResult struct {
	evBase
	ToolUseID    string      `json:"tool_use_id,omitempty"`
	MCPToolUseID string      `json:"mcp_tool_use_id,omitempty"`
	Content      []textBlock `json:"content"`
	IsError      bool        `json:"is_error"`
}

type evCustomResult struct {
	evBase
	CustomToolUseID string      `json:"custom_tool_use_id"`
	Content         []textBlock `json:"content"`
	IsError         bool        `json:"is_error"`
}

// CustomToolResultID is the event id of the user.custom_tool_result of a
// run's custom tool call: the same when it is sent and in the history.
func CustomToolResultID(runID, toolUseID string) string {
	return "sevt_" + runID + "_" + toolUseID + "_result"
}

// CustomToolSystemID is the event id of the system.message sent with the
// user.custom_tool_result of a run's custom tool call.
func CustomToolSystemID(runID, toolUseID string) string {
	return "sevt_" + runID + "_" + toolUseID + "_system"
}

// systemMessage is a system.message event (BetaManagedAgentsSystemMessageEvent).
type systemMessage struct {
	ID          string      `json:"id"`
	Type        string      `json:"type"`
	ProcessedAt *string     `json:"processed_at"`
	Content     []textBlock `json:"content"`
}

type stopReason struct {
	Type     string   `json:"type"`
	EventIDs []string `json:"event_ids,omitempty"`
}

type evIdle struct {
	evBase
	StopReason stopReason `json:"stop_reason"`
}

type modelUsage struct {
	InputTokens              int64  `json:"input_tokens"`
	OutputTokens             int64  `json:"output_tokens"`
	CacheCreationInputTokens int64  `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64  `json:"cache_read_input_tokens"`
	Speed                    string `json:"speed"`
}

type evSpanEnd struct {
	evBase
	ModelRequestStartID string     `json:"model_request_start_id"`
	IsError             bool       `json:"is_error"`
	ModelUsage          modelUsage `json:"model_usage"`
}

type sessionError struct {
	Type        string   `json:"type"`
	Message     string   `json:"message"`
	RetryStatus typeOnly `json:"retry_status"`
}

type evError struct {
	evBase
	Error sessionError `json:"error"`
}

type evStart struct {
	Type  string `json:"type"`
	Event struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"event"`
}

type evDelta struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	Delta   struct {
		Type    string    `json:"type"`
		Index   int       `json:"index"`
		Content textBlock `json:"content"`
	} `json:"delta"`
}

func out(id, typ string, streamOnly bool, v any) (Out, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Out{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return Out{ID: id, Type: typ, StreamOnly: streamOnly, Data: b}, nil
}

func eventID(e store.Event, n int) string {
	if n == 0 {
		return fmt.Sprintf("sevt_%s_%d", e.RunID, e.Seq)
	}
	return fmt.Sprintf("sevt_%s_%d_%d", e.RunID, e.Seq, n)
}

// Translate returns the session events of the run event e.
func (t *Translator) Translate(e store.Event) ([]Out, error) {
	outs, err := t.translate(e)
	if err == nil && len(outs) > 0 {
		t.idle = outs[len(outs)-1].Type == "session.status_idle"
	}
	return outs, err
}

// Ended returns the end of finished run r when its events did not end the
// turn (a run canceled before it stored an event, or failed outside its
// loop): session.status_idle, after a session.error for a failure. ok is
// false when there is nothing to add.
func (t *Translator) Ended(r store.Run) (outs []Out, ok bool, err error) {
	if !r.Status.Terminal() || t.idle {
		return nil, false, nil
	}
	t.idle, t.step, t.pending = true, 0, nil
	t.endRun(r.FinishedAt)
	at := mustTimestamp(r.FinishedAt)
	stop := "end_turn"
	if r.Status == store.RunFailed {
		stop = "retries_exhausted"
		id := "sevt_" + r.ID + "_error"
		o, err := out(id, "session.error", false, evError{evBase: evBase{ID: id, Type: "session.error", ProcessedAt: at},
			Error: sessionError{Type: "unknown_error", Message: r.Error, RetryStatus: typeOnly{"exhausted"}}})
		if err != nil {
			return nil, false, err
		}
		outs = append(outs, o)
	}
	id := "sevt_" + r.ID + "_end"
	o, err := out(id, "session.status_idle", false, evIdle{evBase: evBase{ID: id, Type: "session.status_idle", ProcessedAt: at},
		StopReason: stopReason{Type: stop}})
	if err != nil {
		return nil, false, err
	}
	return append(outs, o), true, nil
}

func (t *Translator) translate(e store.Event) ([]Out, error) {
	at := mustTimestamp(e.CreatedAt)
	base := func(id, typ string) evBase { return evBase{ID: id, Type: typ, ProcessedAt: at} }
	var outs []Out
	add := func(o Out, err error) error {
		if err == nil {
			outs = append(outs, o)
		}
		return err
	}
	n := 0
	nextID := func() string { id := eventID(e, n); n++; return id }
	// openStep starts model call step: span.model_request_start.
	openStep := func(step int) error {
		if t.step == step {
			return nil
		}
		t.step, t.text, t.indexes, t.flushed = step, map[int]*strings.Builder{}, nil, false
		t.startID = nextID()
		t.previewID = ""
		return add(out(t.startID, "span.model_request_start", false, base(t.startID, "span.model_request_start")))
	}
	// flush sends the call's text as one agent.message.
	flush := func() error {
		if t.flushed || len(t.indexes) == 0 {
			t.flushed = true
			return nil
		}
		t.flushed = true
		id := t.previewID
		if id == "" {
			id = nextID()
		}
		msg := evMessage{evBase: base(id, "agent.message")}
		for _, i := range t.indexes {
			msg.Content = append(msg.Content, textBlock{Type: "text", Text: t.text[i].String()})
		}
		return add(out(id, "agent.message", false, msg))
	}
	switch e.Type {
	case run.EventStart:
		t.step, t.runStart = 0, e.CreatedAt
		id := nextID()
		return outs, add(out(id, "session.status_running", false, base(id, "session.status_running")))
	case run.EventTextDelta:
		var d run.TextDeltaEvent
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, fmt.Errorf("text_delta %d: %w", e.Seq, err)
		}
		if err := openStep(d.Step); err != nil {
			return nil, err
		}
		if t.previewID == "" {
			t.previewID = nextID()
			var s evStart
			s.Type, s.Event.ID, s.Event.Type = "event_start", t.previewID, "agent.message"
			if err := add(out("", "event_start", true, s)); err != nil {
				return nil, err
			}
		}
		b, ok := t.text[d.Index]
		if !ok {
			b = &strings.Builder{}
			t.text[d.Index] = b
			t.indexes = append(t.indexes, d.Index)
		}
		b.WriteString(d.Text)
		var dv evDelta
		dv.Type, dv.EventID = "event_delta", t.previewID
		dv.Delta.Type, dv.Delta.Index = "content_delta", indexOf(t.indexes, d.Index)
		dv.Delta.Content = textBlock{Type: "text", Text: d.Text}
		return outs, add(out("", "event_delta", true, dv))
	case run.EventToolUse:
		var u run.ToolUseEvent
		if err := json.Unmarshal(e.Data, &u); err != nil {
			return nil, fmt.Errorf("tool_use %d: %w", e.Seq, err)
		}
		if err := openStep(u.Step); err != nil {
			return nil, err
		}
		if err := flush(); err != nil {
			return nil, err
		}
		info := t.tool(u.Name)
		if t.tools == nil {
			t.tools = map[string]ToolInfo{}
		}
		t.tools[u.ID] = info
		input := u.Input
		if len(input) == 0 {
			input = json.RawMessage(`{}`)
		}
		perm := "allow"
		if info.Policy == PolicyAlwaysAsk {
			perm = "ask"
		}
		ev := evToolUse{evBase: base(u.ID, "agent.tool_use"), Name: u.Name, Input: input, EvaluatedPermission: perm}
		switch info.Kind {
		case ToolKindCustom:
			ev.Type, ev.EvaluatedPermission = "agent.custom_tool_use", ""
		case ToolKindMCP:
			ev.Type, ev.MCPServerName = "agent.mcp_tool_use", info.Server
		}
		return outs, add(out(u.ID, ev.Type, false, ev))
	case run.EventUsage:
		var u run.UsageEvent
		if err := json.Unmarshal(e.Data, &u); err != nil {
			return nil, fmt.Errorf("usage %d: %w", e.Seq, err)
		}
		if err := openStep(u.Step); err != nil {
			return nil, err
		}
		if err := flush(); err != nil {
			return nil, err
		}
		id := nextID()
		span := evSpanEnd{evBase: base(id, "span.model_request_end"), ModelRequestStartID: t.startID,
			ModelUsage: modelUsage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
				CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens, Speed: "standard"}}
		t.lastText = len(t.indexes) > 0
		t.step = 0 // the call is over; the next event opens the next one
		if err := add(out(id, "span.model_request_end", false, span)); err != nil {
			return nil, err
		}
		// The session's usage after the call: its usage rows are the
		// same calls' (what Sessions.Get sums).
		t.usage.InputTokens += u.InputTokens
		t.usage.OutputTokens += u.OutputTokens
		t.usage.CacheReadInputTokens += u.CacheReadInputTokens
		t.usage.CacheCreation.Ephemeral5mInputTokens += u.CacheCreationInputTokens
		t.usage.CostUSD += u.CostUSD
		t.usage.ListCost = Cents(t.usage.CostUSD)
		su := sessionUsage{evBase: base(nextID(), "session.usage"), Usage: t.usage, Budget: t.Budget}
		su.Usage.ActiveSeconds = t.active.Seconds()
		if !t.runStart.IsZero() {
			su.Usage.ActiveSeconds += max(0, e.CreatedAt.Sub(t.runStart)).Seconds()
		}
		return outs, add(out(su.ID, su.Type, false, su))
	case run.EventToolResult:
		var r run.ToolResultEvent
		if err := json.Unmarshal(e.Data, &r); err != nil {
			return nil, fmt.Errorf("tool_result %d: %w", e.Seq, err)
		}
		info, ok := t.tools[r.ToolUseID]
		if !ok {
			info = t.tool(r.Name)
		}
		if info.Kind == ToolKindCustom {
			// The client's result, applied by the resumed run: the
			// user.custom_tool_result the client sent (under the id its
			// send answered), then the resume.
			id := CustomToolResultID(e.RunID, r.ToolUseID)
			res := evCustomResult{evBase: base(id, "user.custom_tool_result"), CustomToolUseID: r.ToolUseID,
				Content: []textBlock{{Type: "text", Text: r.Content}}, IsError: r.IsError}
			o, err := out(id, res.Type, false, res)
			if err != nil {
				return nil, err
			}
			applied := []Out{o}
			if r.SystemMessage != "" { // sent with it, applied with it
				sid := CustomToolSystemID(e.RunID, r.ToolUseID)
				sm := systemMessage{ID: sid, Type: EvSystemMessage, ProcessedAt: &at,
					Content: []textBlock{{Type: "text", Text: r.SystemMessage}}}
				so, err := out(sid, sm.Type, false, sm)
				if err != nil {
					return nil, err
				}
				applied = append(applied, so)
			}
			return t.resume(nextID, at, applied...)
		}
		id := nextID()
		res := evToolResult{evBase: base(id, "agent.tool_result"), ToolUseID: r.ToolUseID, IsError: r.IsError,
			Content: []textBlock{{Type: "text", Text: r.Content}}}
		if info.Kind == ToolKindMCP {
			res.Type, res.ToolUseID, res.MCPToolUseID = "agent.mcp_tool_result", "", r.ToolUseID
		}
		return outs, add(out(id, res.Type, false, res))
	case run.EventDone:
		if err := flush(); err != nil {
			return nil, err
		}
		if !t.lastText {
			var a run.Answer
			if err := json.Unmarshal(e.Data, &a); err != nil {
				return nil, fmt.Errorf("done %d: %w", e.Seq, err)
			}
			if a.Text != "" {
				id := nextID()
				msg := evMessage{evBase: base(id, "agent.message"), Content: []textBlock{{Type: "text", Text: a.Text}}}
				if err := add(out(id, "agent.message", false, msg)); err != nil {
					return nil, err
				}
			}
		}
		t.step, t.lastText = 0, false
		t.endRun(e.CreatedAt)
		id := nextID()
		return outs, add(out(id, "session.status_idle", false, evIdle{evBase: base(id, "session.status_idle"), StopReason: stopReason{Type: "end_turn"}}))
	case run.EventError:
		var ei run.ErrorInfo
		if err := json.Unmarshal(e.Data, &ei); err != nil {
			return nil, fmt.Errorf("error %d: %w", e.Seq, err)
		}
		t.step = 0
		t.endRun(e.CreatedAt)
		stop := "retries_exhausted"
		switch ei.Type {
		case "canceled", "interrupted":
			stop = "end_turn"
		case "budget_exceeded":
			stop = "budget_reached"
		default:
			id := nextID()
			se := evError{evBase: base(id, "session.error"), Error: sessionError{Type: errorType(ei.Type), Message: ei.Message,
				RetryStatus: typeOnly{"exhausted"}}}
			if err := add(out(id, "session.error", false, se)); err != nil {
				return nil, err
			}
		}
		id := nextID()
		return outs, add(out(id, "session.status_idle", false, evIdle{evBase: base(id, "session.status_idle"), StopReason: stopReason{Type: stop}}))
	case run.EventApprovalRequired, run.EventToolResultRequired:
		// A call waits for a user.tool_confirmation or (a custom tool)
		// a user.custom_tool_result; both events have the same fields.
		var a run.ApprovalRequiredEvent
		if err := json.Unmarshal(e.Data, &a); err != nil {
			return nil, fmt.Errorf("approval_required %d: %w", e.Seq, err)
		}
		t.pending = append(t.pending, a.ToolUseID)
		t.pauseID, t.pauseAt = eventID(e, 0)+"_idle", e.CreatedAt
		return nil, nil
	case run.EventApprovalDecided:
		return t.resume(nextID, at)
	case run.EventResumed:
		// The unfinished call's streamed text is superseded: forget it.
		t.step, t.text, t.indexes, t.previewID = 0, nil, nil, ""
		return nil, nil
	}
	return nil, nil // an event type the face does not show
}

// resume translates a paused run's resumption (a decision or a custom
// tool's result applied): the pause (if not reported yet), then
// session.status_running, once per resume.
func (t *Translator) resume(nextID func() string, at string, applied ...Out) ([]Out, error) {
	var outs []Out
	if o, ok, err := t.Paused(); err != nil {
		return nil, err
	} else if ok {
		outs = append(outs, o)
	}
	outs = append(outs, applied...)
	if t.pauseID == "" {
		return outs, nil // the resume was reported with the first decision
	}
	t.pauseID = ""
	id := nextID()
	o, err := out(id, "session.status_running", false, evBase{ID: id, Type: "session.status_running", ProcessedAt: at})
	if err != nil {
		return nil, err
	}
	return append(outs, o), nil
}

// Paused returns the session.status_idle {requires_action} of a run paused
// on the approval_required events translated so far, once (ok false: no
// call is waiting). The caller asks when the run's status is
// requires_action; Translate asks itself at the resume.
func (t *Translator) Paused() (o Out, ok bool, err error) {
	if len(t.pending) == 0 {
		return Out{}, false, nil
	}
	o, err = t.RequiresAction(t.pauseID, t.pauseAt, t.pending)
	t.pending = nil
	return o, err == nil, err
}

// RequiresAction is the session.status_idle of a run paused for the
// client: eventIDs are the tool calls waiting for a user.custom_tool_result
// or a user.tool_confirmation.
func (t *Translator) RequiresAction(id string, at time.Time, eventIDs []string) (Out, error) {
	return out(id, "session.status_idle", false, evIdle{evBase: evBase{ID: id, Type: "session.status_idle", ProcessedAt: mustTimestamp(at)},
		StopReason: stopReason{Type: "requires_action", EventIDs: eventIDs}})
}

// errorType maps run.ClassifyError types onto session.error types.
func errorType(t string) string {
	switch t {
	case "rate_limited":
		return "model_rate_limited_error"
	case "upstream_unavailable":
		return "model_overloaded_error"
	case "upstream_error", "upstream_timeout":
		return "model_request_failed_error"
	}
	return "unknown_error"
}

func indexOf(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}
