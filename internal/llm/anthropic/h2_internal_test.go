package anthropic

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/sim"
)

// TestHTTPSUsesHTTP2: the default client speaks HTTP/2 to an https://
// upstream (as to the Claude API), for SDK calls and raw forwards alike.
func TestHTTPSUsesHTTP2(t *testing.T) {
	t.Parallel()
	upstream := sim.New(sim.Config{APIKey: "k"}, nil)
	var proto1, proto2 atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			proto2.Add(1)
		} else {
			proto1.Add(1)
		}
		upstream.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	c := New(Config{BaseURL: srv.URL, APIKey: "k"})
	// Trust the test server's certificate; nothing else of the transport
	// changes.
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c.http.(transportDoer).rt.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	resp, err := c.Stream(t.Context(), llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 64,
		Messages: []llm.Message{{Role: "user", Content: json.RawMessage(`"hello"`)}}}, nil)
	require.NoError(t, err)
	require.NotEmpty(t, resp.StopReason)
	require.Equal(t, int64(1), proto2.Load(), "HTTP/2 calls")
	require.Zero(t, proto1.Load(), "HTTP/1.x calls")
}
