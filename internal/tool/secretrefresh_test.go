package tool

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSource is a secret source whose value and error the test sets.
type fakeSource struct {
	mu    sync.Mutex
	value string
	err   error
}

func (f *fakeSource) set(v string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.value, f.err = v, err
}

func (f *fakeSource) read(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value, f.err
}

func TestSecretRefresherRotatesWithGrace(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	secrets := NewSecrets(map[string]string{"tok": "old-value-1", "other": "fixed-value"})
	src := &fakeSource{value: "old-value-1"}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs strings.Builder
	var changed [][]string
	var rotated []string
	r := NewSecretRefresher(secrets, []SecretSource{{Name: "tok", Origin: "file:/x", Read: src.read}},
		SecretRefreshConfig{Grace: time.Minute},
		SecretRefreshOptions{Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m,
			Changed: func(v []string) { changed = append(changed, v) },
			Rotated: func(name string) { rotated = append(rotated, name) }, Now: func() time.Time { return now }})

	r.Refresh(t.Context()) // unchanged
	assert.Empty(t, changed)

	src.set("new-value-2", nil)
	r.Refresh(t.Context())
	v, err := secrets.Expand("Bearer {{secret:tok}}", nil)
	require.NoError(t, err)
	assert.Equal(t, "Bearer new-value-2", v)
	assert.Equal(t, "[secret:tok] [secret:tok] [secret:other]", secrets.Scrub("old-value-1 new-value-2 fixed-value"))
	require.Len(t, changed, 1)
	assert.Equal(t, []string{"fixed-value", "new-value-2", "old-value-1"}, changed[0])
	assert.Equal(t, []string{"tok"}, rotated)
	assert.Equal(t, 1.0, counter(t, reg, "agentd_tool_secret_rotations_total", "tok"))
	assert.Contains(t, logs.String(), "tool secret rotated")
	assert.Contains(t, logs.String(), "fingerprint="+fingerprint("new-value-2"))

	// Before the grace period ends, the old value is still scrubbed.
	now = now.Add(59 * time.Second)
	r.Refresh(t.Context())
	assert.Len(t, changed, 1)
	assert.Equal(t, "[secret:tok]", secrets.Scrub("old-value-1"))

	// After it, only the current value is.
	now = now.Add(time.Second)
	r.Refresh(t.Context())
	assert.Equal(t, "old-value-1 [secret:tok]", secrets.Scrub("old-value-1 new-value-2"))
	require.Len(t, changed, 2)
	assert.Equal(t, []string{"fixed-value", "new-value-2"}, changed[1])

	// Failed and empty reads keep the last good value; each is counted,
	// each distinct error logged once, without the value.
	src.set("", errors.New("open /x: no such file or directory"))
	r.Refresh(t.Context())
	r.Refresh(t.Context())
	src.set("", nil)
	r.Refresh(t.Context())
	v, err = secrets.Expand("{{secret:tok}}", nil)
	require.NoError(t, err)
	assert.Equal(t, "new-value-2", v)
	assert.Equal(t, 3.0, counter(t, reg, "agentd_tool_secret_refresh_failures_total", "tok"))
	assert.Equal(t, 2, strings.Count(logs.String(), "tool secret refresh failed"))
	assert.Contains(t, logs.String(), "no such file")
	assert.NotContains(t, logs.String(), "new-value-2")

	src.set("new-value-2", nil)
	r.Refresh(t.Context())
	assert.Contains(t, logs.String(), "tool secret refresh recovered")
	assert.Len(t, changed, 2)
	assert.Equal(t, []string{"tok"}, rotated, "only a replaced value counts as a rotation")
}

func TestSecretsRotateBackAndUnknown(t *testing.T) {
	now := time.Now()
	s := NewSecrets(map[string]string{"a": "value-one"})
	assert.False(t, s.Rotate("nope", "x-value", now, time.Hour))
	assert.False(t, s.Rotate("a", "value-one", now, time.Hour))
	require.True(t, s.Rotate("a", "value-two", now, time.Hour))
	// Rotating back: value-one is current again, value-two in its grace.
	require.True(t, s.Rotate("a", "value-one", now, time.Hour))
	assert.Equal(t, []string{"value-one", "value-two"}, s.Values())
	assert.True(t, s.Prune(now.Add(time.Hour)))
	assert.Equal(t, []string{"value-one"}, s.Values())
	assert.False(t, s.Prune(now.Add(2*time.Hour)))
	assert.Equal(t, []string{"a"}, s.Names())
	// Rotating through values retires each once.
	for range 3 {
		s.Rotate("a", "value-three", now, time.Hour)
		s.Rotate("a", "value-one", now, time.Hour)
	}
	assert.Len(t, s.retired, 1)
}

// Readers on the call path run while values rotate (go test -race).
func TestSecretsConcurrentRotateAndRead(t *testing.T) {
	s := NewSecrets(map[string]string{"a": "value-0000"})
	r := NewSecretRefresher(s, nil, SecretRefreshConfig{}, SecretRefreshOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			s.Rotate("a", "value-"+strings.Repeat("x", i%7+4), time.Now(), time.Hour)
			s.Prune(time.Now())
		}
	}()
	for range 2000 {
		v, err := s.Expand("{{secret:a}}", nil)
		require.NoError(t, err)
		assert.Equal(t, "[secret:a]", s.Scrub(v))
	}
	cancel()
	wg.Wait()
	require.NoError(t, r.Run(ctx)) // no source: waits for ctx, which ended
}

// counter reads a counter of reg by its secret label.
func counter(t *testing.T, reg *prometheus.Registry, name, secret string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "secret" && lp.GetValue() == secret {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
