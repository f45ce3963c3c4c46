package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// How a program's memory is limited (agents[].runtime.memory_max):
//
//   - cgroup v2, when agentd's own cgroup directory is writable (agentd
//     runs with cgroup delegation, e.g. a systemd unit with Delegate=yes or
//     a container with a writable cgroup namespace): the program moves to a
//     child cgroup agentd-run-<id> with memory.max set; the kernel OOM-kills
//     it past the limit. The cgroup is removed after the program exits.
//   - otherwise RLIMIT_AS (prlimit on the started child): a cap on address
//     space, not resident memory. Runtimes such as Node and Bun reserve
//     large virtual ranges, so memory_max must be set well above what the
//     program uses, and a program over it fails allocations rather than
//     being killed.
//
// The limit is applied right after the child starts: what it allocates in
// the first instants is not limited.

// memoryLimit is a limit applied to one program.
type memoryLimit struct {
	How    string // "cgroup", "rlimit" or "" (none)
	cgroup string // the cgroup directory to remove
}

func (m memoryLimit) release() {
	if m.cgroup != "" {
		_ = os.Remove(m.cgroup) // empty once the program and its children are gone
	}
}

// limitMemory limits the memory of process pid to max bytes (0: no limit).
func limitMemory(pid int, max int64, runID string) memoryLimit {
	if max <= 0 {
		return memoryLimit{}
	}
	if dir, ok := cgroupFor(pid, max, runID); ok {
		return memoryLimit{How: "cgroup", cgroup: dir}
	}
	lim := &unix.Rlimit{Cur: uint64(max), Max: uint64(max)}
	if err := unix.Prlimit(pid, unix.RLIMIT_AS, lim, nil); err != nil {
		return memoryLimit{}
	}
	return memoryLimit{How: "rlimit"}
}

// cgroupDir is the cgroup limitMemory makes for pid of run runID, if
// cgroup v2 is mounted; it may not exist.
func cgroupDir(runID string, pid int) (string, bool) {
	self, ok := selfCgroup()
	if !ok {
		return "", false
	}
	return filepath.Join("/sys/fs/cgroup", self, "agentd-run-"+sanitize(runID)+"-"+strconv.Itoa(pid)), true
}

// selfCgroup is this process's cgroup v2 path, when /sys/fs/cgroup is a
// cgroup2 mount.
func selfCgroup() (string, bool) {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false
	}
	var self string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			self = rest
		}
	}
	if self == "" {
		return "", false // cgroup v1
	}
	var fs unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &fs) != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", false // not a cgroup v2 mount (v1 or hybrid: a tmpfs)
	}
	return self, true
}

// cgroupFor moves pid into a new child of agentd's cgroup (v2) with
// memory.max set, when that is possible.
func cgroupFor(pid int, max int64, runID string) (string, bool) {
	dir, ok := cgroupDir(runID, pid)
	if !ok {
		return "", false
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", false
	}
	ok = writeExisting(filepath.Join(dir, "memory.max"), strconv.FormatInt(max, 10)) == nil &&
		writeExisting(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)) == nil
	if !ok {
		_ = os.Remove(dir)
		return "", false
	}
	return dir, true
}

// writeExisting writes s to the existing file path (a cgroup's interface
// file; never created).
func writeExisting(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, fmt.Sprint(s))
}
