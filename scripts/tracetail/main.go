// Command tracetail explains the latency tail of an agentd instance from a
// Go execution trace (GET /debug/pprof/trace?seconds=N with the admin
// token, taken while a fixed-rate load runs). It finds every HTTP/1.1
// request the trace holds whole (a server connection's goroutine, from
// its wake-up with a request to its next wait for one), sorts them by
// their time in agentd, and prints for the fastest 90 %, the next 9 % and
// the slowest 1%:
//
//   - the mean time running, waiting for the core (runnable), in system
//     calls, and blocked, by where it blocked;
//   - what the core ran meanwhile, by goroutine (its start function);
//   - how many overlapped a GC mark phase;
//
// and then the system calls that took the most time, by call site. The
// slowest 1% against the fastest 90% is the tail's explanation
// (docs/benchmarks.md, round 9).
//
//	go run ./scripts/tracetail trace.out     (from scripts/tracetail: go run . trace.out)
//
// It is a module of its own, so that agentd does not depend on
// golang.org/x/exp.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/exp/trace"
)

type request struct {
	start, end             trace.Time
	run, runnable, syscall trace.Time
	blocked                map[string]trace.Time
}

type goroutine struct {
	label   string // start function
	serving bool   // a server connection's goroutine
	cur     *request
	state   trace.GoState
	since   trace.Time
	reason  string // why it waits: "idle" between requests
	sysKey  string
}

type slice struct {
	label      string
	start, end trace.Time
}

func frames(st trace.Stack) []string {
	var fs []string
	for f := range st.Frames() {
		fs = append(fs, f.Func)
	}
	return fs
}

func has(fs []string, sub string) bool {
	for _, f := range fs {
		if strings.Contains(f, sub) {
			return true
		}
	}
	return false
}

// site names a stack by its first frames outside the runtime and libc.
func site(fs []string, n int) string {
	var out []string
	for _, f := range fs {
		if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/") || strings.HasPrefix(f, "sync.") ||
			strings.HasPrefix(f, "syscall.") || strings.HasPrefix(f, "modernc.org/libc.") {
			continue
		}
		out = append(out, strings.TrimPrefix(f, "modernc.org/sqlite/lib."))
		if len(out) == n {
			break
		}
	}
	return strings.Join(out, " < ")
}

