package run

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A hosted program runs under a supervisor: the agentd binary itself,
// started with supervisorArg. The supervisor leads the program's process
// group, applies the memory limit to itself before it starts the program
// (so the program is limited from its first instruction), and asks the
// kernel for SIGTERM when agentd dies (PR_SET_PDEATHSIG), upon which it
// kills the whole group: the program and whatever the program started
// (the Claude Code process the Agent SDK spawns), which the kernel would
// otherwise leave running.
//
// Only binaries that call Supervise when IsSupervisor is true can be
// supervisors: cmd/agentd does, and so do the tests that run programs; a
// program embedding agentd (docs/embedding.md) that does not call
// EnableSupervisor runs programs directly, without that protection.

const supervisorArg = "__agentd_program_supervisor"

// supervisorExe is the binary started as supervisor; "" runs programs
// directly.
var supervisorExe string

// EnableSupervisor makes hosted programs run under a supervisor: this
// executable, which must call Supervise at start when IsSupervisor.
func EnableSupervisor() {
	if exe, err := os.Executable(); err == nil {
		supervisorExe = exe
	}
}

// IsSupervisor reports whether this process was started as a program
// supervisor.
func IsSupervisor() bool { return len(os.Args) > 1 && os.Args[1] == supervisorArg }

// supervisedCommand is the argv starting command under the supervisor.
func supervisedCommand(command []string, memoryMax int64, runID string) []string {
	return append([]string{supervisorExe, supervisorArg, strconv.FormatInt(memoryMax, 10), runID, "--"}, command...)
}

// Supervise runs the program os.Args name ([exe, supervisorArg, memoryMax,
// runID, "--", command...]) and returns the exit code for os.Exit; a
// program killed by a signal is reported by dying of the same signal.
func Supervise() int {
	args := os.Args
	if len(args) < 6 || args[4] != "--" {
		fmt.Fprintln(os.Stderr, "agentd supervisor: usage: agentd", supervisorArg, "MEMORY_MAX RUN_ID -- COMMAND...")
		return 2
	}
	parent := os.Getppid()
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0)
	if os.Getppid() != parent {
		return 1 // agentd died before the request took effect
	}
	// Lead a process group of its own (agentd starts it so; made sure
	// here), so that killing the group never reaches anything else.
	_ = syscall.Setpgid(0, 0)
	if mem, _ := strconv.ParseInt(args[2], 10, 64); mem > 0 {
		if l := limitMemory(os.Getpid(), mem, args[3]); l.How == "" {
			fmt.Fprintln(os.Stderr, "agentd supervisor: memory_max could not be applied (no writable cgroup v2, prlimit failed)")
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	cmd := exec.Command(args[5], args[6:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "agentd supervisor: start %q: %v\n", args[5], err)
		return 127
	}
	go func() {
		for range sigs {
			if os.Getppid() != parent {
				// agentd is gone: nothing will stop the group but us.
				_ = syscall.Kill(-os.Getpid(), syscall.SIGKILL)
			}
			// Otherwise agentd signalled the whole group (cancel,
			// timeout): the program got it too and has kill_grace.
		}
	}()
	// What the program leaves behind is agentd's to kill, after this
	// process has reported the program's exit.
	err := cmd.Wait()
	return exitCode(cmd.ProcessState, err)
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		signal.Reset(ws.Signal())
		_ = syscall.Kill(os.Getpid(), ws.Signal())
		return 128 + int(ws.Signal())
	}
	if err != nil && ps.ExitCode() < 0 {
		return 1
	}
	return ps.ExitCode()
}
