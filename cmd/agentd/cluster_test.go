package main

// Cluster tests: real agentd processes (built from this tree) against an
// external simulator, killed with SIGKILL in the middle of their runs. They
// prove that queued runs survive the death of their worker: every run ends
// succeeded, exactly once, and no model call that was checkpointed is made
// again (the simulator's ledger counts every request per conversation).
//
//	AGENTD_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -run Cluster -v ./cmd/agentd/
//
// AGENTD_CLUSTER_RACE=1 builds the child processes with -race.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
)

// clusterMessage is the unique message of run i: it names the clock tool,
// so the run takes two model calls (tool_use, then text after the result).
func clusterMessage(i int) string {
	return fmt.Sprintf("cluster run %03d: what time is it? use the clock", i)
}

func TestClusterSurvivesWorkerKill(t *testing.T) {
	pgBase := os.Getenv("AGENTD_TEST_POSTGRES_URL")
	if pgBase == "" {
		t.Skip("AGENTD_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	if testing.Short() {
		t.Skip("starts processes and takes ~15s")
	}
	t0 := time.Now()
	dir := t.TempDir()
	bin := buildAgentd(t, dir)
	storeURL := pgSchema(t, pgBase) // cleanup registered first: runs last
	sim := startSim(t, dir, bin, "-latency", "300ms")
	cfg := clusterConfig(t, dir, storeURL, sim.base)

	// The API first (it migrates the schema), then both workers at once.
	api := startServeProc(t, dir, "api", bin, cfg, app.RoleAPI)
	workers := [2]*proc{
		spawnServe(t, dir, "worker1", bin, cfg, app.RoleWorker),
		spawnServe(t, dir, "worker2", bin, cfg, app.RoleWorker),
	}
	for _, w := range workers {
		w.waitHTTP(t, "/readyz", 60*time.Second)
	}
	t.Logf("processes ready after %s", time.Since(t0).Round(time.Millisecond))

	// Submit 200 runs (8 at a time); follow every 10th over SSE from the
	// moment it exists.
	const n = 200
	ids := make([]string, n)
	followers := make(map[string]*follower)
	var fmu sync.Mutex
	fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer fcancel()
	submitStart := time.Now()
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id, err := submitRun(api.base, clusterMessage(i))
				if err != nil {
					errs <- fmt.Errorf("run %d: %w", i, err)
					continue
				}
				ids[i] = id
				if i%10 == 0 {
					f := follow(fctx, api.base, ids[i])
					fmu.Lock()
					followers[ids[i]] = f
					fmu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	require.NotContains(t, ids, "")
	t.Logf("submitted %d runs in %s", n, time.Since(submitStart).Round(time.Millisecond))

	// Kill worker 1 once it is busy: ~1s after the first submit, with many
	// runs running and both workers having made model calls.
	victim, survivor := workers[0], workers[1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		running, err := listRuns(api.base, "running")
		busy := err == nil && len(running) >= 20 && time.Since(submitStart) >= time.Second &&
			llmCalls(victim) > 0 && llmCalls(survivor) > 0
		if busy {
			t.Logf("killing %s (pid %d) with %d runs running, %s after the first submit",
				victim.name, victim.cmd.Process.Pid, len(running), time.Since(submitStart).Round(time.Millisecond))
			break
		}
		require.True(t, time.Now().Before(deadline), "the workers never got busy (running=%d, err=%v)", len(running), err)
		time.Sleep(20 * time.Millisecond)
	}
	killedAt := time.Now()
	victim.kill()

	// Time to the first resumed run: a run with attempt >= 2 appears.
	var firstResume time.Duration
	deadline = time.Now().Add(60 * time.Second)
	for firstResume == 0 {
		runs, err := listRuns(api.base, "")
		if err == nil && slices.ContainsFunc(runs, func(r runBody) bool { return r.Attempt >= 2 }) {
			firstResume = time.Since(killedAt)
			break
		}
		require.True(t, time.Now().Before(deadline), "no run resumed within 60s of the kill")
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("first resumed run seen %s after the kill (lease_ttl 3s, reclaim_interval 500ms)", firstResume.Round(time.Millisecond))

	final := waitAllTerminal(t, api.base, ids, 90*time.Second)
	allDone := time.Since(submitStart)
	lastDoneAfterKill := time.Since(killedAt)

	resumed := checkRuns(t, api.base, sim, ids, final)
	require.Positive(t, resumed, "the kill hit runs in flight: some must have resumed")

	// SSE followers: consecutive ids from 1, ending with done.
	fResumed := 0
	for _, f := range followers {
		select {
		case <-f.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("follower of %s did not end", f.runID)
		}
		if f.check(t) {
			fResumed++
		}
	}
	requireNothingAfterDone(t, api.base, followers)

	// Precise resume latency from the survivor's log (its clock is ours).
	reclaims := logTimes(survivor.logPath, "reclaimed runs whose worker stopped renewing its lease")
	resumes := logTimes(survivor.logPath, "resuming run")
	logDelay := func(ts []time.Time) string {
		for _, ts := range ts {
			if ts.After(killedAt) {
				return ts.Sub(killedAt).Round(time.Millisecond).String()
			}
		}
		return "n/a"
	}
	t.Logf("RESULT postgres 2 workers kill -9: runs=%d resumed=%d followers=%d (saw resumed: %d) "+
		"kill->first reclaim (log)=%s kill->first resume (log)=%s kill->first attempt>=2 (API poll)=%s "+
		"kill->all done=%s submit->all done=%s test wall=%s",
		n, resumed, len(followers), fResumed, logDelay(reclaims), logDelay(resumes), firstResume.Round(time.Millisecond),
		lastDoneAfterKill.Round(time.Millisecond), allDone.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

func TestClusterSQLiteSingleProcessRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and takes ~10s")
	}
	t0 := time.Now()
	dir := t.TempDir()
	bin := buildAgentd(t, dir)
	sim := startSim(t, dir, bin, "-latency", "300ms")
	storeURL := "sqlite://" + filepath.ToSlash(filepath.Join(dir, "agentd.db"))
	cfg := clusterConfig(t, dir, storeURL, sim.base)
	srv := startServeProc(t, dir, "serve1", bin, cfg, app.RoleAll)

	const n = 30
	ids := make([]string, n)
	for i := range n {
		id, err := submitRun(srv.base, clusterMessage(i))
		require.NoError(t, err)
		ids[i] = id
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer fcancel()
	followers := make([]*follower, 0, n/5)
	for i := 0; i < n; i += 5 {
		followers = append(followers, follow(fctx, srv.base, ids[i]))
	}

	// Kill mid-way: every run made its first model call and some their
	// second (the sim has seen more than n requests), not all finished.
	deadline := time.Now().Add(30 * time.Second)
	for {
		reqs, _ := simLedger(t, sim)
		if reqs >= n+n/3 {
			break
		}
		require.True(t, time.Now().Before(deadline), "runs did not progress (sim requests: %d)", reqs)
		time.Sleep(5 * time.Millisecond)
	}
	killedAt := time.Now()
	srv.kill()
	reqsAtKill, _ := simLedger(t, sim)
	for _, f := range followers {
		<-f.done // the connection died with the process
	}

	srv2 := startServeProc(t, dir, "serve2", bin, cfg, app.RoleAll)
	restarted := time.Since(killedAt)
	// Followers reconnect where they stopped (Last-Event-ID).
	resumedFollowers := make([]*follower, len(followers))
	for i, f := range followers {
		var last int64
		if k := len(f.events); k > 0 {
			last = f.events[k-1].ID
		}
		resumedFollowers[i] = followAfter(fctx, srv2.base, f.runID, last)
	}

	final := waitAllTerminal(t, srv2.base, ids, 90*time.Second)
	resumed := checkRuns(t, srv2.base, sim, ids, final)
	for _, r := range final {
		require.LessOrEqual(t, r.Attempt, 2, "run %s: one kill, at most one resume", r.ID)
	}
	require.Positive(t, resumed, "the kill hit runs in flight: some must have resumed")
	for i, f := range resumedFollowers {
		select {
		case <-f.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("follower of %s did not end", f.runID)
		}
		joined := &follower{runID: f.runID, events: append(slices.Clone(followers[i].events), f.events...)}
		joined.check(t)
	}
	byID := make(map[string]*follower, len(resumedFollowers))
	for _, f := range resumedFollowers {
		byID[f.runID] = f
	}
	requireNothingAfterDone(t, srv2.base, byID)
	t.Logf("RESULT sqlite single process kill -9 + restart: runs=%d resumed=%d sim requests at kill=%d "+
		"kill->ready again=%s kill->all done=%s test wall=%s",
		n, resumed, reqsAtKill, restarted.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond),
		time.Since(t0).Round(time.Millisecond))
}

// checkRuns asserts the outcome of every run and returns how many resumed:
// all succeeded in 2 steps, each finished exactly once (one done event,
// ids 1..N, the conversation holds the turn once), and the sim saw at most
// one repeated model call per run (none for runs that never resumed).
func checkRuns(t *testing.T, base string, sim *proc, ids []string, final map[string]runBody) (resumed int) {
	t.Helper()
	_, raw := simLedger(t, sim)
	ledger := ledgerByText(t, raw)
	attempts := map[int]int{}
	for i, id := range ids {
		r := final[id]
		require.Equal(t, "succeeded", r.Status, "run %s (%d): %+v", id, i, r)
		require.Equal(t, clusterMessage(i), r.Input.Message)
		require.Equal(t, 2, r.Steps, "run %s", id)
		require.GreaterOrEqual(t, r.Attempt, 1, "run %s", id)
		attempts[r.Attempt]++
		if r.Attempt > 1 {
			resumed++
		}

		counts, ok := ledger[clusterMessage(i)]
		require.True(t, ok, "run %s: the sim never saw its conversation", id)
		total := 0
		for _, c := range counts {
			total += c
		}
		// Message counts 1 (first call) and 3 (after the tool result).
		require.Positive(t, counts[1], "run %s: ledger %v", id, counts)
		require.Positive(t, counts[3], "run %s: ledger %v", id, counts)
		require.LessOrEqual(t, total, r.Steps+1, "run %s (attempt %d) repeated a checkpointed model call: ledger %v", id, r.Attempt, counts)
		if r.Attempt == 1 {
			require.Equal(t, 2, total, "run %s ran once: ledger %v", id, counts)
		}

		// Exactly one outcome in the run's stored events.
		evs := readEvents(t, base, id)
		types := map[string]int{}
		for j, ev := range evs {
			require.Equal(t, int64(j+1), ev.ID, "run %s: events %v", id, evs)
			types[ev.Type]++
		}
		require.Equal(t, 1, types["done"], "run %s: events %v", id, evs)
		require.Zero(t, types["error"], "run %s: events %v", id, evs)
		require.Equal(t, "done", evs[len(evs)-1].Type, "run %s", id)
		require.LessOrEqual(t, types["resumed"], r.Attempt-1, "run %s: events %v", id, evs)

		// The conversation holds the turn once: user, tool_use,
		// tool_result, answer.
		conv := getRunConversation(t, base, id)
		require.Len(t, conv, 4, "conversation of run %s (attempt %d, events %v, ledger %v) holds the turn more than once: %v",
			id, r.Attempt, evs, counts, conv)
	}
	keys := make([]int, 0, len(attempts))
	for k := range attempts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("attempt %d: %d", k, attempts[k]))
	}
	t.Logf("runs by attempt: %s", strings.Join(parts, ", "))
	return resumed
}

// requireNothingAfterDone reconnects each finished follower after its done
// event (Last-Event-ID): a run that finished once has no later event (a
// second done would be invisible to followers, who stop at the first).
func requireNothingAfterDone(t *testing.T, base string, followers map[string]*follower) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	after := make(map[string]*follower, len(followers))
	for id, f := range followers {
		after[id] = followAfter(ctx, base, id, f.events[len(f.events)-1].ID)
	}
	for id, f := range after {
		<-f.done
		require.NoError(t, f.err, "run %s", id)
		require.Empty(t, f.events, "run %s has events after its done event %d", id, followers[id].events[len(followers[id].events)-1].ID)
	}
}

// readEvents reads the stored events of a run up to its first done or
// error event (where an event stream ends).
func readEvents(t *testing.T, base, id string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f := follow(ctx, base, id)
	<-f.done
	require.NoError(t, f.err, "events of %s", id)
	return f.events
}

// getRunConversation returns the messages of the run's conversation.
func getRunConversation(t *testing.T, base, runID string) []any {
	t.Helper()
	var run struct {
		ConversationID string `json:"conversation_id"`
	}
	getClusterJSON(t, base+"/v1/runs/"+runID, &run)
	var conv struct {
		Messages []any `json:"messages"`
	}
	getClusterJSON(t, base+"/v1/conversations/"+run.ConversationID, &conv)
	return conv.Messages
}

// llmCalls returns the model calls a serve process finished (any outcome),
// from its /metrics.
func llmCalls(p *proc) int {
	resp, err := clusterHTTP.Get(p.base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	total := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "agentd_llm_requests_total{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				total += int(v)
			}
		}
	}
	return total
}

func getClusterJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := clusterHTTP.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, b)
	require.NoError(t, json.Unmarshal(b, v), "GET %s", url)
}
