package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
)

// newTestApp builds an App on a fresh SQLite store with the built-in
// simulator, no authentication and no drain delay.
func newTestApp(t *testing.T) (*App, *syncLog) {
	t.Helper()
	return newTestAppIn(t, t.TempDir(), "")
}

// newTestAppIn is newTestApp with its store in dir/agentd.db and extra
// YAML appended to the configuration.
func newTestAppIn(t *testing.T, dir, extra string) (*App, *syncLog) {
	t.Helper()
	yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: sqlite://%s
auth:
  mode: none
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(dir, "agentd.db"))) + extra
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	logs := &syncLog{}
	a, err := New(t.Context(), cfg, Options{LogOutput: logs, Version: "test"})
	require.NoError(t, err)
	return a, logs
}

func waitReady(t testing.TB, a *App) {
	t.Helper()
	url := "http://" + a.Addr().String() + "/readyz"
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
}

// A component that dies stops the whole process: Run drains and returns
// its error, instead of serving on half alive.
func TestRunStopsWhenAComponentDies(t *testing.T) {
	t.Parallel()
	a, logs := newTestApp(t)
	boom := errors.New("boom")
	die := make(chan struct{})
	a.addLoop("doomed", func(ctx context.Context) error {
		select {
		case <-die:
			return boom
		case <-ctx.Done():
			return nil
		}
	})
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background()) }()
	waitReady(t, a)
	close(die)
	select {
	case err := <-errc:
		require.ErrorIs(t, err, boom)
		require.EqualError(t, err, "doomed: boom")
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after a component died")
	}
	require.Contains(t, logs.String(), "a component stopped: draining")
	require.Contains(t, logs.String(), "agentd stopped", "the drain ran")
	_, err := http.Get("http://" + a.Addr().String() + "/livez")
	require.Error(t, err, "the listener is closed")
}

// A signal (ctx ending) drains and returns nil.
func TestRunReturnsNilOnSignal(t *testing.T) {
	t.Parallel()
	a, logs := newTestApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	waitReady(t, a)
	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the signal")
	}
	require.Contains(t, logs.String(), "signal received: draining")
	require.Contains(t, logs.String(), "agentd stopped")
}
