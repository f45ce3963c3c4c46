package main

// Helpers of the cluster tests (cluster_test.go): the agentd binary, child
// processes, the external simulator, HTTP polling and the sim ledger.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/postgres/pgtest"
)

// clusterHTTP is the client of the cluster tests: no shared state with
// http.DefaultClient, bounded requests (SSE followers use their own).
var clusterHTTP = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64},
}

// buildAgentd builds ./cmd/agentd into dir. With AGENTD_CLUSTER_RACE=1 the
// binary has the race detector (slower, but checks the real processes).
func buildAgentd(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "agentd")
	args := []string{"build", "-o", bin}
	if os.Getenv("AGENTD_CLUSTER_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/agentd")
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("..", "..") // the test runs in cmd/agentd
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// clusterFreeAddr returns a 127.0.0.1 address whose port was free a moment
// ago.
func clusterFreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// proc is a child process (agentd serve or agentd sim).
type proc struct {
	name    string
	base    string // http://addr
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process exited
	err     error         // Wait's result, after done
	logFile *os.File
}

// startProc starts bin with args and extra environment, stdout and stderr
// to dir/name.log. The process is killed (SIGKILL) at cleanup.
func startProc(t testing.TB, dir, name, addr, bin string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	fmt.Fprintf(f, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// A clean environment: no AGENTD_* or ANTHROPIC_* of the developer.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &proc{name: name, base: "http://" + addr, logPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: f}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("--- tail of %s:\n%s", logPath, tailFile(logPath, 40))
		}
	})
	return p
}

