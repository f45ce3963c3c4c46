package resilience

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/sim"
)

// load runs calls on workers goroutines until stop is closed and returns the
// number of calls and of failed ones.
func load(t *testing.T, p *Provider, workers int, stop <-chan struct{}) (calls, failed *atomic.Int64, wait func()) {
	t.Helper()
	calls, failed = new(atomic.Int64), new(atomic.Int64)
	var wg sync.WaitGroup
	model := p.Model(modelA)
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if _, _, err := call(context.Background(), model, request("hello")); err != nil {
					failed.Add(1)
					t.Errorf("call failed: %v", err)
				}
			}
		})
	}
	return calls, failed, wg.Wait
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stateOf(p *Provider, key string) string {
	for _, k := range p.Keys() {
		if k.Fingerprint == Fingerprint(key) {
			return k.State
		}
	}
	return "absent"
}

func primary(p *Provider) string {
	for _, k := range p.Keys() {
		if k.Primary {
			return k.Fingerprint
		}
	}
	return ""
}

func TestKeyRevokedMidLoadMovesToBackup(t *testing.T) {
	t.Parallel()
	const keyA, keyB = "sk-test-key-a", "sk-test-key-b"
	gate := newKeyGate(newSim(sim.Config{Latency: time.Millisecond}), keyA, keyB)
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{
		Keys:  KeysConfig{Sources: []KeySourceConfig{{Value: keyA}, {Env: "AGENTD_TEST_UNSET_KEY_VAR"}, {Value: keyB}}},
		Retry: fastRetry,
	}, serve(t, gate, ""), m)
	require.Equal(t, Fingerprint(keyA), primary(p))

	stop := make(chan struct{})
	calls, failed, wait := load(t, p, 8, stop)
	waitFor(t, "traffic on key A", func() bool { used, _ := gate.counts(keyA); return used >= 20 })
	gate.accept(keyB) // revoke A upstream
	usedA, _ := gate.counts(keyA)
	waitFor(t, "traffic on key B", func() bool { used, _ := gate.counts(keyB); return used >= 50 })
	close(stop)
	wait()

	require.Zero(t, failed.Load(), "no call failed out of %d", calls.Load())
	_, rejectedA := gate.counts(keyA)
	require.Positive(t, rejectedA)
	require.LessOrEqual(t, rejectedA, 2*8, "only calls around the revocation tried A")
	usedAfter, _ := gate.counts(keyA)
	require.Equal(t, usedA, usedAfter, "A is not used once revoked")
	require.Equal(t, "bad", stateOf(p, keyA))
	require.Equal(t, "active", stateOf(p, keyB))
	require.Equal(t, Fingerprint(keyB), primary(p))
	require.InDelta(t, float64(KeyBad), value(t, m.KeyState.WithLabelValues(Fingerprint(keyA))), 0)
	require.InDelta(t, float64(KeyActive), value(t, m.KeyState.WithLabelValues(Fingerprint(keyB))), 0)
	require.InDelta(t, float64(rejectedA), value(t, m.KeyRejections.WithLabelValues(Fingerprint(keyA))), 0)
	for _, k := range p.Keys() {
		require.NotContains(t, k.Fingerprint, "sk-")
	}
}

func writeKeyFile(t *testing.T, path, content string) {
	t.Helper()
	// Like a Kubernetes secret update: write aside, then swap atomically.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestFileRotationUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	const key1, key2 = "sk-rotate-1", "sk-rotate-2"
	path := filepath.Join(t.TempDir(), "api-key")
	writeKeyFile(t, path, key1+"\n")
	gate := newKeyGate(newSim(sim.Config{Latency: time.Millisecond}), key1)
	m, _ := testMetrics()
	p := newProvider(t, ProviderConfig{
		Keys:  KeysConfig{Sources: []KeySourceConfig{{File: path}}, PollInterval: 10 * time.Millisecond, Grace: time.Hour},
		Retry: fastRetry,
	}, serve(t, gate, ""), m)

	stop := make(chan struct{})
	calls, failed, wait := load(t, p, 8, stop)
	waitFor(t, "traffic on key 1", func() bool { used, _ := gate.counts(key1); return used >= 20 })

	// The rotation: the new key is issued upstream, the secret is updated,
	// agentd moves to it, the old key is revoked later.
	gate.accept(key1, key2)
	writeKeyFile(t, path, key2+"\n")
	waitFor(t, "key 2 primary", func() bool { return primary(p) == Fingerprint(key2) })
	require.Equal(t, "backup", stateOf(p, key1))
	waitFor(t, "traffic on key 2", func() bool { used, _ := gate.counts(key2); return used >= 20 })
	gate.accept(key2)
	used2, _ := gate.counts(key2)
	waitFor(t, "more traffic on key 2", func() bool { used, _ := gate.counts(key2); return used >= used2+20 })
	close(stop)
	wait()

	require.Zero(t, failed.Load(), "no call failed out of %d", calls.Load())
	_, rejected1 := gate.counts(key1)
	require.Zero(t, rejected1, "key 1 was no longer used when revoked")
	require.InDelta(t, float64(KeyBackup), value(t, m.KeyState.WithLabelValues(Fingerprint(key1))), 0)
	ks := p.Keys()
	require.Len(t, ks, 2)
	require.Equal(t, "file:"+path, ks[0].Source)
	require.False(t, ks[0].LastUsed.IsZero())
}

