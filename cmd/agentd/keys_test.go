package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func keysConfig(dir string) string {
	return fmt.Sprintf(`server:
  addr: ADDR
  drain_timeout: 5s
  drain_delay: 1ms
store:
  url: sqlite://%s
providers:
  anthropic:
    simulate: always
log:
  level: info
agents:
  - name: demo
    model: claude-sonnet-4-5
`, filepath.ToSlash(filepath.Join(dir, "agentd.db")))
}

var keyRE = regexp.MustCompile(`^agd_[a-z2-7]{52}\n$`)

func TestKeysCommand(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, strings.Replace(keysConfig(t.TempDir()), "ADDR", "127.0.0.1:0", 1))

	_, _, err := runCmd(t, nil, "keys", "create", "-config", cfg)
	require.ErrorIs(t, err, errUsage, "-tenant is required")
	_, _, err = runCmd(t, nil, "keys", "create", "-config", cfg, "-tenant", "acme", "-scopes", "chat,root")
	require.ErrorIs(t, err, errUsage)
	_, _, err = runCmd(t, nil, "keys", "rotate")
	require.ErrorIs(t, err, errUsage)

	key1, stderr, err := runCmd(t, nil, "keys", "create", "-config", cfg, "-tenant", "acme", "-name", "ci")
	require.NoError(t, err)
	require.Regexp(t, keyRE, key1)
	prefix1 := key1[:12]
	require.Contains(t, stderr, prefix1)
	require.NotContains(t, stderr, key1[12:52], "the key is printed once, on stdout")
	key2, _, err := runCmd(t, nil, "keys", "create", "-config", cfg, "-tenant", "globex", "-scopes", "runs,admin")
	require.NoError(t, err)
	require.Regexp(t, keyRE, key2)

	out, _, err := runCmd(t, nil, "keys", "list", "-config", cfg)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Contains(t, lines[0], "PREFIX")
	require.Regexp(t, `^`+prefix1+`\s+key_[0-9a-f]{16}\s+acme\s+chat,runs\s+ci\s+\S+\s+-$`, lines[1])
	require.Contains(t, lines[2], "globex")
	require.Contains(t, lines[2], "runs,admin")
	require.NotContains(t, out, strings.TrimSpace(key1)[12:], "list never shows keys")

	out, _, err = runCmd(t, nil, "keys", "list", "-config", cfg, "-tenant", "globex")
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2)

	out, _, err = runCmd(t, nil, "keys", "revoke", prefix1, "-config", cfg)
	require.NoError(t, err)
	require.Contains(t, out, "revoked "+prefix1)
	out, _, err = runCmd(t, nil, "keys", "list", "-config", cfg, "-tenant", "acme")
	require.NoError(t, err)
	require.NotRegexp(t, `\s-\n?$`, strings.TrimSpace(out), "revoked time shown")

	_, _, err = runCmd(t, nil, "keys", "revoke", "-config", cfg, "agd_nothere")
	require.ErrorContains(t, err, "no API key")
}

// TestServeWithKeys: the default auth mode needs keys; start-up without
// any says how to create one; a created key works, a revoked one stops
// working within auth.cache_ttl (1s by default).
func TestServeWithKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServe(t, keysConfig(dir), nil)
	require.Contains(t, s.stderr.String(), "agentd keys create")
	require.NotContains(t, s.stderr.String(), "authentication is off")

	get := func(key string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, s.base+"/v1/agents", nil)
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, get(""))

	cfg := writeConfig(t, strings.Replace(keysConfig(dir), "ADDR", "127.0.0.1:0", 1))
	key, _, err := runCmd(t, nil, "keys", "create", "-config", cfg, "-tenant", "acme")
	require.NoError(t, err)
	key = strings.TrimSpace(key)
	require.Equal(t, http.StatusOK, get(key))
	_, _, err = runCmd(t, nil, "keys", "revoke", "-config", cfg, key[:12])
	require.NoError(t, err)
	// The serving instance trusts the key it checked for up to
	// auth.cache_ttl (1s by default), then looks it up again.
	require.Eventually(t, func() bool { return get(key) == http.StatusUnauthorized }, 3*time.Second, 50*time.Millisecond)
	require.NotContains(t, s.stderr.String(), key)
}

func TestServeAuthOffWarns(t *testing.T) {
	t.Parallel()
	s := startServe(t, keysConfig(t.TempDir())+"auth:\n  mode: none\n", nil)
	require.Contains(t, s.stderr.String(), "authentication is off")
}
