package chaos

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// R2BlueGreenConfig is the blue-green scenario (the third part of R2).
type R2BlueGreenConfig struct {
	APIs    int
	Workers int
	Rate    float64
	Latency time.Duration
	Warmup  time.Duration
	Hold    time.Duration
}

func (c *R2BlueGreenConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.APIs, "apis", 2, "API instances per color")
	fs.IntVar(&c.Workers, "workers", 1, "workers per color")
	fs.Float64Var(&c.Rate, "rate", 100, "chats per second")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "the simulated model's latency")
	fs.DurationVar(&c.Warmup, "warmup", 5*time.Second, "load on blue before the switch")
	fs.DurationVar(&c.Hold, "hold", 10*time.Second, "load on green before the rollback, and on blue after it")
}

// The two colors' system prompts: each chat's model call shows at the sim
// which color served it.
const (
	systemBlue  = "Use the tools when they help. (release blue)"
	systemGreen = "Use the tools when they help; be brief. (release green)"
)

// RunR2BlueGreen is the blue-green switch and its rollback under chat
// load through HAProxy. Blue and green are each API instances and workers
// of their own config (another system prompt) on one store; HAProxy has a
// backend per color and picks the live one per request from a map the
// kit sets over the admin socket (docs/runbooks/blue-green.md does the
// same by hand). Blue is live; green starts beside it and is seen UP by
// HAProxy; the traffic goes to green; after -hold back to blue (the
// rollback); then green is retired (SIGTERM). Verdict: 0 failed client
// requests, no request sent after a switch answered by the old color, and
// every chat's model call carried the system prompt of the color that
// answered it.
func RunR2BlueGreen(ctx context.Context, e *Env, cfg R2BlueGreenConfig) error {
	t0 := time.Now()
	pg, err := e.StartPostgres(ctx)
	if err != nil {
		return err
	}
	sim, err := e.StartSim(ctx, cfg.Latency)
	if err != nil {
		return err
	}
	tools, err := e.StartToolServer()
	if err != nil {
		return err
	}
	blue, err := e.newColor("blue", systemBlue, pg.URL(), sim.Base(), tools.URL, cfg.APIs, cfg.Workers)
	if err != nil {
		return err
	}
	green, err := e.newColor("green", systemGreen, pg.URL(), sim.Base(), tools.URL, cfg.APIs, cfg.Workers)
	if err != nil {
		return err
	}
	lb, err := e.blueLive(ctx, blue, green)
	if err != nil {
		return err
	}
	e.Logf("R2-bluegreen: blue live (%d API, %d worker) behind HAProxy :%d in %s", cfg.APIs, cfg.Workers, lb.Port, time.Since(t0).Round(time.Millisecond))
	l := startLoad(lb.Base(), cfg.Rate, false)
	loadStart := time.Now()

	// Green starts beside blue under load, and HAProxy sees it UP.
	gs := time.Now()
	if err := green.start(ctx); err != nil {
		return err
	}
	if err := lb.waitUp(ctx, green, 30*time.Second); err != nil {
		return err
	}
	e.Logf("R2-bluegreen: green started and UP in HAProxy in %s", time.Since(gs).Round(time.Millisecond))
	if err := sleep(ctx, max(0, cfg.Warmup-time.Since(loadStart))); err != nil {
		return err
	}
	var switches []colorSwitch
	for _, to := range []string{"green", "blue"} {
		from := "blue"
		if to == "blue" {
			from = "green"
		}
		took, err := lb.Switch(ctx, to)
		if err != nil {
			return err
		}
		at := time.Now()
		live, err := lb.Live(ctx)
		if err != nil {
			return err
		}
		if live != to {
			return fmt.Errorf("HAProxy's live color is %q after the switch to %s", live, to)
		}
		switches = append(switches, colorSwitch{from: from, to: to, at: at, took: took})
		e.Logf("R2-bluegreen: switched %s → %s (set map: %s)", from, to, took.Round(time.Microsecond))
		if err := sleep(ctx, cfg.Hold); err != nil {
			return err
		}
	}
	// Green retired: SIGTERM to its instances, while the load goes on.
	rs := time.Now()
	green.stop()
	retired := time.Since(rs)
	e.Logf("R2-bluegreen: green retired (SIGTERM, drained, exited) in %s", retired.Round(time.Millisecond))
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	results := l.Stop()
	loadTime := time.Since(loadStart)

	systems, err := simSystems(sim)
	if err != nil {
		return err
	}
	failed, mismatched, unseen := 0, 0, 0
	codes := map[int]int{}
	byColor := map[string]int{}
	want := map[string]string{"blue": systemBlue, "green": systemGreen}
	for _, r := range results {
		codes[r.status]++
		if r.status != http.StatusOK {
			failed++
			if failed <= 3 {
				e.Logf("R2-bluegreen: failed: %d %s", r.status, r.err)
			}
			continue
		}
		c := colorOf(r.server)
		byColor[c]++
		got := systems[chatMessage(r.n)]
		switch {
		case len(got) == 0:
			unseen++
		case len(got) != 1 || got[want[c]] == 0:
			mismatched++
			if mismatched <= 3 {
				e.Logf("R2-bluegreen: chat %d answered by %s carried system prompts %v", r.n, r.server, got)
			}
		}
	}
	ok := failed == 0 && mismatched == 0 && unseen == 0 && len(results) > 0
	var sw []string
	for i, s := range switches {
		until := time.Now()
		if i+1 < len(switches) {
			until = switches[i+1].at
		}
		f := switchFiguresOf(results, s, until)
		// A request sent within switchGrace of the switch may still
		// reach the old color (an answer, not a failure); one sent later
		// must not.
		ok = ok && f.toNew > 0 && f.toOld+f.toNew == f.sentAfter && f.oldLag <= switchGrace
		sw = append(sw, fmt.Sprintf("%s→%s: set_map=%s sent_after=%d to_%s=%d to_%s=%d (latest sent +%s) %s_in_flight=%d last_%s_answer=+%s",
			s.from, s.to, s.took.Round(time.Microsecond), f.sentAfter, s.to, f.toNew, s.from, f.toOld, f.oldLag.Round(time.Microsecond),
			s.from, f.inFlightOld, s.from, f.lastOld.Round(time.Millisecond)))
	}
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(e.Out, "R2-bluegreen %s chats=%d failed=%d answers_by_status=%v answers_by_color=%v [%s] system_prompt_mismatches=%d chats_unseen_upstream=%d "+
		"green_retired_in=%s api_instances_per_color=%d rate=%.0f/s (achieved %.1f/s) wall=%s\n",
		verdict, len(results), failed, codes, byColor, strings.Join(sw, "; "), mismatched, unseen,
		retired.Round(time.Millisecond), cfg.APIs, cfg.Rate, float64(len(results))/loadTime.Seconds(), time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}

// switchGrace is how long after the runtime command returned a request
// may still be answered by the old color: HAProxy applies `set map` at
// once, but the client's clock and HAProxy's choice of backend are not
// one instant (seen once at 100 chats/s: 1 of 1,001 requests sent after
// the command returned was answered by blue). Either color answers such a
// request correctly; the verdict fails on an old-color answer to a
// request sent later than this.
const switchGrace = 50 * time.Millisecond

// colorSwitch is one switch of the live color.
type colorSwitch struct {
	from, to string
	at       time.Time // when the runtime command had returned
	took     time.Duration
}

// switchFigures is what the client saw of a switch.
type switchFigures struct {
	sentAfter   int           // requests sent after the switch (and before the next one)
	toNew       int           // of those, answered by the new color
	toOld       int           // of those, answered by the old color
	oldLag      time.Duration // the latest of those was sent this long after the switch
	inFlightOld int           // requests sent before the switch answered by the old color after it
	lastOld     time.Duration // the old color's last answer, after the switch
}

// switchFiguresOf places each answer against the switch s; until bounds
// the requests counted as sent after it (the next switch).
func switchFiguresOf(results []result, s colorSwitch, until time.Time) switchFigures {
	var f switchFigures
	for _, r := range results {
		c := colorOf(r.server)
		if r.start.After(s.at) && r.start.Before(until) {
			f.sentAfter++
			switch c {
			case s.to:
				f.toNew++
			case s.from:
				f.toOld++
				f.oldLag = max(f.oldLag, r.start.Sub(s.at))
			}
			continue
		}
		if r.start.Before(s.at) && r.at.After(s.at) && c == s.from {
			f.inFlightOld++
			f.lastOld = max(f.lastOld, r.at.Sub(s.at))
		}
	}
	return f
}

// colorOf is the color (HAProxy backend) of an X-Agentd-Server header
// "backend/server"; "" when there is none.
func colorOf(server string) string {
	b, _, _ := strings.Cut(server, "/")
	return b
}
