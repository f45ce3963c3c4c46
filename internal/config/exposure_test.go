package config

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":   true,
		"127.0.0.2:1":      true,
		"[::1]:8080":       true,
		"localhost:8080":   true,
		"LOCALHOST:0":      true,
		":8080":            false, // every interface
		"0.0.0.0:8080":     false,
		"[::]:8080":        false,
		"10.0.0.5:8080":    false,
		"192.168.1.2:80":   false,
		"example.com:8080": false, // a name may resolve to anything
		"agentd:8080":      false,
		"not an address":   false,
	} {
		assert.Equal(t, want, LoopbackAddr(addr), addr)
	}
}

// TestAuthNoneExposure: auth.mode none on a non-loopback server.addr is
// refused, naming the field, the address and the opt-in; loopback and the
// explicit opt-in are accepted; mode keys is accepted anywhere.
func TestAuthNoneExposure(t *testing.T) {
	const base = "agents:\n  - {name: a, model: claude-sonnet-4-5}\n"
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	writeFile(t, path, base)

	for _, addr := range []string{":8080", "0.0.0.0:8080", "[::]:9000", "10.1.2.3:8080", "agentd.internal:8080"} {
		_, err := Load(path, []string{"AGENTD_AUTH_MODE=none", "AGENTD_SERVER_ADDR=" + addr})
		require.Error(t, err, addr)
		assert.Contains(t, err.Error(), "auth.mode: none on server.addr \""+addr+"\"", addr)
		assert.Contains(t, err.Error(), "auth.allow_unauthenticated_network: true", addr)
	}

	for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080"} {
		cfg, err := Load(path, []string{"AGENTD_AUTH_MODE=none", "AGENTD_SERVER_ADDR=" + addr})
		require.NoError(t, err, addr)
		assert.Contains(t, cfg.AuthWarning(), "authentication is off (auth.mode: none) on "+addr)
		assert.Contains(t, cfg.AuthWarning(), "from this machine")
	}

	// The explicit opt-in, from the file and from the environment.
	optIn := filepath.Join(t.TempDir(), "optin.yaml")
	writeFile(t, optIn, "auth:\n  mode: none\n  allow_unauthenticated_network: true\nserver:\n  addr: \":8080\"\n"+base)
	cfg, err := Load(optIn, nil)
	require.NoError(t, err)
	assert.True(t, cfg.Auth.AllowUnauthenticatedNetwork)
	assert.Contains(t, cfg.AuthWarning(), "on :8080, a non-loopback address (auth.allow_unauthenticated_network: true)")
	_, err = Load(path, []string{"AGENTD_AUTH_MODE=none", "AGENTD_SERVER_ADDR=0.0.0.0:80", "AGENTD_AUTH_ALLOW_UNAUTHENTICATED_NETWORK=true"})
	require.NoError(t, err)

	// mode keys (the default) on any address: nothing to refuse or warn.
	cfg, err = Load(path, []string{"AGENTD_SERVER_ADDR=:8080"})
	require.NoError(t, err)
	assert.Equal(t, AuthKeys, cfg.Auth.Mode)
	assert.Empty(t, cfg.AuthWarning())
}

// TestExampleConfigExposure: the README's quick start (examples/agentd.yaml,
// auth off on 127.0.0.1:8080) works as is; the same file on every
// interface, as the container image used to serve it, is refused.
func TestExampleConfigExposure(t *testing.T) {
	const example = "../../examples/agentd.yaml"
	cfg, err := Load(example, nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", cfg.Server.Addr)
	assert.Equal(t, AuthNone, cfg.Auth.Mode)
	assert.Contains(t, cfg.AuthWarning(), "127.0.0.1:8080")

	_, err = Load(example, []string{"AGENTD_SERVER_ADDR=:8080"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "auth.mode: none on server.addr \":8080\"")
}
