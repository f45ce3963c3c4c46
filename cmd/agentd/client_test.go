package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/cli"
)

// The client commands are dispatched to internal/cli (which has their
// tests against a real server) and listed in the help.
func TestClientCommandsDispatch(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	for _, args := range [][]string{{"usage"}, {"runs", "list"}, {"runs", "get", "run_x"}} {
		var out, errOut bytes.Buffer
		err := run(t.Context(), args, &out, &errOut, []string{"AGENTD_URL=" + dead})
		var ue *cli.UnreachableError
		require.ErrorAs(t, err, &ue, args)
	}
	var out, errOut bytes.Buffer
	require.ErrorIs(t, run(t.Context(), []string{"runs", "bogus"}, &out, &errOut, nil), cli.ErrUsage)
	require.NoError(t, run(t.Context(), []string{"help"}, &out, &errOut, nil))
	require.Contains(t, out.String(), "agentd chat  [-c CONV] AGENT")
	require.Contains(t, out.String(), "AGENTD_API_KEY")
}

// The binary exits 1 with the error on stderr.
func TestClientCommandExitStatus(t *testing.T) {
	t.Parallel()
	bin := buildAgentd(t, t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	cmd := exec.Command(bin, "runs", "get", "run_x")
	cmd.Env = append(os.Environ(), "AGENTD_URL="+dead)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.Equal(t, 1, ee.ExitCode())
	require.Contains(t, stderr.String(), "agentd: cannot reach agentd at "+dead)
}
