package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// The hosted Agent SDK program tests run the real
// @anthropic-ai/claude-agent-sdk (examples/agent-sdk-ts, pinned by its
// package-lock.json; the SDK starts the Claude Code binary of its platform
// package) as the agent sdk-demo of examples/agent-sdk-ts/agentd.yaml,
// against agentd's built-in simulator through agentd's gateway. They need
// node and the example's node_modules (npm ci), so they run only with
// AGENTD_TEST_NPM=1.

// sdkDemoDir is examples/agent-sdk-ts, with its node_modules installed.
func sdkDemoDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("AGENTD_TEST_NPM") == "" {
		t.Skip("set AGENTD_TEST_NPM=1 (and run npm ci in examples/agent-sdk-ts) to run the real Claude Agent SDK")
	}
	_, err := exec.LookPath("node")
	require.NoError(t, err, "AGENTD_TEST_NPM is set but node is not on PATH")
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "agent-sdk-ts"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "node_modules", "@anthropic-ai", "claude-agent-sdk", "package.json"))
	require.NoError(t, err, "run npm ci in %s first", dir)
	return dir
}

type sdkEnv struct {
	URL     string
	PidFile string
	Log     *syncLog
	// Stop stops agentd (also done at the end of the test).
	Stop func()
}

// startSDKDemo runs agentd with examples/agent-sdk-ts/agentd.yaml on
// backend (store and address replaced), plus the agents sdk-slow (sdk-demo
// with a 4s timeout) and sdk-cheap (max_cost_usd: a millionth of a dollar).
func startSDKDemo(t *testing.T, backend string, opts ...func(*config.Config)) *sdkEnv {
	t.Helper()
	demo := sdkDemoDir(t)
	dir := t.TempDir()
	storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(dir, "agentd.db"))
	if backend == "postgres" {
		storeURL = pgtest.Schema(t, pgtest.BaseURL(t), 10)
	}
	pidFile := filepath.Join(dir, "pid")
	cfg, err := config.Load(filepath.Join(demo, "agentd.yaml"), []string{
		"AGENTD_SERVER_ADDR=127.0.0.1:0", "AGENTD_STORE_URL=" + storeURL, "AGENTD_SERVER_DRAIN_DELAY=0s",
		"ANTHROPIC_API_KEY=", // the simulator, whatever the environment holds
	})
	require.NoError(t, err)
	require.Len(t, cfg.Agents, 1)
	require.Equal(t, "sdk-demo", cfg.Agents[0].Name)
	rt := cfg.Agents[0].Runtime
	require.NotNil(t, rt)
	require.Equal(t, demo, rt.Dir, "runtime.dir is relative to the configuration file")
	rt.Env["DEMO_PID_FILE"] = pidFile
	rt.KillGrace = 2 * time.Second
	slow := cfg.Agents[0]
	slowRT := *rt
	slow.Name, slow.Runtime = "sdk-slow", &slowRT
	slowRT.Timeout = 4 * time.Second
	cheap := cfg.Agents[0]
	cheap.Name, cheap.MaxCostUSD = "sdk-cheap", 0.000001
	cfg.Agents = append(cfg.Agents, slow, cheap)
	for _, o := range opts {
		o(cfg)
	}
	require.NoError(t, cfg.Validate())

	log := &syncLog{}
	a, err := New(t.Context(), cfg, Options{LogOutput: log, Version: "test"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case <-errc:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("agentd log:\n%s", log.String())
		}
	})
	waitReady(t, a)
	return &sdkEnv{URL: "http://" + a.Addr().String(), PidFile: pidFile, Log: log, Stop: stop}
}

type sseEvent struct {
	ID   int64
	Type string
	Data map[string]any
}

// runEvents reads the run's events until done or error.
func runEvents(t *testing.T, base, runID string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	return readSSE(t, bufio.NewScanner(resp.Body))
}

func readSSE(t *testing.T, sc *bufio.Scanner) []sseEvent {
	t.Helper()
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []sseEvent
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.ID, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
		case strings.HasPrefix(line, "event: "):
			cur.Type = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.Data))
		case line == "" && cur.Type != "":
			out = append(out, cur)
			if cur.Type == "done" || cur.Type == "error" {
				return out
			}
			cur = sseEvent{}
		}
	}
	return out
}

