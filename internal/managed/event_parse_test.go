package managed

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func sendBody(t *testing.T, evs ...string) SendEventsRequest {
	t.Helper()
	var req SendEventsRequest
	require.NoError(t, json.Unmarshal([]byte(`{"events":[`+strings.Join(evs, ",")+`]}`), &req))
	return req
}

const (
	msgHi   = `{"type":"user.message","content":[{"type":"text","text":"hi"}]}`
	sysNote = `{"type":"system.message","content":[{"type":"text","text":"be brief"},{"type":"text","text":"in French"}]}`
)

// ParseSendEvents parses every event into its typed value, and refuses a
// bad one anywhere with an invalid-request error naming its field.
func TestParseSendEvents(t *testing.T) {
	evs, err := ParseSendEvents(sendBody(t, `{"type":"user.interrupt"}`,
		`{"type":"user.tool_confirmation","tool_use_id":"toolu_1","result":"deny","deny_message":"no"}`,
		`{"type":"user.custom_tool_result","custom_tool_use_id":"toolu_2","is_error":true,"content":[{"type":"text","text":"42"}]}`,
		msgHi, sysNote))
	require.NoError(t, err)
	require.Equal(t, []ClientEvent{ClientInterrupt{},
		ClientToolConfirmation{ToolUseID: "toolu_1", DenyMessage: "no"},
		ClientCustomToolResult{CustomToolUseID: "toolu_2", Text: []string{"42"}, IsError: true},
		ClientUserMessage{Text: []string{"hi"}},
		ClientSystemMessage{Text: []string{"be brief", "in French"}}}, evs)

	for _, tc := range []struct {
		evs  []string
		want string
	}{
		{nil, "events: at least one event"},
		{[]string{msgHi, `{"type":"user.message","content":[{"type":"image","source":{}}]}`}, `events[1].content[0]: "image" content in a user message (text only) is not supported`},
		{[]string{msgHi, `{"type":"user.message","content":[{"type":"text","text":"  "}]}`}, "events[1].content: at least one non-empty text block"},
		{[]string{msgHi, `{"type":"user.message","content":[{"type":"text"}]}`}, "events[1].content[0].text: required"},
		{[]string{msgHi, `{"type":"user.message","content":[],"colour":"red"}`}, `events[1]: unknown field "colour"`},
		{[]string{msgHi, `"user.message"`}, "events[1]: want an object with a type"},
		{[]string{msgHi, `{"content":[]}`}, "events[1].type: required"},
		{[]string{msgHi, `{"type":"user.hello"}`}, `events[1].type: unknown event type "user.hello"`},
		{[]string{`{"type":"user.tool_confirmation","tool_use_id":"toolu_1","result":"maybe"}`}, `events[0].result: want allow or deny, got "maybe"`},
		{[]string{`{"type":"user.tool_confirmation","result":"allow"}`}, "events[0].tool_use_id: required"},
		{[]string{`{"type":"user.tool_confirmation","tool_use_id":"t","result":"allow","deny_message":"x"}`}, "events[0].deny_message: only with result deny"},
		{[]string{`{"type":"user.custom_tool_result","content":[]}`}, "events[0].custom_tool_use_id: required"},
		{[]string{`{"type":"user.interrupt","session_thread_id":"sthr_1"}`}, "events[0].session_thread_id: session threads"},
		{[]string{`{"type":"user.tool_result"}`}, "events[0]: user.tool_result is not supported"},
		{[]string{sysNote}, "events[0]: a system.message accompanies a user.message"},
		{[]string{sysNote, msgHi}, "events[0]: a system.message must be the last event"},
		{[]string{msgHi, sysNote, sysNote}, "events[1]: a system.message must be the last event"},
		{[]string{`{"type":"user.interrupt"}`, sysNote}, "events[1]: a system.message must follow the user.message or user.custom_tool_result it accompanies, not a user.interrupt"},
		{[]string{`{"type":"user.tool_confirmation","tool_use_id":"t","result":"allow"}`, sysNote}, "events[1]: a system.message must follow the user.message or user.custom_tool_result it accompanies, not a user.tool_confirmation"},
		{[]string{msgHi, `{"type":"system.message","content":[{"type":"text","text":""}]}`}, "events[1].content: at least one non-empty text block"},
	} {
		_, err := ParseSendEvents(sendBody(t, tc.evs...))
		e, ok := AsInvalid(err)
		require.True(t, ok, "%v: %v", tc.evs, err)
		require.Contains(t, e.Message, tc.want, "%v", tc.evs)
	}
}

// Initial events: user.message only (outcomes refused), each checked.
func TestParseInitialEvents(t *testing.T) {
	evs, err := parseInitialEvents(json.RawMessage(`[` + msgHi + `,` + msgHi + `]`))
	require.NoError(t, err)
	require.Len(t, evs, 2)
	evs, err = parseInitialEvents(nil)
	require.NoError(t, err)
	require.Empty(t, evs)
	for raw, want := range map[string]string{
		`[` + msgHi + `,{"type":"user.message","content":[{"type":"text","text":""}]}]`: "initial_events[1].content: at least one non-empty text block",
		`[` + msgHi + `,` + sysNote + `]`:                                               "initial_events[1].type: initial_events take user.message",
		`[{"type":"user.define_outcome"}]`:                                              "initial_events[0]: user.define_outcome is not supported",
		`{}`:                                                                            "initial_events: want an array of events",
		`[` + strings.Repeat(msgHi+",", 50) + msgHi + `]`:                               "initial_events: at most 50 events, got 51",
	} {
		_, err := parseInitialEvents(json.RawMessage(raw))
		e, ok := AsInvalid(err)
		require.True(t, ok, "%s: %v", raw, err)
		require.Contains(t, e.Message, want)
	}
}