// idle: the connection's goroutine waits for the next request.
func idle(fs []string) bool {
	return has(fs, "net/http.(*conn).readRequest") || has(fs, "bufio.(*Reader).Peek")
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracetail TRACE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gs := map[trace.GoID]*goroutine{}
	var done []*request
	var slices []slice
	var gcStart, gcEnd []trace.Time
	sysTime, sysCount := map[string]trace.Time{}, map[string]int{}
	for {
		ev, err := r.ReadEvent()
		if err != nil {
			break
		}
		switch ev.Kind() {
		case trace.EventRangeBegin:
			if strings.HasPrefix(ev.Range().Name, "GC concurrent mark") {
				gcStart = append(gcStart, ev.Time())
			}
			continue
		case trace.EventRangeEnd:
			if strings.HasPrefix(ev.Range().Name, "GC concurrent mark") {
				gcEnd = append(gcEnd, ev.Time())
			}
			continue
		case trace.EventStateTransition:
		default:
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &goroutine{}
			gs[id] = g
		}
		t := ev.Time()
		fs := frames(st.Stack)
		if g.label == "" && len(fs) > 0 {
			g.label = fs[len(fs)-1]
		}
		if has(fs, "net/http.(*conn).serve") {
			g.serving = true
		}
		if g.state == trace.GoRunning && g.since != 0 {
			slices = append(slices, slice{g.label, g.since, t})
		}
		if g.state == trace.GoSyscall && g.since != 0 && !strings.HasPrefix(g.sysKey, "os/signal.") {
			sysTime[g.sysKey] += t - g.since
			sysCount[g.sysKey]++
		}
		if c := g.cur; c != nil && g.since != 0 {
			d := t - g.since
			switch g.state {
			case trace.GoRunning:
				c.run += d
			case trace.GoRunnable:
				c.runnable += d
			case trace.GoSyscall:
				c.syscall += d
			case trace.GoWaiting:
				c.blocked[g.reason] += d
			}
		}
		if g.serving && to == trace.GoWaiting && idle(fs) && g.cur != nil {
			// A request whose start was missed (it began before the trace,
			// or its wait for a request was not seen) spans an idle wait.
			if g.cur.blocked["idle"] == 0 {
				g.cur.end = t
				done = append(done, g.cur)
			}
			g.cur = nil
		}
		if g.serving && from == trace.GoWaiting && g.state == trace.GoWaiting && g.reason == "idle" && g.cur == nil {
			g.cur = &request{start: t, blocked: map[string]trace.Time{}}
		}
		g.state, g.since = to, t
		switch to {
		case trace.GoWaiting:
			if g.serving && idle(fs) {
				g.reason = "idle"
			} else {
				g.reason = st.Reason + " @ " + site(fs, 3)
			}
		case trace.GoSyscall:
			g.sysKey = site(fs, 4)
		}
	}
	if len(done) < 100 {
		fmt.Fprintf(os.Stderr, "tracetail: %d whole requests in the trace; want 100 or more\n", len(done))
		os.Exit(1)
	}
	sort.Slice(done, func(i, j int) bool { return done[i].end-done[i].start < done[j].end-done[j].start })
	sort.Slice(slices, func(i, j int) bool { return slices[i].start < slices[j].start })
	n := len(done)
	at := func(p float64) float64 {
		q := done[int(p*float64(n-1))]
		return float64(q.end-q.start) / 1e3
	}
	fmt.Printf("%d requests; time in agentd (µs): p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n",
		n, at(.5), at(.9), at(.99), at(.999), at(1))
	for _, part := range []struct {
		name   string
		lo, hi int
	}{{"fastest 90%", 0, n * 90 / 100}, {"90-99%", n * 90 / 100, n * 99 / 100}, {"slowest 1%", n * 99 / 100, n}} {
		reqs := done[part.lo:part.hi]
		c := trace.Time(len(reqs))
		var tot, run, rn, sc trace.Time
		blocked, ran := map[string]trace.Time{}, map[string]trace.Time{}
		gc := 0
		for _, q := range reqs {
			tot += q.end - q.start
			run += q.run
			rn += q.runnable
			sc += q.syscall
			for k, v := range q.blocked {
				blocked[k] += v
			}
			for i := range gcStart {
				if i < len(gcEnd) && q.start < gcEnd[i] && q.end > gcStart[i] {
					gc++
					break
				}
			}
			// What the core ran meanwhile (every goroutine, the request's too).
			i := sort.Search(len(slices), func(i int) bool { return slices[i].end > q.start })
			for ; i < len(slices) && slices[i].start < q.end; i++ {
				s := slices[i]
				ran[s.label] += min(s.end, q.end) - max(s.start, q.start)
			}
		}
		fmt.Printf("\n== %s (%d requests): mean %d µs: running %d, runnable %d, in system calls %d; %d%% overlap a GC mark phase\n",
			part.name, c, tot/c/1e3, run/c/1e3, rn/c/1e3, sc/c/1e3, gc*100/len(reqs))
		top(blocked, c, 5, "   blocked %6d µs  %s\n")
		top(ran, c, 8, "   core ran %5d µs  %s\n")
	}
	fmt.Println("\n== system calls by call site (whole trace)")
	for i, kv := range sorted(sysTime) {
		if i == 8 {
			break
		}
		fmt.Printf("   %8.1f ms  n=%-7d %s\n", float64(kv.v)/1e6, sysCount[kv.k], kv.k)
	}
}

type kv struct {
	k string
	v trace.Time
}

func sorted(m map[string]trace.Time) []kv {
	var out []kv
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].v > out[j].v })
	return out
}

// top prints the n largest of m, per request (c requests).
func top(m map[string]trace.Time, c trace.Time, n int, format string) {
	for i, e := range sorted(m) {
		if i == n || e.v/c/1e3 == 0 {
			break
		}
		fmt.Printf(format, e.v/c/1e3, e.k)
	}
}
