package chaos

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"
)

// R3PostgresConfig is the PostgreSQL restart scenario.
type R3PostgresConfig struct {
	Rate    float64
	Before  time.Duration
	Down    time.Duration
	After   time.Duration
	Latency time.Duration
}

func (c *R3PostgresConfig) flags(fs *flag.FlagSet) {
	fs.Float64Var(&c.Rate, "rate", 20, "runs submitted per second")
	fs.DurationVar(&c.Before, "before", 5*time.Second, "load before the restart")
	fs.DurationVar(&c.Down, "down", 5*time.Second, "how long PostgreSQL stays stopped")
	fs.DurationVar(&c.After, "after", 10*time.Second, "load after PostgreSQL is back")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "the simulated model's latency")
}

// RunR3Postgres stops PostgreSQL (fast shutdown: connections cut) under a
// load of run submissions, starts it again after Down, and checks: every
// answer during the outage that is not a 202 is a 503 within 1 s (fail fast), submissions
// succeed again within 5 s of PostgreSQL being back, and every run
// accepted (202) before, during or after ends succeeded.
func RunR3Postgres(ctx context.Context, e *Env, cfg R3PostgresConfig) error {
	t0 := time.Now()
	c, err := e.startCluster(ctx, 1, cfg.Latency, "")
	if err != nil {
		return err
	}
	e.Logf("R3-postgres: cluster up in %s (PostgreSQL :%d, HAProxy :%d)", time.Since(t0).Round(time.Millisecond), c.pg.Port, c.lb.Port)
	l := startLoad(c.lb.Base(), cfg.Rate, true)
	if err := sleep(ctx, cfg.Before); err != nil {
		return err
	}
	down := time.Now()
	if err := c.pg.Stop(ctx); err != nil {
		return err
	}
	e.Logf("R3-postgres: PostgreSQL stopped")
	if err := sleep(ctx, cfg.Down); err != nil {
		return err
	}
	if err := c.pg.Start(ctx); err != nil {
		return err
	}
	up := time.Now()
	e.Logf("R3-postgres: PostgreSQL started again")
	if err := sleep(ctx, cfg.After); err != nil {
		return err
	}
	results := l.Stop()
	line, ok := storeOutageVerdict(ctx, e, "R3-postgres", c, results, down, up, 5*time.Second)
	fmt.Fprintf(e.Out, "R3-postgres %s down=%s wall=%s\n", line, cfg.Down, time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}

// storeOutageVerdict judges a store outage from down to up under a load
// of run submissions: every refusal sent during it is a 503 within 1 s,
// every submission is accepted again within backLimit of up (the last
// refusal, through the load balancer, is answered by then), and every
// accepted run ends succeeded. It returns the verdict line's body.
func storeOutageVerdict(ctx context.Context, e *Env, name string, c *cluster, results []result, down, up time.Time, backLimit time.Duration) (string, bool) {

	var accepted []string
	var total, duringN, slowFail, not503 int
	// steadyAfter: from up to the answer of the last refusal sent after
	// up (a load balancer may go on refusing until its health checks see
	// the instance ready again); 0 when none was refused after up.
	var steadyAfter time.Duration
	var maxFailLatency time.Duration
	backAfter := time.Duration(-1)
	codes := map[int]int{}
	for _, r := range results {
		total++
		codes[r.status]++
		if r.status == http.StatusAccepted {
			accepted = append(accepted, r.runID)
		}
		sent := r.at.Add(-r.latency)
		if sent.After(down) && sent.Before(up) {
			duringN++
			if r.status != http.StatusAccepted {
				maxFailLatency = max(maxFailLatency, r.latency)
				if r.latency > time.Second {
					slowFail++
				}
				if r.status != http.StatusServiceUnavailable {
					not503++
					if not503 <= 3 {
						e.Logf(name+": during the outage: %d %s", r.status, r.err)
					}
				}
			}
		}
		if sent.After(up) && r.status == http.StatusAccepted && (backAfter < 0 || r.at.Sub(up) < backAfter) {
			backAfter = r.at.Sub(up)
		}
		if sent.After(up) && r.status != http.StatusAccepted {
			steadyAfter = max(steadyAfter, r.at.Sub(up))
		}
	}
	// Every accepted run ends succeeded.
	deadline := time.Now().Add(2 * time.Minute)
	var lost, failed, pending int
	for {
		runs, err := allRuns(ctx, c.lb.Base())
		lost, failed, pending = 0, 0, 0
		if err == nil {
			for _, id := range accepted {
				r, ok := runs[id]
				switch {
				case !ok:
					lost++
				case !r.terminal():
					pending++
				case r.Status != "succeeded":
					failed++
					if failed <= 3 {
						e.Logf(name+": run %s %s: %s", id, r.Status, r.Error)
					}
				}
			}
			if pending == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	ok := lost == 0 && failed == 0 && pending == 0 && slowFail == 0 && not503 == 0 && backAfter >= 0 && steadyAfter <= backLimit
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	return fmt.Sprintf("%s submits=%d answers_by_status=%v during_outage=%d refused_not_503=%d failed_slower_than_1s=%d max_fail_latency=%s "+
		"first_accepted_after_up=%s every_submission_accepted_after_up=%s (limit %s) accepted=%d lost=%d failed=%d still_pending=%d",
		verdict, total, codes, duringN, not503, slowFail, maxFailLatency.Round(time.Millisecond), backAfter.Round(time.Millisecond), steadyAfter.Round(time.Millisecond), backLimit,
		len(accepted), lost, failed, pending), ok
}
