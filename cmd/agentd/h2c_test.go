package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServeSpeaksH2C: agentd's API server answers HTTP/2 without TLS (h2c
// with prior knowledge), streams included, next to HTTP/1.1.
func TestServeSpeaksH2C(t *testing.T) {
	t.Parallel()
	s := startServe(t, keysConfig(t.TempDir())+"auth:\n  mode: none\n", nil)

	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	clients := map[int]*http.Client{
		1: {Transport: &http.Transport{}},
		2: {Transport: &http.Transport{Protocols: &h2c}},
	}
	for major, client := range clients {
		for _, stream := range []bool{false, true} {
			body := `{"agent":"demo","message":"hello"}`
			if stream {
				body = `{"agent":"demo","message":"hello","stream":true}`
			}
			resp, err := client.Post(s.base+"/v1/chat", "application/json", strings.NewReader(body))
			require.NoError(t, err)
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
			require.Equal(t, major, resp.ProtoMajor, "stream %v", stream)
			if stream {
				require.Contains(t, string(raw), "event: done")
			} else {
				require.Contains(t, string(raw), `"run_id"`)
			}
		}
	}
}
