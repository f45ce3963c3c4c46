package admission

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the memory guard.
const (
	DefaultHighWater = 0.85
	DefaultLowWater  = 0.75
)

// MemoryGuard sheds new work when the process's Go memory passes HighWater
// of its limit and takes it again below LowWater (hysteresis, so it does not
// flap). The limit is the smaller of GOMEMLIMIT and the cgroup's
// memory.max; with neither, the guard never sheds.
//
// The reading counts garbage the collector has not freed yet and free heap
// it has not returned to the OS. An idle process (and a shedding one is
// nearly idle) allocates too little to start a collection, so that memory
// would keep it shedding for minutes (until the forced GC every 2 minutes)
// after the work that used it finished. So before a reading may start
// shedding or keep it on, the guard collects (GC, memory returned to the
// OS) and reads again, at most once per CollectEvery: it sheds on memory in
// use, not on garbage.
type MemoryGuard struct {
	HighWater float64
	LowWater  float64
	// Limit overrides the detected limit (tests); 0: detect.
	Limit uint64
	// Read overrides how memory in use is read (tests); nil: runtime
	// metrics (all memory mapped by the Go runtime minus what it released).
	Read func() uint64
	// Collect frees garbage and returns free memory to the OS before a
	// reading that would shed; nil: debug.FreeOSMemory, unless Read is set
	// (then none).
	Collect func()
	// CollectEvery is the least time between two collections; 0: 500ms
	// (with Run's interval of 1s: at most one per sample). It doubles with
	// every collection in a row that leaves memory above the mark, up to
	// 30s.
	CollectEvery time.Duration

	lastCollect atomic.Int64 // unix nanoseconds
	// collectMisses counts collections in a row that left memory above
	// the mark.
	collectMisses atomic.Int64
	once          sync.Once
	limit         atomic.Uint64
	used          atomic.Uint64
	shedding      atomic.Bool
}

// Run detects the limit and samples every interval until ctx ends.
func (g *MemoryGuard) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		g.Sample()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// maxCollectEvery bounds the back-off between forced collections.
const maxCollectEvery = 30 * time.Second

func (g *MemoryGuard) init() {
	g.once.Do(g.setup)
}

func (g *MemoryGuard) setup() {
	if g.HighWater <= 0 {
		g.HighWater = DefaultHighWater
	}
	if g.LowWater <= 0 || g.LowWater >= g.HighWater {
		g.LowWater = g.HighWater - 0.1
	}
	l := g.Limit
	if l == 0 {
		l = DetectLimit()
	}
	g.limit.Store(l)
}

// Sample reads memory in use once and updates the shedding state.
func (g *MemoryGuard) Sample() {
	g.init()
	read := g.Read
	if read == nil {
		read = goMemory
	}
	used := read()
	limit := g.limit.Load()
	if limit == 0 {
		g.used.Store(used)
		g.shedding.Store(false)
		return
	}
	ratio := float64(used) / float64(limit)
	if g.wouldShed(ratio) {
		if collect := g.collector(); collect != nil {
			every := g.CollectEvery
			if every <= 0 {
				every = 500 * time.Millisecond
			}
			// A collection that did not bring memory below the mark
			// doubles the wait before the next one (up to
			// maxCollectEvery): memory really in use must not cost a full
			// GC every sample.
			every <<= min(g.collectMisses.Load(), 6)
			every = min(every, maxCollectEvery)
			now := time.Now().UnixNano()
			if last := g.lastCollect.Load(); now-last >= int64(every) && g.lastCollect.CompareAndSwap(last, now) {
				collect()
				used = read()
				ratio = float64(used) / float64(limit)
				if g.wouldShed(ratio) {
					g.collectMisses.Add(1)
				} else {
					g.collectMisses.Store(0)
				}
			}
		}
	} else {
		g.collectMisses.Store(0)
	}
	g.used.Store(used)
	switch {
	case ratio >= g.HighWater:
		g.shedding.Store(true)
	case ratio < g.LowWater:
		g.shedding.Store(false)
	}
}

// wouldShed reports whether a reading of ratio starts shedding or keeps it on.
func (g *MemoryGuard) wouldShed(ratio float64) bool {
	if g.shedding.Load() {
		return ratio >= g.LowWater
	}
	return ratio >= g.HighWater
}

func (g *MemoryGuard) collector() func() {
	switch {
	case g.Collect != nil:
		return g.Collect
	case g.Read == nil:
		return debug.FreeOSMemory
	}
	return nil
}

// Shedding reports whether new work is refused.
func (g *MemoryGuard) Shedding() bool { return g != nil && g.shedding.Load() }

// Usage returns the last sample and the limit (0: none).
func (g *MemoryGuard) Usage() (used, limit uint64) { return g.used.Load(), g.limit.Load() }

// Gate is a Limiter gate refusing work while shedding.
func (g *MemoryGuard) Gate() *Rejected {
	if g.Shedding() {
		return &Rejected{Reason: ReasonMemory, RetryAfter: 5 * time.Second}
	}
	return nil
}

var memSamples = []metrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

func goMemory() uint64 {
	s := make([]metrics.Sample, len(memSamples))
	copy(s, memSamples)
	metrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// DetectLimit returns min(GOMEMLIMIT, cgroup memory.max), 0 if neither.
func DetectLimit() uint64 {
	var limit uint64
	if l := debug.SetMemoryLimit(-1); l > 0 && l != math.MaxInt64 {
		limit = uint64(l)
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(raw))
		if v == "max" {
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		// cgroup v1 reports "no limit" as a huge number.
		if err != nil || n == 0 || n >= 1<<60 {
			break
		}
		if limit == 0 || n < limit {
			limit = n
		}
		break
	}
	return limit
}
