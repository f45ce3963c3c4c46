// This file is not part of agentd's build: scripts/stackdiag/build.sh adds
// it to the Go runtime with `go build -overlay`, for a diagnostic binary
// (see cmd/agentd/stackdiag.go and docs/benchmarks.md, memory per chat).

package runtime

// AgentdStackStats returns, per goroutine start function, the number of
// goroutines and the bytes of their stacks. The stack bounds of running
// goroutines are read without stopping them: a diagnostic, not an exact
// accounting.
func AgentdStackStats() map[string][2]int {
	out := map[string][2]int{}
	forEachG(func(gp *g) {
		name := "?"
		if f := findfunc(gp.startpc); f.valid() {
			name = funcname(f)
		}
		v := out[name]
		v[0]++
		v[1] += int(gp.stack.hi - gp.stack.lo)
		out[name] = v
	})
	return out
}
