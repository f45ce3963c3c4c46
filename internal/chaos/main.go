package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Usage lists the scenarios.
const Usage = `agentd chaos SCENARIO [flags]: start real processes on 127.0.0.1, inject a fault, print a verdict line.

Scenarios:
  r1            worker death: kill -9 a random worker every -kill-every under runs on PostgreSQL
  r2-rolling    rolling restart (SIGTERM, drain, start) of every API instance behind HAProxy under chat load: 0 failed requests
  r2-bluegreen  blue-green switch and rollback (HAProxy map over its admin socket) under chat load: 0 failed requests
  r2b           deploy with runs in flight: runs started on blue keep blue's agent definition when green takes over
  r2-keys       upstream API key rotated twice (routine, compromise) under chat load: 0 failed requests
  r3-redis      Redis stopped for -outage under chat load: 0 5xx, /healthz degraded during, healthy after
  r3-postgres   PostgreSQL restarted under load: fail fast, back soon after, 0 accepted runs lost
  r4            PostgreSQL primary → synchronous standby failover (pg_basebackup, promote) under load, multi-host URL
  disk          SQLite tier: the disk fills up under writes; a corrupt backup given to agentd restore

Flags common to all: -keep (keep the temp dir with every log). See docs/reliability.md.
`

// Main runs one scenario. bin is the agentd binary the child processes
// run (the caller's own executable). It returns an error on a FAIL
// verdict or when the scenario could not run.
func Main(ctx context.Context, args []string, out io.Writer, bin string) error {
	if len(args) == 0 {
		fmt.Fprint(out, Usage)
		return errors.New("chaos: no scenario given")
	}
	name := args[0]
	fs := flag.NewFlagSet("agentd chaos "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	keep := fs.Bool("keep", false, "keep the temp dir (logs, data) after the scenario")
	var run func(context.Context, *Env) error
	switch name {
	case "r1":
		var c R1Config
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR1(ctx, e, c) }
	case "r2-rolling":
		var c R2Config
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR2Rolling(ctx, e, c) }
	case "r2-bluegreen":
		var c R2BlueGreenConfig
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR2BlueGreen(ctx, e, c) }
	case "r2b":
		var c R2bConfig
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR2b(ctx, e, c) }
	case "r2-keys":
		var c R2KeysConfig
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR2Keys(ctx, e, c) }
	case "r3-redis":
		var c R3RedisConfig
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR3Redis(ctx, e, c) }
	case "r3-postgres":
		var c R3PostgresConfig
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR3Postgres(ctx, e, c) }
	case "r4":
		var c R4Config
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunR4(ctx, e, c) }
	case "disk":
		var c DiskConfig
		c.flags(fs)
		run = func(ctx context.Context, e *Env) error { return RunDisk(ctx, e, c) }
	default:
		fmt.Fprint(out, Usage)
		return fmt.Errorf("chaos: unknown scenario %q", name)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	e, err := NewEnv(bin, out, *keep)
	if err != nil {
		return err
	}
	defer e.Close()
	err = run(ctx, e)
	if err != nil && !errors.Is(err, errVerdict) {
		fmt.Fprintf(out, "%s ERROR %v\n", name, err)
		e.Keep = true
	}
	if errors.Is(err, errVerdict) {
		e.Keep = true
	}
	return err
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