func TestRotatedKeyDroppedAfterGrace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "key")
	writeKeyFile(t, path, "old-key")
	m, _ := testMetrics()
	pool, err := NewKeyPool(context.Background(), KeysConfig{Sources: []KeySourceConfig{{File: path}}, Grace: 50 * time.Millisecond}, m, nil)
	require.NoError(t, err)
	writeKeyFile(t, path, "new-key")
	pool.Refresh(context.Background(), false)
	snap := pool.Snapshot()
	require.Len(t, snap, 2)
	require.Equal(t, Fingerprint("new-key"), snap[0].Fingerprint)
	require.True(t, snap[0].Primary)
	require.Equal(t, "backup", snap[1].State)
	require.False(t, snap[1].BackupUntil.IsZero())

	// An empty file (a secret mid-update) keeps the last keys.
	writeKeyFile(t, path, "")
	pool.Refresh(context.Background(), false)
	require.Len(t, pool.Snapshot(), 2)

	time.Sleep(60 * time.Millisecond)
	pool.Refresh(context.Background(), false)
	snap = pool.Snapshot()
	require.Len(t, snap, 1)
	require.Equal(t, Fingerprint("new-key"), snap[0].Fingerprint)
}

func TestCommandSourceCachedWithTTL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	counter := filepath.Join(dir, "runs")
	writeKeyFile(t, path, "cmd-key-1")
	script := "echo run >> " + counter + " && cat " + path
	pool, err := NewKeyPool(context.Background(), KeysConfig{
		Sources: []KeySourceConfig{{Command: []string{"sh", "-c", script}, TTL: 100 * time.Millisecond}},
	}, nil, nil)
	require.NoError(t, err)
	runs := func() int {
		b, _ := os.ReadFile(counter)
		return len(b) / len("run\n")
	}
	require.Equal(t, 1, runs())
	require.Equal(t, "command:sh", pool.Snapshot()[0].Source)

	// Within the TTL, refreshes (and calls) do not run the command.
	writeKeyFile(t, path, "cmd-key-2")
	for range 5 {
		pool.Refresh(context.Background(), false)
	}
	require.Equal(t, 1, runs())
	require.Equal(t, Fingerprint("cmd-key-1"), pool.Snapshot()[0].Fingerprint)

	time.Sleep(120 * time.Millisecond)
	pool.Refresh(context.Background(), false)
	require.Equal(t, 2, runs())
	require.Equal(t, Fingerprint("cmd-key-2"), pool.Snapshot()[0].Fingerprint)
	require.Equal(t, "backup", pool.Snapshot()[1].State)

	// A failing command keeps the last keys.
	require.NoError(t, os.Remove(path))
	time.Sleep(120 * time.Millisecond)
	pool.Refresh(context.Background(), false)
	require.Equal(t, 3, runs())
	require.Equal(t, Fingerprint("cmd-key-2"), pool.Snapshot()[0].Fingerprint)
}

func TestKeyPoolConfigErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := NewKeyPool(ctx, KeysConfig{}, nil, nil)
	require.Error(t, err)
	_, err = NewKeyPool(ctx, KeysConfig{Sources: []KeySourceConfig{{Value: "a", Env: "B"}}}, nil, nil)
	require.ErrorContains(t, err, "exactly one")
	_, err = NewKeyPool(ctx, KeysConfig{Sources: []KeySourceConfig{{File: "/nonexistent/key"}}}, nil, nil)
	require.ErrorContains(t, err, "file:/nonexistent/key")
	_, err = NewKeyPool(ctx, KeysConfig{Sources: []KeySourceConfig{{Command: []string{"false"}}}}, nil, nil)
	require.ErrorContains(t, err, "command:false")
	_, err = NewKeyPool(ctx, KeysConfig{Sources: []KeySourceConfig{{Env: "AGENTD_TEST_UNSET_KEY_VAR"}}}, nil, nil)
	require.ErrorContains(t, err, "no key")
}

func TestKeyFromContextOverridesStaticKey(t *testing.T) {
	t.Parallel()
	gate := newKeyGate(newSim(sim.Config{}), "pool-key")
	p := newProvider(t, ProviderConfig{Keys: KeysConfig{Sources: []KeySourceConfig{{Value: "pool-key"}}}}, serve(t, gate, "static-key"), nil)
	_, _, err := call(context.Background(), p.Model(modelA), request("x"))
	require.NoError(t, err)
	used, _ := gate.counts("pool-key")
	require.Equal(t, 1, used)
	_, rejected := gate.counts("static-key")
	require.Zero(t, rejected)
}
