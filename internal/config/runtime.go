package config

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes, written as an integer or with a unit: KiB,
// MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000).
type ByteSize int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = n
	return nil
}

// ParseByteSize parses a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: want bytes or a number with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return ByteSize(n * mult), nil
}

// resolveRuntimeDirs makes agents[].runtime.dir absolute: a relative one
// is taken from the configuration file's directory (baseDir).
func (c *Config) resolveRuntimeDirs(baseDir string) {
	for i := range c.Agents {
		rt := c.Agents[i].Runtime
		if rt == nil || rt.Dir == "" || filepath.IsAbs(rt.Dir) {
			continue
		}
		if abs, err := filepath.Abs(filepath.Join(baseDir, rt.Dir)); err == nil {
			rt.Dir = abs
		}
	}
}

func (c *Config) applyRuntimeDefaults() {
	for i := range c.Agents {
		rt := c.Agents[i].Runtime
		if rt == nil {
			continue
		}
		setDefault(&rt.Protocol, RuntimeProtocolSDKStreamJSON)
		setDefault(&rt.MaxConcurrent, DefaultRuntimeMaxConcurrent)
		setDefault(&rt.Timeout, DefaultRuntimeTimeout)
		setDefault(&rt.KillGrace, DefaultRuntimeKillGrace)
	}
}

// validateRuntime checks agents[i].runtime (p is "agents[i]").
func (v *validator) runtime(p string, rt *AgentRuntime) {
	p += ".runtime"
	switch {
	case len(rt.Command) == 0 || strings.TrimSpace(rt.Command[0]) == "":
		v.add(p+".command", "required: the program and its arguments, e.g. [node, app.mjs]")
	default:
		prog := rt.Command[0]
		if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && rt.Dir != "" {
			prog = filepath.Join(rt.Dir, prog) // a relative path is taken from dir
		}
		if _, err := exec.LookPath(prog); err != nil {
			v.add(p+".command[0]", fmt.Sprintf("%q is not an executable file or on PATH", rt.Command[0]))
		}
	}
	if rt.Dir != "" {
		if st, err := os.Stat(rt.Dir); err != nil || !st.IsDir() {
			v.add(p+".dir", fmt.Sprintf("%q is not a directory", rt.Dir))
		}
	}
	v.oneOf(p+".protocol", rt.Protocol, []string{RuntimeProtocolSDKStreamJSON})
	atLeast(v, p+".max_concurrent", rt.MaxConcurrent, 1, "must be > 0")
	v.positive(p+".timeout", rt.Timeout)
	v.positive(p+".kill_grace", rt.KillGrace)
	atLeast(v, p+".memory_max", int64(rt.MemoryMax), 0, "must be >= 0")
	if rt.MemoryMax > 0 && rt.MemoryMax < 16<<20 {
		v.add(p+".memory_max", "must be at least 16MiB (or 0: no limit)")
	}
	for k := range rt.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.add(p+".env", fmt.Sprintf("invalid variable name %q", k))
		}
		if strings.HasPrefix(k, "AGENTD_") || k == "ANTHROPIC_BASE_URL" || k == "ANTHROPIC_API_KEY" || k == "ANTHROPIC_AUTH_TOKEN" {
			v.add(p+".env."+k, "is set by agentd for each run and cannot be configured")
		}
	}
}
