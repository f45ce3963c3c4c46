package managed

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// checkCalls refuses, before anything is applied, an event that answers a
// tool call the session's state says does not wait for it, given the
// events before it in the request: a call answered twice, answered with
// the other kind of answer, unknown, decided before; any answer after a
// user.interrupt or after the last waiting call was answered (the turn
// resumes); any answer when no turn waits.
func TestCheckCalls(t *testing.T) {
	w := newStreamWorld(t)
	s := &Service{Store: w, Runs: w, RunEvents: w}
	w.addRun(store.Run{ID: "run_1", Tenant: "t1", ConversationID: "conv_1", Status: store.RunRequiresAction})
	w.approvals = map[string][]store.Approval{"run_1": {
		{RunID: "run_1", ToolUseID: "toolu_a", Kind: store.ApprovalKindCustomTool},
		{RunID: "run_1", ToolUseID: "toolu_b", Kind: store.ApprovalKindCustomTool},
		{RunID: "run_1", ToolUseID: "toolu_c", Kind: store.ApprovalKindApproval},
		{RunID: "run_1", ToolUseID: "toolu_d", Kind: store.ApprovalKindApproval, Decision: store.DecisionApprove},
	}}
	result := func(id string) ClientEvent { return ClientCustomToolResult{CustomToolUseID: id, Text: []string{"x"}} }
	allow := func(id string) ClientEvent { return ClientToolConfirmation{ToolUseID: id, Allow: true} }
	for _, tc := range []struct {
		evs  []ClientEvent
		want string // "": accepted
	}{
		{[]ClientEvent{result("toolu_a"), result("toolu_b"), allow("toolu_c"), ClientUserMessage{Text: []string{"next"}}}, ""},
		{[]ClientEvent{result("toolu_a"), result("toolu_a")}, `events[1].custom_tool_use_id: "toolu_a" has its result already`},
		{[]ClientEvent{result("toolu_a"), allow("toolu_a")}, `events[1].tool_use_id: "toolu_a" is not a tool call waiting for a confirmation`},
		{[]ClientEvent{allow("toolu_c"), result("toolu_c")}, `events[1].custom_tool_use_id: "toolu_c" is not a custom tool call waiting for a result`},
		{[]ClientEvent{allow("toolu_nope")}, `events[0].tool_use_id: "toolu_nope" is not a tool call waiting`},
		{[]ClientEvent{allow("toolu_d")}, `events[0].tool_use_id: "toolu_d" was decided already`},
		{[]ClientEvent{ClientInterrupt{}, allow("toolu_c")}, "events[1]: no tool call of this session waits for a confirmation"},
		{[]ClientEvent{result("toolu_a"), result("toolu_b"), allow("toolu_c"), result("toolu_b")}, "events[3]: no custom tool call of this session waits for a result"},
	} {
		waiting, err := s.checkCalls(t.Context(), "events", w.ms, tc.evs)
		if tc.want == "" {
			require.NoError(t, err, "%v", tc.evs)
			require.Equal(t, "run_1", waiting.ID, "the answers go to the paused run")
			continue
		}
		e, ok := AsInvalid(err)
		require.True(t, ok, "%v: %v", tc.evs, err)
		require.Contains(t, e.Message, tc.want, "%v", tc.evs)
	}

	// No turn waits: every answer is refused.
	w.runs[0].Status = store.RunSucceeded
	_, err := s.checkCalls(t.Context(), "events", w.ms, []ClientEvent{allow("toolu_c")})
	e, ok := AsInvalid(err)
	require.True(t, ok)
	require.Equal(t, "events[0]: no tool call of this session waits for a confirmation", e.Message)
	waiting, err := s.checkCalls(t.Context(), "events", w.ms, []ClientEvent{ClientUserMessage{Text: []string{"hi"}}})
	require.NoError(t, err)
	require.Empty(t, waiting.ID, "no answer: no run read")
}

// refuseGuard refuses a text holding its secret (run.MessageGuard's
// refuse mode).
type refuseGuard string

func (g refuseGuard) Check(text string) (string, error) {
	if strings.Contains(text, string(g)) {
		return "", errors.New("the message contains a configured secret value")
	}
	return text, nil
}

// A text the message guard refuses, anywhere in a request, refuses the
// request before any event is applied (streamWorld's Runner is nil: an
// applied event would panic).
func TestSendEventsGuardsTextsFirst(t *testing.T) {
	w := newStreamWorld(t)
	s := &Service{Store: w, Runs: w, RunEvents: w, Guard: refuseGuard("sk-secret-value")}
	for _, body := range [][]string{
		{`{"type":"user.message","content":[{"type":"text","text":"fine"}]}`, `{"type":"user.message","content":[{"type":"text","text":"key sk-secret-value"}]}`},
		{`{"type":"user.message","content":[{"type":"text","text":"fine"}]}`, `{"type":"system.message","content":[{"type":"text","text":"sk-secret-value"}]}`},
	} {
		_, err := s.SendEvents(t.Context(), "t1", w.ms.ID, "", sendBody(t, body...))
		require.ErrorContains(t, err, "configured secret value")
	}
}

// A new turn carries the session's system text: the latest turn's, and
// what was sent with an earlier turn's custom tool results after the
// latest turn was submitted (not what was decided before: the latest
// turn's input has it already).
func TestSessionSystemAcrossTurns(t *testing.T) {
	w := newStreamWorld(t)
	s := &Service{Store: w, Runs: w, RunEvents: w}
	t0 := time.Now()
	in, err := json.Marshal(turnInput{Message: "second", System: []string{"from before"}, SystemMessage: "with the second"})
	require.NoError(t, err)
	runs := []store.Run{
		{ID: "run_1", Status: store.RunSucceeded, CreatedAt: t0, FinishedAt: t0.Add(3 * time.Second)},
		{ID: "run_2", Status: store.RunSucceeded, CreatedAt: t0.Add(time.Second), Input: in},
	}
	w.approvals = map[string][]store.Approval{"run_1": {
		{ToolUseID: "a", Decision: store.DecisionResult, SystemMessage: "decided before run_2", DecidedAt: t0.Add(500 * time.Millisecond)},
		{ToolUseID: "b", Decision: store.DecisionResult, SystemMessage: "decided after run_2", DecidedAt: t0.Add(2 * time.Second)},
	}}
	got, err := s.sessionSystem(t.Context(), runs)
	require.NoError(t, err)
	require.Equal(t, []string{"from before", "with the second", "decided after run_2"}, got)
	// An earlier turn that finished before the latest was submitted is
	// not read.
	runs[0].FinishedAt = t0.Add(time.Second / 2)
	got, err = s.sessionSystem(t.Context(), runs)
	require.NoError(t, err)
	require.Equal(t, []string{"from before", "with the second"}, got)
}
