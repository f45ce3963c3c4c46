package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// R1Config is the worker-death scenario.
type R1Config struct {
	Runs      int
	Workers   int
	KillEvery time.Duration
	Rate      float64 // runs submitted per second
	Latency   time.Duration
	Timeout   time.Duration
}

func (c *R1Config) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.Runs, "runs", 1000, "runs submitted")
	fs.IntVar(&c.Workers, "workers", 3, "worker processes")
	fs.DurationVar(&c.KillEvery, "kill-every", 5*time.Second, "kill -9 a random worker this often (restarted at once)")
	fs.Float64Var(&c.Rate, "rate", 50, "runs submitted per second")
	fs.DurationVar(&c.Latency, "latency", 300*time.Millisecond, "the simulated model's latency per call")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "bound of the whole scenario")
}

// runMessage is run i's unique message: the sim calls the counter and the
// clock, then answers (2 model calls, 2 tool calls).
func runMessage(i int) string {
	return fmt.Sprintf("chaos run %05d: use the counter and the clock", i)
}

// cluster is PostgreSQL, the sim, the counter tool, one API instance
// behind HAProxy and the workers.
type cluster struct {
	pg      *Postgres
	sim     *Proc
	tools   *ToolServer
	cfg     string
	api     *Proc   // the first API instance
	apis    []*Proc // every API instance, behind lb
	lb      *Proc
	workers []*Proc
}

func (e *Env) startCluster(ctx context.Context, workers int, latency time.Duration, redisURL string) (*cluster, error) {
	return e.startClusterN(ctx, 1, workers, latency, redisURL)
}

func (e *Env) startClusterN(ctx context.Context, apis, workers int, latency time.Duration, redisURL string) (*cluster, error) {
	pg, err := e.StartPostgres(ctx)
	if err != nil {
		return nil, err
	}
	c := &cluster{pg: pg}
	return c, e.startApps(ctx, c, pg.URL(), apis, workers, latency, redisURL)
}

// startApps starts the sim, the tool server, the agentd instances on
// storeURL and HAProxy into c.
func (e *Env) startApps(ctx context.Context, c *cluster, storeURL string, apis, workers int, latency time.Duration, redisURL string) error {
	var err error
	if c.sim, err = e.StartSim(ctx, latency); err != nil {
		return err
	}
	if c.tools, err = e.StartToolServer(); err != nil {
		return err
	}
	if c.cfg, err = e.Config(storeURL, redisURL, c.sim.Base(), c.tools.URL); err != nil {
		return err
	}
	if c.api, err = e.Serve(ctx, "api1", c.cfg, "api"); err != nil { // migrates the schema
		return err
	}
	c.apis = []*Proc{c.api}
	for i := 2; i <= apis; i++ {
		a, err := e.Serve(ctx, fmt.Sprintf("api%d", i), c.cfg, "api")
		if err != nil {
			return err
		}
		c.apis = append(c.apis, a)
	}
	for i := range workers {
		w, err := e.Serve(ctx, fmt.Sprintf("worker%d", i+1), c.cfg, "worker")
		if err != nil {
			return err
		}
		c.workers = append(c.workers, w)
	}
	if c.lb, err = e.StartHAProxy(ctx, c.apis); err != nil {
		return err
	}
	return nil
}

