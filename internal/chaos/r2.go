package chaos

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"syscall"
	"time"
)

// R2Config is the rolling-restart scenario (the first part of R2).
type R2Config struct {
	APIs    int
	Rate    float64
	Rounds  int
	Latency time.Duration
}

func (c *R2Config) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.APIs, "apis", 2, "API instances behind HAProxy")
	fs.Float64Var(&c.Rate, "rate", 50, "chats per second")
	fs.IntVar(&c.Rounds, "rounds", 1, "rolling restarts of every API instance")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "the simulated model's latency")
}

// RunR2Rolling restarts every API instance in turn (SIGTERM: agentd
// drains, /readyz answers 503 for drain_delay so HAProxy stops sending,
// in-flight chats finish; then the instance starts again) under chat load
// through HAProxy: 0 failed client requests.
func RunR2Rolling(ctx context.Context, e *Env, cfg R2Config) error {
	t0 := time.Now()
	c, err := e.startClusterN(ctx, cfg.APIs, 1, cfg.Latency, "")
	if err != nil {
		return err
	}
	e.Logf("R2-rolling: cluster up in %s (%d API instances behind HAProxy :%d)", time.Since(t0).Round(time.Millisecond), cfg.APIs, c.lb.Port)
	l := startLoad(c.lb.Base(), cfg.Rate, false)
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	restarts := 0
	var longest time.Duration
	for range cfg.Rounds {
		for _, a := range c.apis {
			start := time.Now()
			a.Signal(syscall.SIGTERM)
			if err := a.Start(); err != nil {
				return err
			}
			if err := WaitHTTP(ctx, a.Base()+"/readyz", 60*time.Second, a); err != nil {
				return err
			}
			took := time.Since(start)
			longest = max(longest, took)
			restarts++
			e.Logf("R2-rolling: %s restarted (stop + start + ready in %s)", a.Name, took.Round(time.Millisecond))
			if err := sleep(ctx, 2*time.Second); err != nil { // HAProxy's check sees it up (rise 1, every 500 ms)
				return err
			}
		}
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	results := l.Stop()
	failed := 0
	codes := map[int]int{}
	for _, r := range results {
		codes[r.status]++
		if r.status != http.StatusOK {
			failed++
			if failed <= 3 {
				e.Logf("R2-rolling: failed: %d %s", r.status, r.err)
			}
		}
	}
	ok := failed == 0 && restarts == cfg.APIs*cfg.Rounds && len(results) > 0
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(e.Out, "R2-rolling %s chats=%d failed=%d answers_by_status=%v api_instances=%d restarts=%d longest_restart=%s rate=%.0f/s wall=%s\n",
		verdict, len(results), failed, codes, cfg.APIs, restarts, longest.Round(time.Millisecond), cfg.Rate, time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}
