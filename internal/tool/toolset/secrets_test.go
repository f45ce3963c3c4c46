package toolset_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/tool/toolset"
)

// lockedBuffer is a log sink safe for the refresher's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A secret from ${file:PATH} is re-read every secrets_refresh.poll_interval:
// after the file changed, the next call of an HTTP tool carries the new
// value, without a restart; the old value is still scrubbed during its
// grace period; a file that disappears keeps the last value.
func TestRotatedFileSecretReachesNextCall(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		// A misbehaving API that echoes the credential it was sent, and
		// one it was not sent (the old one, passed in the request).
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"auth":"`+r.Header.Get("Authorization")+`","echo":`+string(b)+`}`)
	}))
	defer api.Close()

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "crm_token")
	require.NoError(t, os.WriteFile(secretFile, []byte("old-token-1111\n"), 0o600))
	cfgFile := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(`
secrets:
  crm_token: ${file:crm_token}
secrets_refresh: {poll_interval: 100ms, grace: 1h}
tools:
  http:
    - name: crm
      method: POST
      url: `+api.URL+`/lookup
      allow_private: true
      headers: {Authorization: "Bearer {{secret:crm_token}}"}
      input_schema: {type: object}
agents:
  - {name: a, model: m, tools: [crm]}
`), 0o600))
	cfg, err := config.Load(cfgFile, nil)
	require.NoError(t, err)

	logs := &lockedBuffer{}
	var changedMu sync.Mutex
	var changed []string
	set, err := toolset.Start(t.Context(), cfg, toolset.Options{
		Log: slog.New(slog.NewTextHandler(logs, nil)),
		SecretsChanged: func(v []string) {
			changedMu.Lock()
			defer changedMu.Unlock()
			changed = v
		},
	})
	require.NoError(t, err)
	defer set.Stop()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- set.RefreshSecrets(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	crm := set.Tools("a")[0]
	callCRM := func(input string) string {
		t.Helper()
		out, err := crm.Call(t.Context(), json.RawMessage(input))
		require.NoError(t, err)
		return out
	}
	out := callCRM(`{"x":1}`)
	assert.Contains(t, out, `"auth":"Bearer [secret:crm_token]"`)
	assert.Equal(t, []string{"Bearer old-token-1111"}, auths)

	// Rotate the secret (as a Kubernetes secret update does).
	require.NoError(t, os.WriteFile(secretFile, []byte("new-token-2222\n"), 0o600))
	require.Eventually(t, func() bool {
		return slices.Contains(set.Secrets().Values(), "new-token-2222")
	}, 5*time.Second, 20*time.Millisecond, "the rotated value was not picked up")
	out = callCRM(`{"old":"old-token-1111"}`)
	mu.Lock()
	assert.Equal(t, "Bearer new-token-2222", auths[len(auths)-1], "the next call carries the new value")
	mu.Unlock()
	// Both the new value and, during its grace period, the old one are
	// scrubbed from the output.
	assert.NotContains(t, out, "new-token-2222")
	assert.NotContains(t, out, "old-token-1111")
	assert.Contains(t, out, `"auth":"Bearer [secret:crm_token]"`)
	assert.Contains(t, out, `"old":"[secret:crm_token]"`)
	changedMu.Lock()
	assert.ElementsMatch(t, []string{"old-token-1111", "new-token-2222"}, changed, "other redactors learn the values")
	changedMu.Unlock()

	// The file disappears (a secret mid-update): the last value is kept,
	// and the failure is logged without the value.
	require.NoError(t, os.Remove(secretFile))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "tool secret refresh failed")
	}, 5*time.Second, 20*time.Millisecond)
	callCRM(`{}`)
	mu.Lock()
	assert.Equal(t, "Bearer new-token-2222", auths[len(auths)-1], "a failed re-read keeps the last good value")
	mu.Unlock()
	assert.Contains(t, logs.String(), "secret=crm_token")
	assert.NotContains(t, logs.String(), "token-1111")
	assert.NotContains(t, logs.String(), "token-2222")
	assert.Equal(t, 1, strings.Count(logs.String(), "tool secret refresh failed"), "one warning per distinct error")
}

// Secrets from ${env:} or literal values are not re-read: the loop has
// nothing to do but must not end before it is stopped (the process treats
// a background loop that returns early as failed).
func TestRefreshSecretsWithoutFileSecretsWaits(t *testing.T) {
	cfg := baseConfig(t)
	set, err := toolset.Start(t.Context(), cfg, toolset.Options{Audit: &memAudit{}})
	require.NoError(t, err)
	defer set.Stop()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- set.RefreshSecrets(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("RefreshSecrets returned before it was stopped: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	require.NoError(t, <-done)
	assert.True(t, set.Secrets().Has("tok"))
}