// kill sends SIGKILL (kill -9) and waits for the exit.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitHTTP polls p.base+path until it answers 200, failing the test if the
// process exits first or the deadline passes.
func (p *proc) waitHTTP(t testing.TB, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := clusterHTTP.Get(p.base + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.exited() {
			t.Fatalf("%s exited before %s answered: %v\n%s", p.name, path, p.err, tailFile(p.logPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not ready after %s\n%s", p.name, path, within, tailFile(p.logPath, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startSim starts `agentd sim` with the ledger on and waits until it serves.
func startSim(t testing.TB, dir, bin string, extra ...string) *proc {
	t.Helper()
	addr := clusterFreeAddr(t)
	args := append([]string{"sim", "-addr", addr, "-api-key", "k", "-ledger", "-seed", "1"}, extra...)
	p := startProc(t, dir, "sim", addr, bin, nil, args...)
	p.waitHTTP(t, "/sim/ledger", 30*time.Second)
	return p
}

// clusterConfig is the configuration shared by the processes of a test;
// server.addr comes from AGENTD_SERVER_ADDR.
func clusterConfig(t *testing.T, dir, storeURL, simBase string) string {
	t.Helper()
	cfg := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_timeout: 5s
store:
  url: %q
worker:
  concurrency: 50
  lease_ttl: 3s
  reclaim_interval: 500ms
  poll_interval: 100ms
providers:
  anthropic:
    base_url: %s
    api_key: k
    simulate: never
    request_timeout: 30s
auth:
  mode: none
log:
  level: info
  format: json
agents:
  - name: demo
    model: claude-sonnet-4-5
    system: Use the clock, calculator and word_count tools when they help.
    tools: [clock, calculator, word_count]
    max_steps: 8
    timeout: 2m
`, storeURL, simBase)
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// startServeProc starts `agentd serve -role role` on a free port and waits
// for /readyz.
func startServeProc(t testing.TB, dir, name, bin, configPath, role string) *proc {
	t.Helper()
	p := spawnServe(t, dir, name, bin, configPath, role)
	p.waitHTTP(t, "/readyz", 60*time.Second)
	return p
}

// spawnServe starts `agentd serve -role role` on a free port.
func spawnServe(t testing.TB, dir, name, bin, configPath, role string) *proc {
	t.Helper()
	addr := clusterFreeAddr(t)
	return startProc(t, dir, name, addr, bin, []string{"AGENTD_SERVER_ADDR=" + addr},
		"serve", "-config", configPath, "-role", role)
}

// pgSchema creates a fresh schema in the database of AGENTD_TEST_POSTGRES_URL
// (dropped at cleanup, after the processes registered later are killed)
// and returns a store URL whose search_path is that schema.
func pgSchema(t *testing.T, base string) string {
	return pgtest.Schema(t, base, 20)
}

// runBody is what the tests read of a run.
type runBody struct {
	ID         string     `json:"id"`
	Status     string     `json:"status"`
	Attempt    int        `json:"attempt"`
	Steps      int        `json:"steps"`
	Error      string     `json:"error"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Input      struct {
		Message string `json:"message"`
	} `json:"input"`
}

func (r runBody) terminal() bool {
	switch r.Status {
	case "succeeded", "failed", "canceled":
		return true
	}
	return false
}

// submitRun posts a run and returns its id. Safe in any goroutine.
func submitRun(base, message string) (string, error) {
	body, _ := json.Marshal(map[string]string{"agent": "demo", "message": message})
	resp, err := clusterHTTP.Post(base+"/v1/runs", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /v1/runs: %d %s", resp.StatusCode, raw)
	}
	var rb runBody
	if err := json.Unmarshal(raw, &rb); err != nil || rb.ID == "" {
		return "", fmt.Errorf("POST /v1/runs: bad body %s (%v)", raw, err)
	}
	return rb.ID, nil
}

// listRuns returns every run (at most 1000) with the given status ("" for
// all), or an error (the API may be briefly unreachable).
func listRuns(base, status string) ([]runBody, error) {
	u := base + "/v1/runs?limit=1000"
	if status != "" {
		u += "&status=" + status
	}
	resp, err := clusterHTTP.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, raw)
	}
	var body struct {
		Runs       []runBody `json:"runs"`
		NextCursor string    `json:"next_cursor"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, err
	}
	if body.NextCursor != "" {
		return nil, errors.New("more than 1000 runs")
	}
	return body.Runs, nil
}

// waitAllTerminal polls until every run in ids is terminal and returns
// them by id.
func waitAllTerminal(t *testing.T, base string, ids []string, within time.Duration) map[string]runBody {
	t.Helper()
	deadline := time.Now().Add(within)
	var last map[string]runBody
	for {
		runs, err := listRuns(base, "")
		if err == nil {
			last = make(map[string]runBody, len(runs))
			for _, r := range runs {
				last[r.ID] = r
			}
			done := 0
			for _, id := range ids {
				if r, ok := last[id]; ok && r.terminal() {
					done++
				}
			}
			if done == len(ids) {
				return last
			}
			if time.Now().After(deadline) {
				counts := map[string]int{}
				var stuck []string
				for _, id := range ids {
					r := last[id]
					counts[r.Status]++
					if !r.terminal() && len(stuck) < 10 {
						stuck = append(stuck, fmt.Sprintf("%s: %s attempt %d steps %d", id, r.Status, r.Attempt, r.Steps))
					}
				}
				t.Fatalf("after %s, %d of %d runs are terminal; statuses: %v; e.g. %v", within, done, len(ids), counts, stuck)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("list runs: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// simLedger returns the sim's ledger: per conversation (the raw JSON
// content of its first user message), requests per message count.
func simLedger(t *testing.T, sim *proc) (int64, map[string]map[int]int) {
	t.Helper()
	resp, err := clusterHTTP.Get(sim.base + "/sim/ledger")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Requests int64                  `json:"requests"`
		Ledger   map[string]map[int]int `json:"ledger"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return body.Requests, body.Ledger
}

// ledgerByText re-keys the ledger by the text of the first user message
// (the key is its raw JSON content, a list of blocks).
func ledgerByText(t *testing.T, ledger map[string]map[int]int) map[string]map[int]int {
	t.Helper()
	out := make(map[string]map[int]int, len(ledger))
	for raw, counts := range ledger {
		var blocks []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		var text string
		if err := json.Unmarshal([]byte(raw), &blocks); err == nil {
			for _, b := range blocks {
				text += b.Text
			}
		} else if err := json.Unmarshal([]byte(raw), &text); err != nil {
			t.Fatalf("ledger key is neither blocks nor a string: %s", raw)
		}
		require.NotContains(t, out, text, "two ledger keys with the same text")
		out[text] = counts
	}
	return out
}

// sseEvent is one event of a run's SSE stream.
type sseEvent struct {
	ID   int64
	Type string
}

// follower reads /v1/runs/{id}/events until the stream ends.
type follower struct {
	runID  string
	done   chan struct{}
	events []sseEvent
	err    error
}

// follow opens the run's event stream in a goroutine; it ends when the
// stream ends or ctx is done.
func follow(ctx context.Context, base, runID string) *follower {
	return followAfter(ctx, base, runID, 0)
}

// followAfter follows the run's events after the event id after (what a
// client reconnecting with Last-Event-ID does).
func followAfter(ctx context.Context, base, runID string, after int64) *follower {
	f := &follower{runID: runID, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = f.read(ctx, base, after)
	}()
	return f
}

func (f *follower) read(ctx context.Context, base string, after int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/runs/"+f.runID+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET events: %d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var cur sseEvent
	have := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if have {
				f.events = append(f.events, cur)
			}
			cur, have = sseEvent{}, false
		case strings.HasPrefix(line, ":"):
			// comment (ping)
		case strings.HasPrefix(line, "id:"):
			if _, err := fmt.Sscan(strings.TrimSpace(line[3:]), &cur.ID); err != nil {
				return fmt.Errorf("bad id line %q", line)
			}
			have = true
		case strings.HasPrefix(line, "event:"):
			cur.Type = strings.TrimSpace(line[6:])
			have = true
		case strings.HasPrefix(line, "data:"):
			have = true
		}
	}
	if have {
		f.events = append(f.events, cur)
	}
	return sc.Err()
}

// check verifies the stream: ids 1, 2, 3, ... with no gap or duplicate,
// ending with done.
func (f *follower) check(t *testing.T) (resumed bool) {
	t.Helper()
	require.NoError(t, f.err, "follower of %s", f.runID)
	require.NotEmpty(t, f.events, "follower of %s saw no events", f.runID)
	for i, ev := range f.events {
		require.Equal(t, int64(i+1), ev.ID, "follower of %s: event %d (%s) has id %d; stream: %v", f.runID, i, ev.Type, ev.ID, f.events)
		if ev.Type == "resumed" {
			resumed = true
		}
	}
	require.Equal(t, "done", f.events[len(f.events)-1].Type, "follower of %s: stream %v", f.runID, f.events)
	return resumed
}

// logTimes returns the times of the JSON log lines of path whose msg starts
// with msg.
func logTimes(path, msg string) []time.Time {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []time.Time
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(msg)) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(line, &rec) == nil && strings.HasPrefix(rec.Msg, msg) {
			out = append(out, rec.Time)
		}
	}
	return out
}
