package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProgramSupervisorEntry: the agentd binary serves as the supervisor
// of hosted agent programs (internal/run/program_supervise.go): it runs the
// command with stdin and stdout passed through and exits with its status.
func TestProgramSupervisorEntry(t *testing.T) {
	t.Parallel()
	bin := buildAgentd(t, t.TempDir())
	cmd := exec.Command(bin, "__agentd_program_supervisor", "0", "run_x", "--", "sh", "-c", `cat; echo " out"; echo err >&2; exit 3`)
	cmd.Stdin = strings.NewReader("in")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.Equal(t, 3, ee.ExitCode())
	require.Equal(t, "in out\n", stdout.String())
	require.Equal(t, "err\n", stderr.String())
}
