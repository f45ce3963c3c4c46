package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("ok\n"))
		case "/created":
			w.WriteHeader(http.StatusCreated)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			http.Error(w, "draining", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)

	out, _, err := runCmd(t, nil, "probe", srv.URL+"/ok")
	require.NoError(t, err)
	require.Equal(t, "200 OK ok\n", out)
	out, _, err = runCmd(t, nil, "probe", "-quiet", srv.URL+"/created")
	require.NoError(t, err)
	require.Empty(t, out)

	_, _, err = runCmd(t, nil, "probe", srv.URL+"/readyz")
	require.ErrorIs(t, err, errProbeFailed)
	require.ErrorContains(t, err, "503")
	require.ErrorContains(t, err, "draining")
	_, _, err = runCmd(t, nil, "probe", srv.URL+"/redirect")
	require.ErrorIs(t, err, errProbeFailed, "a redirect is not healthy")
	start := time.Now()
	_, _, err = runCmd(t, nil, "probe", "-timeout", "200ms", srv.URL+"/slow")
	require.ErrorIs(t, err, errProbeFailed)
	require.Less(t, time.Since(start), 1500*time.Millisecond, "the timeout bounds the probe")

	// Nothing listening.
	_, _, err = runCmd(t, nil, "probe", "http://"+freeAddr(t)+"/livez")
	require.ErrorIs(t, err, errProbeFailed)

	for _, args := range [][]string{{"probe"}, {"probe", "a", "b"}, {"probe", "ftp://x/y"}, {"probe", "-timeout", "0s", "http://x/"}, {"probe", "localhost:8080"}} {
		_, _, err := runCmd(t, nil, args...)
		require.ErrorIs(t, err, errUsage, "%q", args)
	}
}

// TestProbeAgainstServe: the image's HEALTHCHECK against a real agentd.
func TestProbeAgainstServe(t *testing.T) {
	t.Parallel()
	s := startServe(t, backupConfig("sqlite://"+t.TempDir()+"/p.db"), nil)
	for _, path := range []string{"/livez", "/readyz"} {
		_, _, err := runCmd(t, nil, "probe", s.base+path)
		require.NoError(t, err, path)
	}
	s.stop(t)
	_, _, err := runCmd(t, nil, "probe", s.base+"/livez")
	require.ErrorIs(t, err, errProbeFailed)
}