// waitEvent follows the run's events until one of type typ.
func waitEvent(t *testing.T, base, runID, typ string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "event: "+typ {
			return
		}
	}
	t.Fatalf("no %s event in run %s", typ, runID)
}

func eventsOf(evs []sseEvent, typ string) []sseEvent {
	var out []sseEvent
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// runRow is the run object of GET /v1/runs/{id}, as the tests read it.
type runRow struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Steps  int    `json:"steps"`
	Turn   int64  `json:"turn"`
	Usage  struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
	CostUSD float64 `json:"cost_usd"`
	Output  []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"output"`
	ConversationID string `json:"conversation_id"`
}

func submitRun(t *testing.T, base, agent, msg string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"agent": agent, "message": msg})
	a := call(t, "POST", base+"/v1/runs", string(body))
	require.Equal(t, 202, a.status, a.body)
	var r runRow
	require.NoError(t, json.Unmarshal([]byte(a.body), &r))
	return r.ID
}

func waitRun(t *testing.T, base, id string, d time.Duration) runRow {
	t.Helper()
	var r runRow
	require.Eventually(t, func() bool {
		a := call(t, "GET", base+"/v1/runs/"+id, "")
		require.Equal(t, 200, a.status, a.body)
		require.NoError(t, json.Unmarshal([]byte(a.body), &r))
		return r.Status != "queued" && r.Status != "running"
	}, d, 100*time.Millisecond)
	return r
}

// programGroup is the program's process group: every process in the
// group of the pid in DEMO_PID_FILE (its supervisor, node and the Claude
// Code binary node started).
func programGroup(t *testing.T, pidFile string) []int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, time.Minute, 50*time.Millisecond)
	pgid, err := syscall.Getpgid(pid)
	require.NoError(t, err)
	require.NotEqual(t, syscall.Getpgrp(), pgid, "agentd starts the program in a process group of its own")
	var group []int
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(p); err == nil && g == pgid {
			group = append(group, p)
		}
	}
	return group
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// TestAgentSDKChat: a chat with the real Agent SDK program is answered,
// with the program's tool round trip as events, its model calls' usage
// and cost on the run (priced by agentd, through the gateway, per call),
// the answer as the conversation's assistant turn; the same through SSE
// and as a queued run. SQLite, and PostgreSQL where configured.
func TestAgentSDKChat(t *testing.T) {
	sdkDemoDir(t)
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		e := startSDKDemo(t, backend)

		// Sync chat: a tool round trip.
		a := call(t, "POST", e.URL+"/v1/chat", `{"agent":"sdk-demo","message":"What is the weather in Paris? Use mcp__demo__weather."}`)
		require.Equal(t, 200, a.status, a.body)
		var ans struct {
			RunID          string  `json:"run_id"`
			ConversationID string  `json:"conversation_id"`
			Text           string  `json:"text"`
			Steps          int     `json:"steps"`
			CostUSD        float64 `json:"cost_usd"`
			Usage          struct {
				InputTokens  int64 `json:"input_tokens"`
				OutputTokens int64 `json:"output_tokens"`
			} `json:"usage"`
		}
		require.NoError(t, json.Unmarshal([]byte(a.body), &ans))
		// The simulator quotes the tool's result: it went model → SDK
		// → the program's tool → model.
		assert.Contains(t, ans.Text, "sunny and 21C in")
		assert.Equal(t, 2, ans.Steps, "two model calls: the tool_use and the answer")
		assert.Positive(t, ans.Usage.InputTokens)
		assert.Positive(t, ans.CostUSD)

		evs := runEvents(t, e.URL, ans.RunID)
		require.NotEmpty(t, evs)
		assert.Equal(t, "start", evs[0].Type)
		assert.Equal(t, "done", evs[len(evs)-1].Type)
		for i := range evs {
			assert.Equal(t, int64(i+1), evs[i].ID, "events are numbered 1, 2, ...")
		}
		uses, results := eventsOf(evs, "tool_use"), eventsOf(evs, "tool_result")
		require.Len(t, uses, 1)
		require.Len(t, results, 1)
		assert.Equal(t, "mcp__demo__weather", uses[0].Data["name"])
		assert.Equal(t, uses[0].Data["id"], results[0].Data["tool_use_id"])
		assert.Equal(t, "mcp__demo__weather", results[0].Data["name"])
		assert.Contains(t, results[0].Data["content"], "sunny and 21C in")
		usage := eventsOf(evs, "usage")
		require.Len(t, usage, 2)
		var sum float64
		for i, u := range usage {
			assert.Equal(t, float64(i+1), u.Data["step"])
			assert.Equal(t, "claude-sonnet-4-5", u.Data["model"])
			sum += u.Data["cost_usd"].(float64)
		}
		assert.InDelta(t, ans.CostUSD, sum, 1e-9, "the run's cost is its calls' cost")
		assert.NotEmpty(t, eventsOf(evs, "text_delta"))

		// The console's run page shows the program's events.
		page := call(t, "GET", e.URL+"/console/runs/"+ans.RunID, "")
		require.Equal(t, 200, page.status, page.body)
		assert.Contains(t, page.body, "mcp__demo__weather")
		assert.Contains(t, page.body, "sunny and 21C in")

		r := waitRun(t, e.URL, ans.RunID, 10*time.Second)
		assert.Equal(t, "succeeded", r.Status)
		assert.InDelta(t, ans.CostUSD, r.CostUSD, 1e-9)
		assert.Equal(t, 2, r.Steps)
		conv := call(t, "GET", e.URL+"/v1/conversations/"+ans.ConversationID, "")
		require.Equal(t, 200, conv.status, conv.body)
		assert.Contains(t, conv.body, `"role":"assistant"`)
		assert.Contains(t, conv.body, "sunny and 21C in")

		// Usage rows: one per gateway call, attributed to the run's
		// agent (not to "gateway").
		require.Eventually(t, func() bool {
			var u struct {
				Rows []struct {
					Group    string  `json:"group"`
					Requests int     `json:"requests"`
					CostUSD  float64 `json:"cost_usd"`
				} `json:"rows"`
			}
			a := call(t, "GET", e.URL+"/v1/usage?group_by=agent", "")
			require.Equal(t, 200, a.status, a.body)
			require.NoError(t, json.Unmarshal([]byte(a.body), &u))
			for _, r := range u.Rows {
				require.NotEqual(t, "gateway", r.Group, "the program's calls are its run's")
				if r.Group == "sdk-demo" && r.Requests == 2 {
					assert.InDelta(t, ans.CostUSD, r.CostUSD, 1e-9)
					return true
				}
			}
			return false
		}, 10*time.Second, 50*time.Millisecond)

		// The next turn, streamed: the program gets the history.
		body := fmt.Sprintf(`{"agent":"sdk-demo","conversation_id":%q,"message":"hello again","stream":true}`, ans.ConversationID)
		req, err := http.NewRequestWithContext(t.Context(), "POST", e.URL+"/v1/chat", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Content-Type"), "text/event-stream")
		sse := readSSE(t, bufio.NewScanner(resp.Body))
		require.NotEmpty(t, sse)
		done := sse[len(sse)-1]
		require.Equal(t, "done", done.Type, "%+v", sse)
		assert.NotEmpty(t, done.Data["text"])
		assert.Equal(t, ans.ConversationID, done.Data["conversation_id"])
		assert.NotEmpty(t, eventsOf(sse, "text_delta"))
		assert.Len(t, eventsOf(sse, "usage"), 1)
		conv = call(t, "GET", e.URL+"/v1/conversations/"+ans.ConversationID, "")
		require.Equal(t, 200, conv.status, conv.body)
		assert.Equal(t, 2, strings.Count(conv.body, `"role":"assistant"`), "two turns: %s", conv.body)

		// A queued run, on a worker.
		id := submitRun(t, e.URL, "sdk-demo", "Tell me about the weather in Rome with mcp__demo__weather")
		r = waitRun(t, e.URL, id, time.Minute)
		require.Equal(t, "succeeded", r.Status, r.Error)
		require.NotEmpty(t, r.Output)
		assert.Contains(t, r.Output[0].Text, "sunny and 21C in")
		assert.Positive(t, r.CostUSD)
	})
}

// TestAgentSDKLifecycle: cancel kills the program's process group; a
// program that crashes fails its run with its stderr's tail in the error;
// a run over its timeout is stopped and its processes killed.
func TestAgentSDKLifecycle(t *testing.T) {
	e := startSDKDemo(t, "sqlite")

	t.Run("cancel", func(t *testing.T) {
		_ = os.Remove(e.PidFile)
		id := submitRun(t, e.URL, "sdk-demo", "Please run mcp__demo__slow now")
		group := programGroup(t, e.PidFile)
		// Wait until the program is in its slow tool: the model asked.
		waitEvent(t, e.URL, id, "tool_use")
		group = append(group, programGroupNow(e.PidFile)...)
		require.Greater(t, len(group), 2, "the supervisor, node and the Claude Code process it started")
		a := call(t, "POST", e.URL+"/v1/runs/"+id+"/cancel", "")
		require.Less(t, a.status, 300, a.body)
		r := waitRun(t, e.URL, id, 30*time.Second)
		assert.Equal(t, "canceled", r.Status)
		require.Eventually(t, func() bool {
			for _, p := range group {
				if alive(p) {
					return false
				}
			}
			return true
		}, 10*time.Second, 50*time.Millisecond, "every process of the program is gone: %v", group)
	})

	t.Run("crash", func(t *testing.T) {
		id := submitRun(t, e.URL, "sdk-demo", "/crash")
		r := waitRun(t, e.URL, id, time.Minute)
		assert.Equal(t, "failed", r.Status)
		assert.Contains(t, r.Error, "program_failed")
		assert.Contains(t, r.Error, "exited with status 3")
		assert.Contains(t, r.Error, "the program crashes on purpose (run "+id+")", "its stderr's tail")
		evs := runEvents(t, e.URL, id)
		last := evs[len(evs)-1]
		assert.Equal(t, "error", last.Type)
		assert.Equal(t, "program_failed", last.Data["type"])

		// The same through a sync chat: a clear error.
		a := call(t, "POST", e.URL+"/v1/chat", `{"agent":"sdk-demo","message":"/crash"}`)
		assert.Equal(t, http.StatusBadGateway, a.status, a.body)
		assert.Contains(t, a.body, `"type":"program_failed"`)
		assert.Contains(t, a.body, "crashes on purpose")
	})

	t.Run("budget", func(t *testing.T) {
		// The run's max_cost_usd holds for the program's calls: the
		// gateway refuses the first one, and the run ends at once with
		// budget_exceeded instead of the program retrying.
		start := time.Now()
		a := call(t, "POST", e.URL+"/v1/chat", `{"agent":"sdk-cheap","message":"hello"}`)
		assert.Equal(t, http.StatusPaymentRequired, a.status, a.body)
		assert.Contains(t, a.body, "budget_exceeded")
		assert.Less(t, time.Since(start), 20*time.Second)
		var body struct {
			Error struct {
				RunID string `json:"run_id"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(a.body), &body))
		require.NotEmpty(t, body.Error.RunID)
		r := waitRun(t, e.URL, body.Error.RunID, 10*time.Second)
		assert.Equal(t, "failed", r.Status)
		assert.Contains(t, r.Error, "budget_exceeded")
	})

	t.Run("timeout", func(t *testing.T) {
		_ = os.Remove(e.PidFile)
		start := time.Now()
		id := submitRun(t, e.URL, "sdk-slow", "Please run mcp__demo__slow now")
		group := programGroup(t, e.PidFile)
		r := waitRun(t, e.URL, id, time.Minute)
		assert.Equal(t, "failed", r.Status)
		assert.Contains(t, r.Error, "timeout")
		assert.Less(t, time.Since(start), 30*time.Second)
		require.Eventually(t, func() bool {
			for _, p := range append(group, programGroupNow(e.PidFile)...) {
				if alive(p) {
					return false
				}
			}
			return true
		}, 10*time.Second, 50*time.Millisecond)
	})
}

// programGroupNow lists the live members of the program's process group
// (none if the pid file is missing).
func programGroupNow(pidFile string) []int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	pgid, err := syscall.Getpgid(pid)
	if err != nil {
		return nil
	}
	var group []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(p); err == nil && g == pgid && alive(p) {
			group = append(group, p)
		}
	}
	return group
}