// RunR1 is R1: runs on PostgreSQL with workers killed (-9) at random and
// restarted; every run must end succeeded once, with no checkpointed model
// or tool call repeated.
func RunR1(ctx context.Context, e *Env, cfg R1Config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	c, err := e.startCluster(ctx, cfg.Workers, cfg.Latency, "")
	if err != nil {
		return err
	}
	base := c.lb.Base()
	e.Logf("R1: cluster up in %s (PostgreSQL :%d, sim, HAProxy :%d, 1 API, %d workers)", time.Since(t0).Round(time.Millisecond), c.pg.Port, c.lb.Port, cfg.Workers)

	// The killer: every KillEvery a random worker gets kill -9 and is
	// started again at once.
	var kills []time.Time
	var killMu sync.Mutex
	stopKiller := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		tk := time.NewTicker(cfg.KillEvery)
		defer tk.Stop()
		for {
			select {
			case <-stopKiller:
				return
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			w := c.workers[rand.IntN(len(c.workers))]
			pid := w.Pid()
			w.Kill()
			killMu.Lock()
			kills = append(kills, time.Now())
			killMu.Unlock()
			e.Logf("R1: kill -9 %s (pid %d)", w.Name, pid)
			if err := w.Start(); err != nil {
				e.Logf("R1: restart %s: %v", w.Name, err)
			}
		}
	}()

	// Submit at Rate; a refused or failed submit is retried under its
	// Idempotency-Key (never two runs for one key).
	ids := make([]string, cfg.Runs)
	var submitErrs atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	for i := range cfg.Runs {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("chaos-r1-%d", i)
			for ctx.Err() == nil {
				_, id, err := submitRun(ctx, base, key, runMessage(i))
				if err == nil {
					ids[i] = id
					return
				}
				submitErrs.Add(1)
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	e.Logf("R1: %d runs submitted in %s (%d submit attempts failed and were retried)", cfg.Runs, time.Since(t0).Round(time.Millisecond), submitErrs.Load())

	// Wait for every run to end; the killer keeps killing meanwhile.
	var final map[string]run
	for {
		runs, err := allRuns(ctx, base)
		if err == nil {
			done := 0
			for _, id := range ids {
				if r, ok := runs[id]; ok && r.terminal() {
					done++
				}
			}
			final = runs
			if done == len(ids) {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stopKiller)
	<-killerDone
	elapsed := time.Since(t0)

	// Verdict.
	_, rawLedger, err := SimLedger(c.sim)
	if err != nil {
		return err
	}
	ledger := ledgerByText(rawLedger)
	toolCalls := c.tools.Calls()
	toolByRun := map[string][]int{}
	for key, n := range toolCalls {
		// key: run:step:tool_use
		var runID string
		for j := range key {
			if key[j] == ':' {
				runID = key[:j]
				break
			}
		}
		toolByRun[runID] = append(toolByRun[runID], n)
	}
	var lost, failed, twice, modelRepeats, modelBeyond, toolRepeats, toolBeyond, resumed int
	for i, id := range ids {
		r, ok := final[id]
		if id == "" || !ok || !r.terminal() {
			lost++
			continue
		}
		if r.Status != "succeeded" {
			failed++
			if failed <= 3 {
				e.Logf("R1: run %s %s: %s", id, r.Status, r.Error)
			}
		}
		if r.Attempt > 1 {
			resumed++
		}
		allowed := max(r.Attempt-1, 0) // one uncheckpointed call may repeat per resume
		extra := 0
		for _, n := range ledger[runMessage(i)] {
			extra += n - 1
		}
		modelRepeats += extra
		modelBeyond += max(extra-allowed, 0)
		extra = 0
		for _, n := range toolByRun[id] {
			extra += n - 1
		}
		toolRepeats += extra
		// A step's tool calls run in parallel: a resume may repeat each
		// call of the uncheckpointed step (2 here).
		toolBeyond += max(extra-2*allowed, 0)
		types, _, err := runEvents(ctx, base, id)
		if err != nil {
			return err
		}
		dones := 0
		for _, t := range types {
			if t == "done" {
				dones++
			}
		}
		n, err := conversationLen(ctx, base, r.ConversationID)
		if err != nil {
			return err
		}
		if dones != 1 || (r.Status == "succeeded" && n != 4) {
			twice++
			if twice <= 3 {
				e.Logf("R1: run %s: %d done events, %d messages in its conversation", id, dones, n)
			}
		}
	}
	// Time to resume: from a kill to each "resuming run" logged after it.
	var resumes []time.Duration
	for _, w := range c.workers {
		for _, ts := range logTimes(w.Log, "resuming run") {
			var last time.Time
			for _, k := range kills {
				if k.Before(ts) {
					last = k
				}
			}
			if !last.IsZero() {
				resumes = append(resumes, ts.Sub(last))
			}
		}
	}
	// The counts above prove something only if the calls were seen: every
	// run called the counter tool (one key per call) and the sim.
	runsWithToolCall := 0
	for _, id := range ids {
		if len(toolByRun[id]) > 0 {
			runsWithToolCall++
		}
	}
	modelCalls := 0
	for _, counts := range ledger {
		for _, n := range counts {
			modelCalls += n
		}
	}
	// A scenario whose kills interrupted no run proves nothing: at least
	// one run must have been resumed.
	ok := lost == 0 && failed == 0 && twice == 0 && modelBeyond == 0 && toolBeyond == 0 && len(kills) > 0 && resumed > 0 &&
		runsWithToolCall == len(ids) && modelCalls >= 2*len(ids)
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(e.Out, "R1 %s runs=%d workers=%d kills=%d resumed_runs=%d lost=%d failed=%d completed_twice=%d "+
		"model_calls=%d model_calls_repeated=%d (beyond one per resume: %d) runs_with_tool_calls=%d tool_calls=%d tool_calls_repeated=%d (beyond one step per resume: %d) "+
		"resume_p50=%s resume_p99=%s (n=%d) wall=%s\n",
		verdict, cfg.Runs, cfg.Workers, len(kills), resumed, lost, failed, twice, modelCalls, modelRepeats, modelBeyond,
		runsWithToolCall, len(toolCalls), toolRepeats, toolBeyond,
		percentile(resumes, 0.5).Round(time.Millisecond), percentile(resumes, 0.99).Round(time.Millisecond), len(resumes),
		elapsed.Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}
