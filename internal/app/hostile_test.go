package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
)

// hostileApp runs an App whose read_header_timeout is 1s.
func hostileApp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
  read_header_timeout: 1s
store:
  url: sqlite://%s
auth:
  mode: none
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(dir, "agentd.db")))
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	a, err := New(t.Context(), cfg, Options{LogOutput: &syncLog{}, Version: "test"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	waitReady(t, a)
	return a.Addr().String()
}

// idleConns is how many idle connections the test opens: 10,000 when the
// open-file limit allows (each costs a descriptor on both ends, in this
// one process), fewer otherwise.
func idleConns(t *testing.T) int {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if want := uint64(20500 + 500); lim.Cur < want && lim.Max > lim.Cur {
		// Raise the soft limit toward the hard one (this test process only).
		lim.Cur = min(want, lim.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	n := min(10000, (int(lim.Cur)-500)/2)
	if n < 100 {
		t.Skipf("open-file limit %d is too low", lim.Cur)
	}
	t.Logf("open-file limit %d: %d idle connections", lim.Cur, n)
	return n
}

// A client that opens thousands of connections and sends nothing: agentd
// keeps answering others at once, and closes every idle connection after
// read_header_timeout (the cost is bounded in time: one goroutine and a
// descriptor per connection, for 1 s here, 10 s by default).
func TestHostileIdleConnections(t *testing.T) {
	addr := hostileApp(t)
	n := idleConns(t)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	t.Logf("%d connections open in %s", n, time.Since(start).Round(time.Millisecond))

	// Others are served meanwhile.
	t0 := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/livez")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	t.Logf("a request among them answered in %s", time.Since(t0).Round(time.Millisecond))

	// Every idle connection is closed by the server within the header
	// timeout (1 s) and some slack, counted from the last one opened.
	opened := time.Now()
	deadline := opened.Add(15 * time.Second)
	buf := make([]byte, 1)
	for i, c := range conns {
		require.NoError(t, c.SetReadDeadline(deadline))
		_, err := c.Read(buf)
		require.Error(t, err, "conn %d", i)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatalf("conn %d still open %s after the header timeout", i, time.Since(opened))
		}
	}
	t.Logf("all %d idle connections closed by agentd %s after the last was opened", n, time.Since(opened).Round(time.Millisecond))
}

// A client that sends its headers one byte every 50 ms (slowloris): the
// connection is closed when read_header_timeout (1 s) has passed since it
// began, however slowly the bytes keep coming.
func TestHostileHeadersByteByByte(t *testing.T) {
	addr := hostileApp(t)
	const clients = 50
	type outcome struct {
		sent int
		took time.Duration
	}
	results := make(chan outcome, clients)
	for range clients {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				results <- outcome{sent: -1}
				return
			}
			defer c.Close()
			start := time.Now()
			req := []byte("GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			for i := 0; time.Since(start) < 10*time.Second; i++ {
				b := byte('a')
				if i < len(req) {
					b = req[i]
				}
				if _, err := c.Write([]byte{b}); err != nil {
					results <- outcome{sent: i, took: time.Since(start)}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			results <- outcome{sent: -2, took: time.Since(start)}
		}()
	}
	// Meanwhile a normal request is served.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/livez")
	require.NoError(t, err)
	resp.Body.Close()
	var worst time.Duration
	for range clients {
		o := <-results
		require.NotEqual(t, -1, o.sent, "dial failed")
		require.NotEqual(t, -2, o.sent, "a byte-by-byte client was still connected after 10 s")
		worst = max(worst, o.took)
	}
	// 1 s of header timeout; the write that notices the close comes a
	// little later (the kernel accepts a write or two after the FIN).
	require.Less(t, worst, 4*time.Second)
	t.Logf("%d byte-by-byte clients, each cut off within %s", clients, worst.Round(time.Millisecond))
}
