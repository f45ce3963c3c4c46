package app

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A tool secret rotated in its file while agentd runs reaches the other
// redactors: the message guard refuses a chat message holding the new
// value, and the log redaction scrubs it.
func TestRotatedToolSecretReachesRedactors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "crm_token")
	require.NoError(t, os.WriteFile(secretFile, []byte("crm-old-token-1111\n"), 0o600))
	a, logs := newTestAppIn(t, dir, `secrets:
  crm_token: ${file:crm_token}
secrets_refresh: {poll_interval: 100ms}
`)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-errc) }()
	waitReady(t, a)

	chat := func(msg string) (int, string) {
		resp, err := http.Post("http://"+a.Addr().String()+"/v1/chat", "application/json",
			strings.NewReader(`{"agent":"demo","message":"`+msg+`"}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := chat("my token is crm-new-token-2222")
	require.Equal(t, http.StatusOK, code, "not a secret yet: %s", body)

	require.NoError(t, os.WriteFile(secretFile, []byte("crm-new-token-2222\n"), 0o600))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "tool secret rotated")
	}, 10*time.Second, 20*time.Millisecond)
	code, body = chat("my token is crm-new-token-2222")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, `"type":"secret_in_message"`)
	assert.NotContains(t, body, "crm-new-token-2222")
	code, _ = chat("the old one: crm-old-token-1111")
	assert.Equal(t, http.StatusBadRequest, code, "the old value is still a secret")

	a.log.Info("an upstream echoed it", "body", "auth=crm-new-token-2222")
	assert.NotContains(t, logs.String(), "crm-new-token-2222")
	assert.Contains(t, logs.String(), "auth=[redacted]")
}
