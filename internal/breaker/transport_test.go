package breaker_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
)

// Webhook hosts: a closed port opens its host's breaker (others are not
// affected); then requests fail at once without a connection attempt. 4xx
// answers never count, 5xx do.
func TestTransportPerHost(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	var status atomic.Int32
	status.Store(http.StatusNotFound)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer up.Close()

	set := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 2, OpenTimeout: time.Minute}})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &breaker.Transport{Set: set, Prefix: breaker.PrefixWebhook}}
	post := func(url string) (*http.Response, error) {
		resp, err := client.Post(url, "application/json", strings.NewReader(`{}`))
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	for range 2 {
		_, err := post("http://" + closed + "/hook")
		require.Error(t, err)
		_, open := breaker.AsOpen(err)
		require.False(t, open)
	}
	_, err = post("http://" + closed + "/hook")
	oe, ok := breaker.AsOpen(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "webhook:"+closed, oe.Dependency)

	for range 5 {
		resp, err := post(up.URL + "/hook")
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	upHost := strings.TrimPrefix(up.URL, "http://")
	require.Equal(t, breaker.StateClosed, set.Get("webhook:"+upHost).State(), "4xx: the receiver is up")
	status.Store(http.StatusServiceUnavailable)
	for range 2 {
		_, err := post(up.URL + "/hook")
		require.NoError(t, err)
	}
	require.Equal(t, breaker.StateOpen, set.Get("webhook:"+upHost).State(), "5xx count")
}

// Name replaces Prefix+host: requests it names "" have no breaker, the
// others share the breaker it names; Err reports the open breaker's error
// without a call.
func TestTransportName(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	set := breaker.NewSet(breaker.Options{Defaults: breaker.Config{ConsecutiveFailures: 2, OpenTimeout: time.Minute}})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &breaker.Transport{Set: set, Prefix: "ignored:",
		Name: func(r *http.Request) string {
			if r.URL.Path == "/free" {
				return ""
			}
			return "mcp-url:shared"
		}}}
	get := func(path string) error {
		resp, err := client.Get("http://" + closed + path)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for range 3 {
		_, open := breaker.AsOpen(get("/free"))
		require.False(t, open, "no breaker")
	}
	require.Empty(t, set.Statuses(), "none made")
	b := set.Get("mcp-url:shared")
	require.NoError(t, b.Err())
	for range 2 {
		_, open := breaker.AsOpen(get("/a"))
		require.False(t, open)
	}
	oe, ok := breaker.AsOpen(get("/b"))
	require.True(t, ok)
	require.Equal(t, "mcp-url:shared", oe.Dependency)
	oe, ok = breaker.AsOpen(b.Err())
	require.True(t, ok)
	require.Equal(t, "mcp-url:shared", oe.Dependency)
	require.GreaterOrEqual(t, oe.RetryAfter, 59*time.Second)
	_, open := breaker.AsOpen(get("/free"))
	require.False(t, open, "still no breaker")
	var nilB *breaker.Breaker
	require.NoError(t, nilB.Err())
}
