package mcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/tool/httptool"
)

// countingServer is a streamable-HTTP MCP server on 127.0.0.1 that counts
// the MCP sessions opened on it (initialize requests).
func countingServer(t *testing.T) (url string, sessions *atomic.Int32) {
	t.Helper()
	srv := testServer(false)
	sessions = &atomic.Int32{}
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"method":"initialize"`)) {
			sessions.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp", sessions
}

func names(t *testing.T, p *Pool, url string) []string {
	t.Helper()
	ts, err := p.Tools(t.Context(), url)
	require.NoError(t, err)
	var out []string
	for _, x := range ts {
		out = append(out, x.Spec().Name)
	}
	return out
}

// One connection per URL, made when first asked for (concurrent askers
// share it) and reused; its tools are the server's, callable.
func TestPoolConnectsOncePerURL(t *testing.T) {
	url, sessions := countingServer(t)
	p := NewPool(PoolConfig{Policy: httptool.Policy{AllowHosts: []string{"127.0.0.1"}}, ConnectTimeout: 5 * time.Second})
	t.Cleanup(p.Close)
	require.Nil(t, p.Known(url), "nothing pooled before the first use")

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Tools(context.Background(), url)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	got := names(t, p, url)
	require.Contains(t, got, "echo")
	require.NotContains(t, got, "crash", "the HTTP test server has no stdio-only tools")
	require.Equal(t, int32(1), sessions.Load(), "one MCP session for every caller")
	require.ElementsMatch(t, got, p.Known(url))

	ts, err := p.Tools(t.Context(), url)
	require.NoError(t, err)
	for _, x := range ts {
		if x.Spec().Name == "echo" {
			out, err := x.Call(t.Context(), []byte(`{"text":"pooled"}`))
			require.NoError(t, err)
			require.Equal(t, "pooled", out)
		}
	}
	require.Equal(t, int32(1), sessions.Load())
}

// The private-address policy is httptool's: 127.0.0.1 is refused unless
// allowed, by the static check and at dial time.
func TestPoolSSRFGuard(t *testing.T) {
	url, sessions := countingServer(t)
	p := NewPool(PoolConfig{Policy: httptool.Policy{Hint: "see managed.mcp"}, ConnectTimeout: 5 * time.Second})
	t.Cleanup(p.Close)
	err := p.CheckURL(url)
	require.ErrorIs(t, err, httptool.ErrBlocked)
	require.Contains(t, err.Error(), "see managed.mcp")
	require.ErrorIs(t, p.CheckURL("http://localhost:9/mcp"), httptool.ErrBlocked)
	require.NoError(t, p.CheckURL("https://mcp.example.com/mcp"), "names are checked when dialed")

	_, err = p.Tools(t.Context(), url)
	require.ErrorIs(t, err, httptool.ErrBlocked, "the dial is guarded too")
	require.Zero(t, sessions.Load())
	require.Nil(t, p.Known(url), "a failed connection is not pooled")

	open := NewPool(PoolConfig{Policy: httptool.Policy{AllowPrivate: true}})
	t.Cleanup(open.Close)
	require.NoError(t, open.CheckURL(url))
	require.Contains(t, names(t, open, url), "echo")
}

// A server that does not answer fails within ConnectTimeout; one that
// refuses connections fails at once; neither is pooled.
func TestPoolUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	p := NewPool(PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, ConnectTimeout: 300 * time.Millisecond})
	t.Cleanup(p.Close)
	start := time.Now()
	_, err = p.Tools(t.Context(), "http://"+ln.Addr().String()+"/mcp")
	require.Error(t, err)
	require.Contains(t, err.Error(), ln.Addr().String())
	require.Less(t, time.Since(start), 5*time.Second)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	require.NoError(t, closed.Close())
	_, err = p.Tools(t.Context(), "http://"+addr+"/mcp")
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
}

// A full pool closes its least recently used server; Close closes all and
// refuses more.
func TestPoolEvictsAndCloses(t *testing.T) {
	u1, s1 := countingServer(t)
	u2, _ := countingServer(t)
	p := NewPool(PoolConfig{Policy: httptool.Policy{AllowPrivate: true}, MaxServers: 1, ConnectTimeout: 5 * time.Second})
	names(t, p, u1)
	names(t, p, u2)
	require.Nil(t, p.Known(u1), "evicted")
	require.NotNil(t, p.Known(u2))
	names(t, p, u1)
	require.Equal(t, int32(2), s1.Load(), "reconnected after eviction")
	p.Close()
	_, err := p.Tools(t.Context(), u2)
	require.True(t, errors.Is(err, ErrPoolClosed), "%v", err)
}
