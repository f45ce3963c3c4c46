//go:build linux

package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	require.NoError(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0)) // unlock
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { master.Close(); slave.Close() })
	return master, slave
}

// lockedBuffer collects what the terminal shows.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// On a terminal (a pseudo-terminal here), chat greets, prompts, streams
// each answer with its tool calls, and ends on Ctrl-D with the
// conversation id.
func TestChatInTerminal(t *testing.T) {
	t.Parallel()
	ts := sharedServer(t)
	master, slave := openPTY(t)
	screen := &lockedBuffer{}
	go func() { _, _ = io.Copy(screen, master) }() // ends when the pty closes

	var errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Main(t.Context(), "chat", []string{"demo"},
			IO{Stdin: slave, Stdout: slave, Stderr: &errOut, Environ: []string{"AGENTD_URL=" + ts.url}})
	}()
	waitFor := func(what string) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Count(screen.String(), what) > 0 },
			20*time.Second, 10*time.Millisecond, "the terminal never showed %q; it shows:\n%s", what, screen.String())
	}
	waitFor("> ")
	_, err := master.WriteString("Hello terminal\n")
	require.NoError(t, err)
	waitFor("Simulated answer to: Hello terminal")
	require.Eventually(t, func() bool { return strings.Count(screen.String(), "> ") >= 2 }, 20*time.Second, 10*time.Millisecond,
		"a new prompt after the answer")
	_, err = master.WriteString("What is one plus one? Use the calculator.\n")
	require.NoError(t, err)
	waitFor(`Tool results: [calculator] => "2"`)
	_, err = master.Write([]byte{4}) // Ctrl-D: end of input
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("chat did not end on Ctrl-D")
	}
	out := screen.String()
	require.Contains(t, out, "⚙ calculator")
	require.Contains(t, errOut.String(), "chat with demo at "+ts.url)
	require.Regexp(t, `conversation conv_\S+ \(continue with: agentd chat -c conv_\S+ demo\)`, errOut.String())
}
