package run_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/anthropic"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
	"github.com/agentd/agentd/internal/tool"
)

type testBundle struct {
	store *sqlite.Store
	sim   *sim.Server
	model llm.Model
	loop  *run.Loop
	svc   *run.Service
	agent *run.ChatAgent
	calls *countingTool
}

// countingTool is a real tool that counts its calls.
type countingTool struct {
	n    atomic.Int64
	fail bool
	wait time.Duration
}

func (c *countingTool) Spec() llm.ToolSpec {
	return llm.ToolSpec{Name: "lookup", Description: "Looks a key up.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`)}
}

func (c *countingTool) Call(ctx context.Context, input json.RawMessage) (string, error) {
	c.n.Add(1)
	if c.wait > 0 {
		select {
		case <-time.After(c.wait):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if c.fail {
		return "", errors.New("backend down")
	}
	return "value-for-" + string(input), nil
}

func setup(t *testing.T, simCfg sim.Config) *testBundle {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))

	simCfg.APIKey = "test-key"
	if simCfg.Seed == 0 {
		simCfg.Seed = 1
	}
	s := sim.New(simCfg, log)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	model := anthropic.New(anthropic.Config{BaseURL: hs.URL, APIKey: "test-key"})

	calls := &countingTool{}
	tools := append(tool.Builtins(nil), calls)
	agent := &run.ChatAgent{
		Agent: run.Agent{Name: "demo", Model: "claude-sonnet-4-5", System: "be brief", Tools: tools,
			MaxSteps: 5, MaxTokens: 512, Timeout: 10 * time.Second},
		MaxMessages: 100,
	}
	loop := &run.Loop{Model: model, Store: st, Log: log}
	svc := &run.Service{Loop: loop, Store: st, Agents: map[string]*run.ChatAgent{"demo": agent}, Log: log, ConversationTTL: time.Hour}
	return &testBundle{store: st, sim: s, model: model, loop: loop, svc: svc, agent: agent, calls: calls}
}

func (b *testBundle) chat(t *testing.T, convID, msg string) (run.Answer, error) {
	t.Helper()
	c, err := b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "demo", ConversationID: convID, Message: msg})
	require.NoError(t, err)
	return c.Execute(context.Background(), nil)
}

func (b *testBundle) events(t *testing.T, runID string) []store.Event {
	t.Helper()
	evs, err := b.store.ListEvents(context.Background(), runID, 0, 1000)
	require.NoError(t, err)
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "event seqs are gap-free from 1")
	}
	return evs
}

func types(evs []store.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type != run.EventTextDelta {
			out = append(out, ev.Type)
		}
	}
	return out
}

func TestChatPlainAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	var live []store.Event
	c, err := b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "demo", Message: "hello agentd"})
	require.NoError(t, err)
	ans, err := c.Execute(context.Background(), func(ev store.Event) { live = append(live, ev) })
	require.NoError(t, err)
	require.Contains(t, ans.Text, "hello agentd")
	require.Equal(t, "end_turn", ans.StopReason)
	require.Equal(t, 1, ans.Steps)
	require.Positive(t, ans.Usage.InputTokens)
	require.Positive(t, ans.Usage.OutputTokens)

	evs := b.events(t, ans.RunID)
	require.Equal(t, []string{"start", "usage", "done"}, types(evs))
	require.Equal(t, len(evs), len(live), "live subscribers see every persisted event")
	var deltas strings.Builder
	for _, ev := range evs {
		if ev.Type == run.EventTextDelta {
			var d struct{ Text string }
			require.NoError(t, json.Unmarshal(ev.Data, &d))
			deltas.WriteString(d.Text)
		}
	}
	require.Equal(t, ans.Text, deltas.String(), "text deltas add up to the answer")

	conv, err := b.store.GetConversation(context.Background(), "t1", ans.ConversationID)
	require.NoError(t, err)
	require.Len(t, conv.Messages, 2)
	require.Equal(t, "user", conv.Messages[0].Role)
	require.Equal(t, "assistant", conv.Messages[1].Role)
	require.False(t, conv.ExpiresAt.IsZero(), "conversation TTL applied")

	r, err := b.store.GetRun(context.Background(), "t1", ans.RunID)
	require.NoError(t, err)
	require.Equal(t, store.RunSucceeded, r.Status)
	require.Equal(t, 1, r.Steps)
	require.Equal(t, ans.Usage.OutputTokens, r.OutputTokens)
	require.False(t, r.FinishedAt.IsZero())

	cp, err := b.store.LatestCheckpoint(context.Background(), ans.RunID)
	require.NoError(t, err)
	require.Equal(t, 1, cp.Step, "the final model call's checkpoint is the one stored with the turn and the done event")
}

