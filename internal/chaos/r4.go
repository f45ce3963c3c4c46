package chaos

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// R4Config is the PostgreSQL failover scenario.
type R4Config struct {
	Rate    float64
	Before  time.Duration
	Gap     time.Duration
	After   time.Duration
	Latency time.Duration
}

func (c *R4Config) flags(fs *flag.FlagSet) {
	fs.Float64Var(&c.Rate, "rate", 20, "runs submitted per second")
	fs.DurationVar(&c.Before, "before", 5*time.Second, "load before the primary dies")
	fs.DurationVar(&c.Gap, "gap", 2*time.Second, "from the primary's death to the promotion (detection time of a real failover manager)")
	fs.DurationVar(&c.After, "after", 15*time.Second, "load after the promotion")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "the simulated model's latency")
}

// RunR4 is R4: a primary with a synchronous streaming standby (made with
// pg_basebackup); agentd's store URL names both hosts with
// target_session_attrs=read-write. Under a load of run submissions the
// primary is stopped at once (immediate: as a crash) and the standby
// promoted after Gap. Every refusal is a fast 503, submissions are
// accepted again within 10 s of the promotion, and no acknowledged run is
// lost (synchronous replication: an acknowledged commit is on the standby).
// docs/runbooks/postgres-failover.md follows these steps.
func RunR4(ctx context.Context, e *Env, cfg R4Config) error {
	t0 := time.Now()
	primary, err := e.startPostgres(ctx, "pg-primary", "fsync = off\nwal_level = replica\nmax_wal_senders = 5\n"+
		"synchronous_standby_names = 'standby1'\nsynchronous_commit = on\nwal_keep_size = 128MB\nhot_standby = on\n")
	if err != nil {
		return err
	}
	standby, err := primary.Standby(ctx, "pg-standby", "standby1")
	if err != nil {
		return err
	}
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=2",
		primary.Port, standby.Port)
	c := &cluster{pg: primary}
	if err := e.startApps(ctx, c, url, 1, 1, cfg.Latency, ""); err != nil {
		return err
	}
	e.Logf("R4: primary :%d, synchronous standby :%d, HAProxy :%d, up in %s", primary.Port, standby.Port, c.lb.Port, time.Since(t0).Round(time.Millisecond))
	// The standby must be synchronous before the crash, or "0 lost"
	// proves nothing.
	var state string
	for deadline := time.Now().Add(30 * time.Second); ; {
		state, err = primary.Query(ctx, "SELECT application_name || ':' || sync_state FROM pg_stat_replication")
		if err == nil && state == "standby1:sync" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("R4: the standby is not a synchronous replica (pg_stat_replication: %q, %v)", state, err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	l := startLoad(c.lb.Base(), cfg.Rate, true)
	if err := sleep(ctx, cfg.Before); err != nil {
		return err
	}
	down := time.Now()
	if err := primary.Crash(ctx); err != nil {
		return err
	}
	e.Logf("R4: primary stopped (immediate)")
	if err := sleep(ctx, cfg.Gap); err != nil {
		return err
	}
	if err := standby.Promote(ctx); err != nil {
		return err
	}
	promoted := time.Now()
	e.Logf("R4: standby promoted %s after the primary died", promoted.Sub(down).Round(time.Millisecond))
	if err := sleep(ctx, cfg.After); err != nil {
		return err
	}
	results := l.Stop()
	line, ok := storeOutageVerdict(ctx, e, "R4", c, results, down, promoted, 10*time.Second)
	fmt.Fprintf(e.Out, "R4 %s replication=%s gap=%s wall=%s\n", line, state, cfg.Gap, time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}
