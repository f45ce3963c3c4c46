package run_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/store"
)

// These tests run small shell programs that speak the stream-JSON
// contract (docs/agent-sdk.md) without the Agent SDK: what agentd gives a
// program and how it reads what the program prints. The real SDK runs in
// internal/app's TestAgentSDK* (AGENTD_TEST_NPM=1).

func programAgent(b *testBundle, script string, env map[string]string) *run.Agent {
	return &run.Agent{Name: "prog", Timeout: 20 * time.Second,
		Runtime: run.NewRuntime([]string{"sh", "-c", script}, "", env, 2, time.Second, 0)}
}

func programParams(t *testing.T, b *testBundle, id string, a *run.Agent, msg string) *run.Params {
	t.Helper()
	b.loop.Programs = &run.ProgramHost{Gateway: http.NotFoundHandler(), Log: b.loop.Log}
	t.Cleanup(func() { _ = b.loop.Programs.Close() })
	input, _ := json.Marshal([]llm.Block{{Type: "text", Text: msg}})
	require.NoError(t, b.store.CreateRun(context.Background(), store.Run{ID: id, Tenant: "t1", Agent: a.Name,
		ConversationID: "conv_" + id, Status: store.RunRunning, Input: json.RawMessage(`{}`), CreatedAt: time.Now()}))
	return &run.Params{Tenant: "t1", RunID: id, ConversationID: "conv_" + id, Agent: a, Attempt: 1,
		Input: llm.Message{Role: "user", Content: input},
		History: []llm.Message{{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"earlier"}]`)},
			{Role: "assistant", Content: json.RawMessage(`[{"type":"text","text":"before"}]`)}}}
}

const resultLine = `{"type":"result","subtype":"success","is_error":false,"result":"all done","stop_reason":"end_turn"}`

// TestProgramEnvironmentAndInput: the program's environment is an
// allowlist plus what agentd sets (never agentd's own secrets), its stdin
// holds the message, history and ids, and its stream-JSON becomes events.
func TestProgramEnvironmentAndInput(t *testing.T) {
	t.Setenv("AGENTD_TEST_OWN_SECRET", "agentd-own-secret-value")
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-agentds-own-key")
	b := setup(t, sim.Config{})
	dir := t.TempDir()
	script := `env > "$OUT/env"; cat > "$OUT/stdin"
echo '{"type":"system","subtype":"init","session_id":"sess-1"}'
echo 'a stray console.log line'
echo '{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"tu_1","name":"lookup","input":{"key":"k"}}]}}'
echo '{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"tu_1","content":[{"type":"text","text":"v1"}]}]}}'
echo '{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"all done"}]}}'
echo '` + resultLine + `'`
	a := programAgent(b, script, map[string]string{"OUT": dir, "APP_MODE": "test"})
	p := programParams(t, b, "run_env", a, "hello program")
	res, err := b.loop.Execute(context.Background(), p)
	require.NoError(t, err)
	require.Len(t, res.Output, 1)
	assert.Equal(t, "all done", res.Output[0].Text)
	require.Len(t, res.Messages, 2, "the user message and the result as the assistant turn")

	raw, err := os.ReadFile(filepath.Join(dir, "env"))
	require.NoError(t, err)
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	assert.NotContains(t, string(raw), "agentd-own-secret-value")
	assert.NotContains(t, string(raw), "sk-ant-agentds-own-key")
	assert.Equal(t, "run_env", env["AGENTD_RUN_ID"])
	assert.Equal(t, "conv_run_env", env["AGENTD_CONVERSATION_ID"])
	assert.Equal(t, "1", env["AGENTD_ATTEMPT"])
	assert.Equal(t, "test", env["APP_MODE"])
	assert.True(t, strings.HasPrefix(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:"), env["ANTHROPIC_BASE_URL"])
	assert.True(t, strings.HasPrefix(env["ANTHROPIC_API_KEY"], "agentd-run-"), "a run-scoped key")
	assert.Equal(t, os.Getenv("PATH"), env["PATH"])
	assert.Equal(t, "1", env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"])
	for k := range env {
		ok := strings.HasPrefix(k, "AGENTD_") || strings.HasPrefix(k, "ANTHROPIC_") || strings.HasPrefix(k, "CLAUDE_CODE_") ||
			strings.HasPrefix(k, "DISABLE_") || k == "OUT" || k == "APP_MODE" ||
			k == "PATH" || k == "HOME" || k == "LANG" || k == "LC_ALL" || k == "TMPDIR" || k == "TZ" ||
			k == "PWD" || k == "SHLVL" || k == "_" // set by sh itself
		assert.True(t, ok, "unexpected variable %s in the program's environment", k)
	}

	var in run.ProgramInput
	raw, err = os.ReadFile(filepath.Join(dir, "stdin"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &in))
	assert.Equal(t, "hello program", in.Message)
	assert.Equal(t, "run_env", in.RunID)
	assert.Len(t, in.History, 2)
	assert.Empty(t, in.ResumeSessionID)

	evs := b.events(t, "run_env")
	assert.Equal(t, []string{"start", "tool_use", "tool_result", "done"}, types(evs))
	var texts []string
	for _, ev := range evs {
		switch ev.Type {
		case run.EventTextDelta:
			var d run.TextDeltaEvent
			require.NoError(t, json.Unmarshal(ev.Data, &d))
			texts = append(texts, d.Text)
		case run.EventToolResult:
			var r run.ToolResultEvent
			require.NoError(t, json.Unmarshal(ev.Data, &r))
			assert.Equal(t, "lookup", r.Name)
			assert.Equal(t, "v1", r.Content)
		}
	}
	assert.Equal(t, []string{"Let me look.", "all done"}, texts)
}

// TestProgramRetryGetsSessionID: a run whose worker stops mid-program (a
// suspended run) is started again from the beginning, at least once more,
// and the program gets the SDK session id the first attempt reported.
func TestProgramRetryGetsSessionID(t *testing.T) {
	b := setup(t, sim.Config{})
	dir := t.TempDir()
	script := `if [ -n "$AGENTD_RESUME_SESSION_ID" ]; then
  echo "$AGENTD_RESUME_SESSION_ID" > "$OUT/resumed"; cat > "$OUT/stdin"
  echo '{"type":"system","subtype":"init","session_id":"'"$AGENTD_RESUME_SESSION_ID"'"}'
  echo '` + resultLine + `'
  exit 0
fi
echo '{"type":"system","subtype":"init","session_id":"sess-42"}'
exec sleep 60`
	a := programAgent(b, script, map[string]string{"OUT": dir})
	p := programParams(t, b, "run_retry", a, "go")
	p.Resumable = true

	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { _, err := b.loop.Execute(ctx, p); done <- err }()
	require.Eventually(t, func() bool {
		cp, err := b.store.LatestCheckpoint(context.Background(), "run_retry")
		return err == nil && strings.Contains(string(cp.State), "sess-42")
	}, 10*time.Second, 20*time.Millisecond, "the session id is checkpointed as soon as the program reports it")
	cancel(run.ErrSuspended) // the worker drains or dies
	select {
	case err := <-done:
		require.ErrorIs(t, err, run.ErrSuspended)
	case <-time.After(10 * time.Second):
		t.Fatal("the program was not stopped")
	}

	p.Attempt = 2
	res, err := b.loop.Execute(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, "all done", res.Output[0].Text)
	got, err := os.ReadFile(filepath.Join(dir, "resumed"))
	require.NoError(t, err)
	assert.Equal(t, "sess-42\n", string(got))
	var in run.ProgramInput
	raw, err := os.ReadFile(filepath.Join(dir, "stdin"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &in))
	assert.Equal(t, "sess-42", in.ResumeSessionID)
	assert.Equal(t, 2, in.Attempt)
	assert.Equal(t, "go", in.Message, "the input comes from the checkpoint")
	evs := b.events(t, "run_retry")
	assert.Equal(t, []string{"start", "resumed", "done"}, types(evs))
}

// TestProgramStoppedAfterResult: a program that does not exit after its
// result is stopped after kill_grace, and its result stands.
func TestProgramStoppedAfterResult(t *testing.T) {
	b := setup(t, sim.Config{})
	dir := t.TempDir()
	script := `echo '` + resultLine + `'; trap '' TERM; exec sleep 60`
	a := programAgent(b, script, map[string]string{"OUT": dir})
	p := programParams(t, b, "run_linger", a, "x")
	start := time.Now()
	res, err := b.loop.Execute(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, "all done", res.Output[0].Text)
	assert.Less(t, time.Since(start), 10*time.Second, "kill_grace (1s) for the exit, then SIGTERM, then SIGKILL")
}

// TestProgramFailures: exit status, a missing result and an error result
// fail the run with program_failed and the stderr tail.
func TestProgramFailures(t *testing.T) {
	b := setup(t, sim.Config{})
	for name, tc := range map[string]struct{ script, want string }{
		"exit":      {`echo "boom: sk-ant-api03-abcdefghijklmnop" >&2; exit 7`, "sh exited with status 7; stderr: boom: [redacted]"},
		"no result": {`echo '{"type":"system","subtype":"init","session_id":"s"}'; echo "no result here" >&2`, "exited without a result message; stderr: no result here"},
		"error result": {`echo '{"type":"result","subtype":"error_max_turns","is_error":true,"errors":["too many turns"]}'`,
			"its result is an error (error_max_turns): too many turns"},
	} {
		t.Run(name, func(t *testing.T) {
			a := programAgent(b, tc.script, nil)
			id := "run_fail_" + strings.ReplaceAll(name, " ", "_")
			p := programParams(t, b, id, a, "x")
			b.loop.Programs.Scrub = func(s string) string { return strings.ReplaceAll(s, "sk-ant-api03-abcdefghijklmnop", "[redacted]") }
			_, err := b.loop.Execute(context.Background(), p)
			require.ErrorIs(t, err, run.ErrProgramFailed)
			assert.Contains(t, err.Error(), tc.want)
			info := run.ClassifyError(err)
			assert.Equal(t, "program_failed", info.Type)
			evs := b.events(t, id)
			assert.Equal(t, run.EventError, evs[len(evs)-1].Type)
		})
	}
	// A program that cannot start.
	a := &run.Agent{Name: "prog", Timeout: 5 * time.Second,
		Runtime: run.NewRuntime([]string{"/nonexistent/program"}, "", nil, 1, time.Second, 0)}
	p := programParams(t, b, "run_nostart", a, "x")
	_, err := b.loop.Execute(context.Background(), p)
	require.ErrorIs(t, err, run.ErrProgramFailed)
	assert.Contains(t, err.Error(), "no such file or directory")
}

// TestSupervisorKillsGroupWhenAgentdDies: the supervisor (this test
// binary, see TestMain) kills the program and what it started when its
// parent, agentd, dies without stopping them. Here the parent is a shell
// killed with SIGKILL.
func TestSupervisorKillsGroupWhenAgentdDies(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	// The program starts a grandchild, as the Agent SDK starts Claude
	// Code, and both record their pids.
	program := `sleep 60 & echo $! >> "$PIDS"; echo $$ >> "$PIDS"; wait`
	parent := exec.Command("sh", "-c", `"$EXE" __agentd_program_supervisor 0 run_x -- sh -c "$PROGRAM" & echo $! > "$SUP"; wait`)
	parent.Env = append(os.Environ(), "EXE="+exe, "PROGRAM="+program, "PIDS="+pids, "SUP="+filepath.Join(dir, "sup"))
	require.NoError(t, parent.Start())
	var all []int
	require.Eventually(t, func() bool {
		all = readPids(filepath.Join(dir, "sup"), pids)
		return len(all) == 3
	}, 10*time.Second, 20*time.Millisecond)
	for _, p := range all {
		require.True(t, processAlive(p), "pid %d runs", p)
	}
	require.NoError(t, parent.Process.Kill()) // agentd dies
	_, _ = parent.Process.Wait()
	require.Eventually(t, func() bool {
		for _, p := range all {
			if processAlive(p) {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "supervisor, program and grandchild are gone: %v", all)
}

func readPids(files ...string) []int {
	var out []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(l); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// processAlive: pid runs and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// TestProgramMemoryLimit: runtime.memory_max reaches the program, as a
// cgroup v2 memory.max where agentd may create cgroups, else RLIMIT_AS.
func TestProgramMemoryLimit(t *testing.T) {
	b := setup(t, sim.Config{})
	dir := t.TempDir()
	const limit = 3 << 30
	script := `sleep 0.3; cat /proc/self/limits > "$OUT/limits"; cat /proc/self/cgroup > "$OUT/cgroup"
echo '` + resultLine + `'`
	a := &run.Agent{Name: "prog", Timeout: 20 * time.Second,
		Runtime: run.NewRuntime([]string{"sh", "-c", script}, "", map[string]string{"OUT": dir}, 1, time.Second, limit)}
	p := programParams(t, b, "run_mem", a, "x")
	_, err := b.loop.Execute(context.Background(), p)
	require.NoError(t, err)
	limits, err := os.ReadFile(filepath.Join(dir, "limits"))
	require.NoError(t, err)
	cgroup, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	require.NoError(t, err)
	if strings.Contains(string(cgroup), "agentd-run-run_mem-") {
		return // cgroup v2: memory.max, checked by the kernel
	}
	var line string
	for _, l := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(l, "Max address space") {
			line = l
		}
	}
	assert.Equal(t, []string{"Max", "address", "space", "3221225472", "3221225472", "bytes"}, strings.Fields(line))
}