func TestChatToolUseAndHistory(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ans, err := b.chat(t, "", "please use lookup and calculator")
	require.NoError(t, err)
	require.Equal(t, 2, ans.Steps)
	require.Equal(t, int64(1), b.calls.n.Load())
	require.Contains(t, ans.Text, "[lookup] =>")
	require.Contains(t, ans.Text, "[calculator] =>")

	evs := b.events(t, ans.RunID)
	require.Equal(t, []string{"start", "tool_use", "tool_use", "usage", "tool_result", "tool_result", "usage", "done"}, types(evs))
	cp, err := b.store.LatestCheckpoint(context.Background(), ans.RunID)
	require.NoError(t, err)
	require.Equal(t, 4, cp.Step, "checkpoints: the model call asking for tools, 2 tool results, the final answer with the turn")

	// A follow-up sees the history: the conversation grows by one turn.
	ans2, err := b.chat(t, ans.ConversationID, "thanks")
	require.NoError(t, err)
	require.Greater(t, ans2.Usage.InputTokens, ans.Usage.InputTokens/2)
	conv, err := b.store.GetConversation(context.Background(), "t1", ans.ConversationID)
	require.NoError(t, err)
	roles := []string{}
	for _, m := range conv.Messages {
		roles = append(roles, m.Role)
	}
	require.Equal(t, []string{"user", "assistant", "user", "assistant", "user", "assistant"}, roles)
}

func TestToolFailureIsAToolResultNotAFailedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.calls.fail = true
	ans, err := b.chat(t, "", "use lookup")
	require.NoError(t, err)
	require.Contains(t, ans.Text, "backend down")
	var res struct {
		IsError bool `json:"is_error"`
	}
	for _, ev := range b.events(t, ans.RunID) {
		if ev.Type == run.EventToolResult {
			require.NoError(t, json.Unmarshal(ev.Data, &res))
		}
	}
	require.True(t, res.IsError)
}

func TestMaxStepsFailsRunAndKeepsConversation(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	first, err := b.chat(t, "", "hi")
	require.NoError(t, err)
	b.agent.MaxSteps = 1
	_, err = b.chat(t, first.ConversationID, "use lookup")
	require.ErrorIs(t, err, run.ErrMaxSteps)
	conv, err := b.store.GetConversation(context.Background(), "t1", first.ConversationID)
	require.NoError(t, err)
	require.Len(t, conv.Messages, 2, "a failed run adds nothing to the conversation")
	require.Equal(t, int64(1), conv.Version)
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg    sim.Config
		status int
		typ    string
	}{
		"500":      {sim.Config{Rate500: 1}, 500, "upstream_error"},
		"529":      {sim.Config{Rate529: 1}, 529, "upstream_unavailable"},
		"429":      {sim.Config{Rate429: 1}, 429, "upstream_unavailable"},
		"cut":      {sim.Config{RateCut: 1}, 0, "upstream_error"},
		"api key":  {sim.Config{}, 401, "upstream_error"},
		"not json": {sim.Config{}, 0, ""},
	} {
		if name == "not json" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.cfg)
			if name == "api key" {
				b.loop.Model = anthropic.New(anthropic.Config{BaseURL: baseURL(t, b), APIKey: "wrong"})
			}
			c, err := b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "demo", Message: "hi"})
			require.NoError(t, err)
			_, err = c.Execute(context.Background(), nil)
			e, ok := llm.AsError(err)
			require.True(t, ok, "got %v", err)
			require.Equal(t, tc.status, e.Status)
			require.Equal(t, tc.typ, run.ClassifyError(err).Type)
			if tc.status == 429 {
				require.Equal(t, time.Second, e.RetryAfter)
			}
			_, err = b.store.GetConversation(context.Background(), "t1", c.ConversationID())
			require.ErrorIs(t, err, store.ErrNotFound, "a failed first turn creates no conversation")
			r, err := b.store.GetRun(context.Background(), "t1", c.RunID())
			require.NoError(t, err)
			require.Equal(t, store.RunFailed, r.Status)
			require.Contains(t, r.Error, tc.typ)
			evs := b.events(t, c.RunID())
			require.Equal(t, run.EventError, evs[len(evs)-1].Type)
		})
	}
}

