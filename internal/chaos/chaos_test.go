package chaos

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The scenarios themselves run in .ci/run (they start PostgreSQL, Redis
// and HAProxy); these check the kit's own arithmetic.

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, percentile(d, 0.5))
	require.Equal(t, 99*time.Millisecond, percentile(d, 0.99))
	require.Equal(t, 100*time.Millisecond, percentile(d, 1))
	require.Zero(t, percentile(nil, 0.5))
}

func TestLedgerByText(t *testing.T) {
	got := ledgerByText(map[string]map[int]int{
		`[{"type":"text","text":"chaos run 00001: use the counter"}]`: {1: 1, 3: 2},
		`"plain"`: {1: 1},
	})
	require.Equal(t, map[int]int{1: 1, 3: 2}, got["chaos run 00001: use the counter"])
	require.Equal(t, map[int]int{1: 1}, got["plain"])
}

func TestLogTimesAndCorruptPages(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.log")
	require.NoError(t, os.WriteFile(p, []byte(`{"time":"2026-12-06T02:53:05.7Z","msg":"resuming run"}
not json resuming run
{"time":"2026-12-06T02:53:06Z","msg":"resuming run later"}
`), 0o600))
	ts := logTimes(p, "resuming run")
	require.Len(t, ts, 1)
	require.Equal(t, 2026, ts[0].Year())

	raw := bytes.Repeat([]byte{1}, 5*4096)
	bad := corruptPages(raw)
	require.Len(t, bad, len(raw))
	require.Equal(t, raw[:4096], bad[:4096], "the header page is kept")
	require.NotEqual(t, raw, bad)
}
