// Package chaos is agentd's chaos kit (`agentd chaos SCENARIO`): each
// scenario starts real processes on 127.0.0.1 (agentd API and worker
// instances, PostgreSQL, Redis, HAProxy in front of the API, `agentd sim`
// as the upstream), drives load, injects a fault and prints a verdict line
// with its figures. Everything lives in a temp dir and is stopped at the
// end. See docs/reliability.md.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Env is one scenario's world: a temp dir, the agentd binary and the
// processes started (stopped by Close, last first).
type Env struct {
	Dir  string
	Bin  string
	Out  io.Writer
	Keep bool // keep Dir (logs) after Close

	mu      sync.Mutex
	closers []func()
}

// NewEnv makes the temp dir. bin is the agentd binary the processes run.
func NewEnv(bin string, out io.Writer, keep bool) (*Env, error) {
	dir, err := os.MkdirTemp("", "agentd-chaos-")
	if err != nil {
		return nil, err
	}
	// PostgreSQL runs as its own user when we are root: it must reach the dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	return &Env{Dir: dir, Bin: bin, Out: out, Keep: keep}, nil
}

// Logf prints a progress line.
func (e *Env) Logf(format string, args ...any) {
	fmt.Fprintf(e.Out, "chaos: "+format+"\n", args...)
}

func (e *Env) onClose(f func()) {
	e.mu.Lock()
	e.closers = append(e.closers, f)
	e.mu.Unlock()
}

// Close stops every process (last started first) and removes the dir
// unless Keep.
func (e *Env) Close() {
	e.mu.Lock()
	cs := e.closers
	e.closers = nil
	e.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	if e.Keep {
		e.Logf("logs kept in %s", e.Dir)
		return
	}
	_ = os.RemoveAll(e.Dir)
}

// FreePort returns a 127.0.0.1 port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Proc is a child process; Start again restarts it with the same
// arguments (and port).
type Proc struct {
	Name string
	Port int
	Log  string
	argv []string
	env  []string
	e    *Env

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Base is http://127.0.0.1:PORT.
func (p *Proc) Base() string { return "http://127.0.0.1:" + strconv.Itoa(p.Port) }

// NewProc describes a process; Start starts it.
func (e *Env) NewProc(name string, port int, env []string, argv ...string) *Proc {
	p := &Proc{Name: name, Port: port, Log: filepath.Join(e.Dir, name+".log"), argv: argv, env: env, e: e}
	e.onClose(p.Kill)
	return p
}

// Start starts the process (again), output appended to its log.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.argv, " "))
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + p.e.Dir}, p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig and, for SIGKILL and SIGTERM, waits for the exit
// (SIGTERM: up to 15 s, then SIGKILL).
func (p *Proc) Signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	switch sig {
	case syscall.SIGKILL:
		<-done
	case syscall.SIGTERM:
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
}

// Kill is kill -9 and waits for the exit.
func (p *Proc) Kill() { p.Signal(syscall.SIGKILL) }

// Pid is the process id (0 when not started).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// client is the kit's HTTP client: bounded, its own pool.
var client = &http.Client{
	Timeout:   15 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 128},
}

// WaitHTTP polls url until it answers 200 or within passes.
func WaitHTTP(ctx context.Context, url string, within time.Duration, p *Proc) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p != nil && !p.Running() {
			return fmt.Errorf("%s exited before %s answered; log %s:\n%s", p.Name, url, p.Log, Tail(p.Log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s", url, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Tail is the last n lines of a file.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Need fails with a clear error when a tool is missing.
func Need(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH: install the Debian package %s (apt-get install -y %s)", name, pkg, pkg)
	}
	return p, nil
}

// errVerdict marks a scenario whose verdict is FAIL (already printed).
var errVerdict = errors.New("chaos: verdict FAIL")

// sleep waits d or until ctx ends (Ctrl-C: the scenario stops and cleans
// up).
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