// baseURL recovers the sim's URL by serving it again (the bundle keeps only
// the handler).
func baseURL(t *testing.T, b *testBundle) string {
	hs := httptest.NewServer(b.sim)
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{Latency: 2 * time.Second})
		b.agent.Timeout = 100 * time.Millisecond
		start := time.Now()
		_, err := b.chat(t, "", "hi")
		require.ErrorIs(t, err, run.ErrTimeout)
		require.Less(t, time.Since(start), 1500*time.Millisecond)
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{Latency: 2 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		c, err := b.svc.Prepare(ctx, run.ChatParams{Tenant: "t1", Agent: "demo", Message: "hi"})
		require.NoError(t, err)
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err = c.Execute(ctx, nil)
		require.ErrorIs(t, err, context.Canceled)
		r, err := b.store.GetRun(context.Background(), "t1", c.RunID())
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, r.Status)
	})
	t.Run("tool timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{})
		b.calls.wait = time.Second
		b.agent.ToolTimeout = 50 * time.Millisecond
		ans, err := b.chat(t, "", "use lookup")
		require.NoError(t, err)
		require.Contains(t, ans.Text, "timed out")
	})
}

func TestBusyAndForeignConversation(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	first, err := b.chat(t, "", "hi")
	require.NoError(t, err)

	c, err := b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "demo", ConversationID: first.ConversationID, Message: "one"})
	require.NoError(t, err)
	_, err = b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "demo", ConversationID: first.ConversationID, Message: "two"})
	require.ErrorIs(t, err, run.ErrConversationBusy)
	_, err = c.Execute(context.Background(), nil)
	require.NoError(t, err)

	_, err = b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t2", Agent: "demo", ConversationID: first.ConversationID, Message: "x"})
	require.ErrorIs(t, err, run.ErrConversationNotFound, "another tenant's conversation does not exist for it")
	_, err = b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "nope", Message: "x"})
	require.ErrorIs(t, err, run.ErrAgentNotFound)

	other := *b.agent
	other.Name = "other"
	b.svc.Agents["other"] = &other
	_, err = b.svc.Prepare(context.Background(), run.ChatParams{Tenant: "t1", Agent: "other", ConversationID: first.ConversationID, Message: "x"})
	require.ErrorIs(t, err, run.ErrConversationAgent)
}

// failingModel fails its nth call (1-based) and delegates the others.
type failingModel struct {
	llm.Model
	n, failAt int
	mu        sync.Mutex
}

func (f *failingModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if n == f.failAt {
		return llm.Response{}, errors.New("worker died")
	}
	return f.Model.Stream(ctx, req, onDelta)
}

func TestResumeFromCheckpointRepeatsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	input, _ := json.Marshal([]llm.Block{{Type: "text", Text: "use lookup"}})
	p := run.Params{RunID: "run_resume", ConversationID: "conv_x", Agent: &b.agent.Agent,
		Input: llm.Message{Role: "user", Content: input}}

	require.NoError(t, b.store.CreateRun(context.Background(), store.Run{ID: "run_resume", Tenant: "t1", Agent: "demo",
		ConversationID: "conv_x", Status: store.RunRunning, Input: json.RawMessage(`{}`), CreatedAt: time.Now()}))

	// First attempt: the model call after the tool results "crashes".
	b.loop.Model = &failingModel{Model: b.model, failAt: 2}
	_, err := b.loop.Execute(context.Background(), &p)
	require.Error(t, err)
	require.Equal(t, int64(1), b.calls.n.Load())
	requestsBefore := b.sim.Requests()

	// Second attempt on a "new worker": resumes from the checkpoint.
	b.loop.Model = b.model
	res, err := b.loop.Execute(context.Background(), &p)
	require.NoError(t, err)
	require.Equal(t, int64(1), b.calls.n.Load(), "the finished tool call is not repeated")
	require.Equal(t, requestsBefore+1, b.sim.Requests(), "only the unfinished model call is made")
	require.Equal(t, 2, res.Steps)
	require.Len(t, res.Messages, 4, "user, assistant tool_use, user tool_result, assistant")

	evs := b.events(t, "run_resume") // gap-free across both attempts
	require.Equal(t, []string{"start", "tool_use", "usage", "tool_result", "error", "resumed", "usage", "done"}, types(evs))
}

func TestTrimKeepsWholeTurns(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.agent.MaxMessages = 4
	first, err := b.chat(t, "", "use lookup") // 4 messages: user, tool_use, tool_result, answer
	require.NoError(t, err)
	_, err = b.chat(t, first.ConversationID, "hi again") // +2: the first turn must go whole
	require.NoError(t, err)
	conv, err := b.store.GetConversation(context.Background(), "t1", first.ConversationID)
	require.NoError(t, err)
	require.Len(t, conv.Messages, 2)
	require.Equal(t, "user", conv.Messages[0].Role)
	require.Contains(t, string(conv.Messages[0].Content), "hi again")
	require.Equal(t, int64(5), conv.Messages[0].Seq, "seqs are not reused")
}

func TestSweeperDeletesExpired(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.svc.ConversationTTL = time.Millisecond
	ans, err := b.chat(t, "", "hi")
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond)
	(&run.Sweeper{Store: b.store, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).SweepOnce(context.Background())
	_, err = b.store.GetConversation(context.Background(), "t1", ans.ConversationID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// flushCountingStore records the event-only SaveStep calls: the flushes of
// text deltas while a model call streams.
type flushCountingStore struct {
	run.StepStore
	mu      sync.Mutex
	flushes [][]string // event types of each flush
}

func (s *flushCountingStore) SaveStep(ctx context.Context, cp *store.Checkpoint, events []store.Event) error {
	if cp == nil {
		types := make([]string, len(events))
		for i, e := range events {
			types[i] = e.Type
		}
		s.mu.Lock()
		s.flushes = append(s.flushes, types)
		s.mu.Unlock()
	}
	return s.StepStore.SaveStep(ctx, cp, events)
}

// TestDeltaFlushes: text deltas are stored while a model call streams
// once the oldest unstored delta is FlushInterval old. A long wait for the
// first token with a short answer after it writes nothing on the token
// path (the start event waits for the checkpoint); a long stream is
// flushed as it goes.
func TestDeltaFlushes(t *testing.T) {
	t.Parallel()
	t.Run("SlowFirstTokenShortAnswer", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{Latency: 3 * run.FlushInterval, Words: 5})
		fs := &flushCountingStore{StepStore: b.store}
		b.loop.Store = fs
		ans, err := b.chat(t, "", "hello")
		require.NoError(t, err)
		require.NotEmpty(t, ans.Text)
		fs.mu.Lock()
		defer fs.mu.Unlock()
		require.Empty(t, fs.flushes, "no store write on the token path")
	})
	t.Run("LongStream", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{EventDelay: run.FlushInterval / 4, Words: 40})
		fs := &flushCountingStore{StepStore: b.store}
		b.loop.Store = fs
		_, err := b.chat(t, "", "hello")
		require.NoError(t, err)
		fs.mu.Lock()
		defer fs.mu.Unlock()
		require.NotEmpty(t, fs.flushes, "a stream of 40 deltas, %v apart, is stored as it goes", run.FlushInterval/4)
		require.Equal(t, run.EventStart, fs.flushes[0][0], "the first flush stores the events before the deltas too")
		for _, f := range fs.flushes {
			require.Contains(t, f, run.EventTextDelta)
		}
	})
}
