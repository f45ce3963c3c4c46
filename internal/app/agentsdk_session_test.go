package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// recordedSim is agentd's simulator behind a server that keeps the body of
// every Messages API request it gets.
type recordedSim struct {
	URL string
	mu  sync.Mutex
	req [][]byte
}

func startRecordedSim(t *testing.T) *recordedSim {
	t.Helper()
	rs := &recordedSim{}
	h := sim.New(sim.Config{APIKey: "sim-key"}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if r.URL.Path == "/v1/messages" {
			rs.mu.Lock()
			rs.req = append(rs.req, body)
			rs.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rs.URL = srv.URL
	return rs
}

func (rs *recordedSim) since(n int) [][]byte {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([][]byte(nil), rs.req[n:]...)
}

func (rs *recordedSim) count() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.req)
}

// jsonlFiles lists Claude Code's local session transcripts under dir
// (projects/<project>/<session>.jsonl of a config dir; its MCP logs in
// ~/.cache are not transcripts).
func jsonlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".jsonl") && strings.Contains(p, string(filepath.Separator)+"projects"+string(filepath.Separator)) {
			out = append(out, p)
		}
		return nil
	}))
	return out
}

// TestAgentSDKSessionStore: with examples/agent-sdk-ts's AgentdSessionStore,
// the real Agent SDK mirrors the session to agentd's store and the next turn
// of the conversation, a fresh program with no local transcript (an empty
// HOME and TMPDIR, its CLAUDE_CONFIG_DIR removed when the first turn's
// program exited), resumes it from agentd: the second turn's model request
// holds the first turn's messages, tool round trip included (which the
// history on stdin does not carry), and no "conversation so far" system
// prompt. SQLite, and PostgreSQL where configured.
func TestAgentSDKSessionStore(t *testing.T) {
	sdkDemoDir(t)
	pgtest.ForEachBackend(t, testAgentSDKSessionStore)
}

func testAgentSDKSessionStore(t *testing.T, backend string) {
	rs := startRecordedSim(t)
	home, tmp := t.TempDir(), t.TempDir()
	e := startSDKDemo(t, backend, func(cfg *config.Config) {
		cfg.Providers.Anthropic.BaseURL = rs.URL
		cfg.Providers.Anthropic.APIKey = "sim-key"
		for i := range cfg.Agents {
			if rt := cfg.Agents[i].Runtime; rt != nil {
				rt.Env["HOME"], rt.Env["TMPDIR"] = home, tmp
			}
		}
	})

	const secret = "PAPAYA-7731"
	a := call(t, "POST", e.URL+"/v1/chat", `{"agent":"sdk-demo","message":"The code word is `+secret+`. What is the weather in Paris? Use mcp__demo__weather."}`)
	require.Equal(t, 200, a.status, a.body)
	var ans struct {
		RunID          string `json:"run_id"`
		ConversationID string `json:"conversation_id"`
		Text           string `json:"text"`
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &ans))
	require.Contains(t, ans.Text, "sunny and 21C in")
	// The first turn's program is gone and left no local transcript.
	require.Eventually(t, func() bool { return len(jsonlFiles(t, tmp)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the program's CLAUDE_CONFIG_DIR is removed: %v", jsonlFiles(t, tmp))
	require.Empty(t, jsonlFiles(t, home))
	require.NotContains(t, e.Log.String(), "mirror_error")

	before := rs.count()
	a = call(t, "POST", e.URL+"/v1/chat", fmt.Sprintf(`{"agent":"sdk-demo","conversation_id":%q,"message":"What was the code word?"}`, ans.ConversationID))
	require.Equal(t, 200, a.status, a.body)
	reqs := rs.since(before)
	require.NotEmpty(t, reqs)
	var main struct {
		System   json.RawMessage `json:"system"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	// The turn's model request (the one with the new question last).
	found := false
	for _, b := range reqs {
		if !bytes.Contains(b, []byte("What was the code word?")) {
			continue
		}
		require.NoError(t, json.Unmarshal(b, &main))
		found = true
	}
	require.True(t, found, "no request of the second turn carries its message")
	msgs, _ := json.Marshal(main.Messages)
	assert.Contains(t, string(msgs), secret, "the first turn's user message is in the messages")
	assert.Contains(t, string(msgs), `tool_use`, "the first turn's tool call is in the messages")
	assert.Contains(t, string(msgs), `sunny and 21C in`, "the first turn's tool result is in the messages")
	assert.Greater(t, len(main.Messages), 4, "turn 1 (user, tool_use, tool_result, answer) and the new question")
	assert.NotContains(t, string(main.System), "The conversation so far", "resumed, not the history in the system prompt")
	assert.NotContains(t, string(main.System), secret)

	// Without the store's copy there is nothing to resume: the same
	// conversation's history is the stdin fallback (checked by
	// TestAgentSDKChat); here the conversation's session is in agentd.
	assert.Empty(t, jsonlFiles(t, home))
}

// TestAgentSDKSessionStoreRetry: a queued run whose agentd stops while its
// program waits in a tool is taken over by another agentd on the same
// database; the new attempt's program (no local transcript) resumes the
// first attempt's session from agentd's store: its model request holds the
// first attempt's tool call. SQLite.
func TestAgentSDKSessionStoreRetry(t *testing.T) {
	sdkDemoDir(t)
	rs := startRecordedSim(t)
	home, tmp := t.TempDir(), t.TempDir()
	storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "shared.db"))
	opt := func(cfg *config.Config) {
		cfg.Store.URL = storeURL
		cfg.Providers.Anthropic.BaseURL = rs.URL
		cfg.Providers.Anthropic.APIKey = "sim-key"
		cfg.Worker.LeaseTTL, cfg.Worker.ReclaimInterval = 3*time.Second, 500*time.Millisecond
		cfg.Server.DrainTimeout = time.Second
		for i := range cfg.Agents {
			if rt := cfg.Agents[i].Runtime; rt != nil {
				rt.Env["HOME"], rt.Env["TMPDIR"] = home, tmp
			}
		}
	}
	a := startSDKDemo(t, "sqlite", opt)
	id := submitRun(t, a.URL, "sdk-demo", "Please run mcp__demo__slow now")
	toolUseID := firstToolUseID(t, a.URL, id)
	require.NotEmpty(t, toolUseID)
	a.Stop()
	assert.Empty(t, jsonlFiles(t, tmp), "the stopped program removed its local transcript")
	assert.Empty(t, jsonlFiles(t, home))

	before := rs.count()
	b := startSDKDemo(t, "sqlite", opt)
	require.Eventually(t, func() bool {
		for _, req := range rs.since(before) {
			if bytes.Contains(req, []byte(toolUseID)) {
				return true
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "the retry's model request holds the first attempt's tool call %s", toolUseID)
	c := call(t, "POST", b.URL+"/v1/runs/"+id+"/cancel", "")
	require.Less(t, c.status, 300, c.body)
	r := waitRun(t, b.URL, id, 30*time.Second)
	assert.Equal(t, "canceled", r.Status)
	assert.NotEmpty(t, eventsOf(runEvents(t, b.URL, id), "resumed"), "a second attempt")
}

// firstToolUseID follows the run's events until its first tool_use and
// returns its id.
func firstToolUseID(t *testing.T, base, runID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	typ := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			typ = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok && typ == "tool_use" {
			var d struct {
				ID string `json:"id"`
			}
			require.NoError(t, json.Unmarshal([]byte(v), &d))
			return d.ID
		}
	}
	t.Fatalf("no tool_use event in run %s", runID)
	return ""
}
