package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Instance is a PostgreSQL server of a test's own (initdb and pg_ctl from
// /usr/lib/postgresql/*/bin, trust authentication, fsync off) on a free
// 127.0.0.1 port with its data in a temporary directory, for tests that
// stop the database. It is stopped and removed when the test ends.
type Instance struct {
	t    testing.TB
	bin  string
	dir  string // data directory's parent: data/, the socket, the log
	port int
	// asUser runs the server's commands as the postgres user when the
	// test runs as root (initdb refuses root).
	asUser []string
}

// StartInstance initialises and starts an Instance; the test skips when
// the PostgreSQL server binaries are not installed.
func StartInstance(t testing.TB) *Instance {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		t.Skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
	}
	tally(t)
	in := &Instance{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "agentd-pg-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	in.dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("pgtest: running as root and there is no postgres user for initdb")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		in.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: free port: %v", err)
	}
	in.port = ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	if out, err := in.run("initdb", "-D", in.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	in.Start()
	t.Cleanup(func() { _, _ = in.run("pg_ctl", "-D", in.data(), "-m", "immediate", "-w", "stop") })
	return in
}

func (in *Instance) data() string { return filepath.Join(in.dir, "data") }

func (in *Instance) run(name string, args ...string) ([]byte, error) {
	argv := append(append([]string{}, in.asUser...), append([]string{filepath.Join(in.bin, name)}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = in.dir
	return cmd.CombinedOutput()
}

// URL is the database "postgres" on the instance.
func (in *Instance) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", in.port)
}

// Start starts the server (again, on the same port and data) and waits
// until it accepts connections.
func (in *Instance) Start() {
	in.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=50",
		in.port, in.dir)
	if out, err := in.run("pg_ctl", "-D", in.data(), "-l", filepath.Join(in.dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(in.dir, "log"))
		in.t.Fatalf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, in.URL())
		if err == nil {
			_ = conn.Close(ctx)
			return
		}
		if ctx.Err() != nil {
			in.t.Fatalf("pgtest: instance does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server at once (immediate mode: connections are cut, as
// when the database host dies).
func (in *Instance) Stop() {
	in.t.Helper()
	if out, err := in.run("pg_ctl", "-D", in.data(), "-m", "immediate", "-w", "stop"); err != nil {
		in.t.Fatalf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
}
