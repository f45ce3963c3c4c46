//go:build stackdiag

// The stackdiag build (scripts/stackdiag/build.sh) reports goroutine stacks
// per kind of goroutine, to find which code path sets a held chat's stack
// size. It needs runtime.AgentdStackStats, which only that script's runtime
// overlay provides.

package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func init() {
	path := os.Getenv("AGENTD_STACKDIAG")
	if path == "" {
		return
	}
	go func() {
		for range time.Tick(time.Second) {
			type kind struct {
				name                    string
				goroutines, bytes, used int
			}
			var kinds []kind
			for name, v := range runtime.AgentdStackStats() {
				kinds = append(kinds, kind{name, v[0], v[1], v[2]})
			}
			slices.SortFunc(kinds, func(a, b kind) int { return b.bytes - a.bytes })
			var sb strings.Builder
			for _, k := range kinds {
				fmt.Fprintf(&sb, "%7d goroutines %9d KB %7d B avg %7d B used avg  %s\n", k.goroutines, k.bytes>>10, k.bytes/k.goroutines, k.used/k.goroutines, k.name)
			}
			// The frames of one waiting goroutine of each of the three
			// largest kinds: where their depth comes from.
			for _, k := range kinds[:min(3, len(kinds))] {
				fmt.Fprintf(&sb, "\nframes of one waiting %s (bytes, innermost first):\n", k.name)
				for _, f := range runtime.AgentdFrames(k.name) {
					fmt.Fprintf(&sb, "  %s\n", f)
				}
			}
			_ = os.WriteFile(path, []byte(sb.String()), 0o644)
		}
	}()
}
