package chaos

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// R2bConfig is R2b: a deploy with runs in flight.
type R2bConfig struct {
	Runs    int
	After   int
	Workers int
	Rate    float64
	Latency time.Duration
	Stop    string
	Timeout time.Duration
}

func (c *R2bConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.Runs, "runs", 200, "runs submitted to blue before the switch")
	fs.IntVar(&c.After, "after", 20, "runs submitted after the switch (to green)")
	fs.IntVar(&c.Workers, "workers", 2, "workers per color")
	fs.Float64Var(&c.Rate, "rate", 50, "runs submitted per second")
	fs.DurationVar(&c.Latency, "latency", 5*time.Second, "the simulated model's latency per call (slow: runs are in flight at the switch, and outlast a SIGTERM'd worker's drain)")
	fs.StringVar(&c.Stop, "stop", "mixed", "how blue's workers stop after the switch: term (SIGTERM, drain), kill (kill -9) or mixed (SIGTERM and kill -9 in turn)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "bound of the whole scenario")
}

// Agent definitions A (blue) and B (green): the system prompt differs.
const (
	systemA = "Use the tools when they help. (definition A)"
	systemB = "Use the tools when they help; answer in one line. (definition B)"
)

// r2bMessage is run i's message; after: submitted after the switch.
func r2bMessage(i int, after bool) string {
	if after {
		return fmt.Sprintf("chaos r2b run after %05d: use the counter and the clock", i)
	}
	return fmt.Sprintf("chaos r2b run %05d: use the counter and the clock", i)
}

// RunR2b deploys green (definition B: another system prompt) while runs
// started on blue (definition A) are in flight: -runs multi-step runs (two
// model calls and two tool calls each, slow model) are submitted through
// HAProxy to blue on PostgreSQL; green's API and workers start beside
// blue, HAProxy switches to green, blue's workers stop (SIGTERM: drain,
// runs still running are suspended; or kill -9: their leases lapse) and
// green's workers finish blue's runs; -after runs are submitted to green.
// At the sim every run's model calls must all carry one system prompt, the
// one of the definition it was submitted under (A for blue's runs, B for
// green's): none mixed, none failed, none lost.
func RunR2b(ctx context.Context, e *Env, cfg R2bConfig) error {
	if cfg.Stop != "term" && cfg.Stop != "kill" && cfg.Stop != "mixed" {
		return fmt.Errorf("-stop %q: want term, kill or mixed", cfg.Stop)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	pg, err := e.StartPostgres(ctx)
	if err != nil {
		return err
	}
	// One sim per color: each ledger shows what its color's processes
	// asked the model (green's holds the calls it made for blue's runs).
	simBlue, err := e.startSimNamed(ctx, "sim-blue", cfg.Latency)
	if err != nil {
		return err
	}
	simGreen, err := e.startSimNamed(ctx, "sim-green", cfg.Latency)
	if err != nil {
		return err
	}
	tools, err := e.StartToolServer()
	if err != nil {
		return err
	}
	blue, err := e.newColor("blue", systemA, pg.URL(), simBlue.Base(), tools.URL, 1, cfg.Workers)
	if err != nil {
		return err
	}
	green, err := e.newColor("green", systemB, pg.URL(), simGreen.Base(), tools.URL, 1, cfg.Workers)
	if err != nil {
		return err
	}
	lb, err := e.blueLive(ctx, blue, green)
	if err != nil {
		return err
	}
	base := lb.Base()
	e.Logf("R2b: blue (definition A: 1 API, %d workers) behind HAProxy :%d on PostgreSQL :%d in %s", cfg.Workers, lb.Port, pg.Port, time.Since(t0).Round(time.Millisecond))

	// Blue's runs.
	var submitErrs atomic.Int64
	submit := func(n int, after bool) []string {
		ids := make([]string, n)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer tick.Stop()
		for i := range n {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("chaos-r2b-%v-%d", after, i)
				for ctx.Err() == nil {
					_, id, err := submitRun(ctx, base, key, r2bMessage(i, after))
					if err == nil {
						ids[i] = id
						return
					}
					if submitErrs.Add(1) <= 3 {
						e.Logf("R2b: submit (retried under its key): %v", err)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		return ids
	}
	before := submit(cfg.Runs, false)
	e.Logf("R2b: %d runs submitted to blue in %s", cfg.Runs, time.Since(t0).Round(time.Millisecond))

	// The deploy: green starts beside blue, HAProxy switches to it.
	gs := time.Now()
	if err := green.start(ctx); err != nil {
		return err
	}
	if err := lb.waitUp(ctx, green, 30*time.Second); err != nil {
		return err
	}
	took, err := lb.Switch(ctx, "green")
	if err != nil {
		return err
	}
	inFlight, err := runsInFlight(ctx, base, before)
	if err != nil {
		return err
	}
	e.Logf("R2b: green up in %s; switched to green (set map: %s); %d of blue's runs in flight (%d running, %d queued)",
		time.Since(gs).Round(time.Millisecond), took.Round(time.Microsecond), inFlight.running+inFlight.queued, inFlight.running, inFlight.queued)

	// Blue's workers and API stop while green's runs are submitted.
	afterCh := make(chan []string, 1)
	go func() { afterCh <- submit(cfg.After, true) }()
	bs := time.Now()
	var stops sync.WaitGroup
	terms, kills := 0, 0
	for i, w := range blue.workers {
		sig := syscall.SIGTERM
		if cfg.Stop == "kill" || (cfg.Stop == "mixed" && i%2 == 1) {
			sig = syscall.SIGKILL
			kills++
		} else {
			terms++
		}
		stops.Add(1)
		go func() { defer stops.Done(); w.Signal(sig) }()
	}
	for _, a := range blue.apis {
		stops.Add(1)
		go func() { defer stops.Done(); a.Signal(syscall.SIGTERM) }()
	}
	stops.Wait()
	blueStopped := time.Since(bs)
	e.Logf("R2b: blue stopped (%d workers SIGTERM, %d kill -9, API SIGTERM) in %s", terms, kills, blueStopped.Round(time.Millisecond))
	after := <-afterCh
	e.Logf("R2b: %d runs submitted to green", cfg.After)

	// Every run ends.
	all := append(append([]string(nil), before...), after...)
	var final map[string]run
	for {
		runs, err := allRuns(ctx, base)
		if err == nil {
			final = runs
			done := 0
			for _, id := range all {
				if r, ok := runs[id]; ok && r.terminal() {
					done++
				}
			}
			if done == len(all) {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	bySim := map[string]map[string]map[string]int{}
	for name, s := range map[string]*Proc{"blue": simBlue, "green": simGreen} {
		if bySim[name], err = simSystems(s); err != nil {
			return err
		}
	}
	systems := mergeSystems(bySim["blue"], bySim["green"])

	// Verdict.
	v := r2bVerdict{}
	digests := map[bool]map[string]int{false: {}, true: {}}
	check := func(ids []string, after bool) {
		want := systemA
		if after {
			want = systemB
		}
		for i, id := range ids {
			r, ok := final[id]
			if id == "" || !ok || !r.terminal() {
				v.lost++
				continue
			}
			digests[after][r.AgentDigest]++
			if r.Status != "succeeded" {
				v.failed++
				if v.failed <= 3 {
					e.Logf("R2b: run %s %s: %s", id, r.Status, r.Error)
				}
			}
			if r.Attempt > 1 {
				v.resumed++
			}
			msg := r2bMessage(i, after)
			got := systems[msg]
			calls := 0
			for _, n := range got {
				calls += n
			}
			v.modelCalls += calls
			switch {
			case len(got) > 1:
				v.mixed++
				if v.mixed <= 3 {
					e.Logf("R2b: run %s carried several system prompts: %v", id, got)
				}
			case calls < 2:
				v.short++
				if v.short <= 3 {
					e.Logf("R2b: run %s: %d model calls seen at the sim (want 2)", id, calls)
				}
			case got[want] != calls:
				v.wrong++
				if v.wrong <= 3 {
					e.Logf("R2b: run %s carried %v, want only %q", id, got, want)
				}
			}
			if n := bySim["green"][msg][systemA]; n > 0 {
				v.greenCallsA += n
				v.greenRunsA++
			}
			if n := bySim["blue"][msg][systemB]; n > 0 {
				v.blueCallsB += n
				v.blueRunsB++
			}
		}
	}
	check(before, false)
	check(after, true)
	// Each side's runs carry one digest, and they differ.
	digestsOK := len(digests[false]) == 1 && len(digests[true]) == 1
	var dA, dB string
	for d := range digests[false] {
		dA = d
	}
	for d := range digests[true] {
		dB = d
	}
	digestsOK = digestsOK && len(dA) == 64 && len(dB) == 64 && dA != dB

	// The scenario proves something only if blue's runs were in flight
	// when blue stopped and green finished some of them with A.
	ok := v.lost == 0 && v.failed == 0 && v.mixed == 0 && v.wrong == 0 && v.short == 0 && digestsOK &&
		inFlight.running > 0 && v.greenRunsA > 0
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	suspended, resumedByGreen := 0, 0
	for _, w := range blue.workers {
		suspended += len(logTimes(w.Log, "run suspended; it resumes from its checkpoint"))
	}
	for _, w := range green.workers {
		resumedByGreen += len(logTimes(w.Log, "resuming run"))
	}
	fmt.Fprintf(e.Out, "R2b %s runs=%d (before the switch, definition A) + %d (after, B) lost=%d failed=%d mixed=%d wrong_definition=%d "+
		"in_flight_at_switch=%d (running %d, queued %d) blue_stop=%s (SIGTERM %d, kill -9 %d workers, in %s) "+
		"runs_of_A_run_by_green=%d (%d model calls with A, from the stored snapshot) runs_of_B_run_by_draining_blue=%d (%d calls with B) "+
		"suspended_by_drain=%d resumed_by_green=%d resumed_runs=%d model_calls=%d "+
		"digests: A=%.12s B=%.12s (one per side: %v) submit_retries=%d latency=%s wall=%s\n",
		verdict, cfg.Runs, cfg.After, v.lost, v.failed, v.mixed, v.wrong+v.short,
		inFlight.running+inFlight.queued, inFlight.running, inFlight.queued, cfg.Stop, terms, kills, blueStopped.Round(time.Millisecond),
		v.greenRunsA, v.greenCallsA, v.blueRunsB, v.blueCallsB, suspended, resumedByGreen, v.resumed, v.modelCalls,
		dA, dB, digestsOK, submitErrs.Load(), cfg.Latency, time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}

type r2bVerdict struct {
	lost, failed, mixed, wrong, short int
	resumed, modelCalls               int
	greenRunsA, greenCallsA           int // blue's runs (A) whose calls green made
	blueRunsB, blueCallsB             int // green's runs (B) whose calls blue made (while it drained)
}

// mergeSystems adds ledgers of system prompts up.
func mergeSystems(ledgers ...map[string]map[string]int) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, l := range ledgers {
		for first, counts := range l {
			if out[first] == nil {
				out[first] = map[string]int{}
			}
			for sys, n := range counts {
				out[first][sys] += n
			}
		}
	}
	return out
}

type inFlightCount struct{ running, queued int }

// runsInFlight counts ids not yet finished.
func runsInFlight(ctx context.Context, base string, ids []string) (inFlightCount, error) {
	runs, err := allRuns(ctx, base)
	if err != nil {
		return inFlightCount{}, err
	}
	var c inFlightCount
	for _, id := range ids {
		switch runs[id].Status {
		case "running":
			c.running++
		case "queued":
			c.queued++
		}
	}
	return c, nil
}
