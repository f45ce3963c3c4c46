package chaos

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

func TestSwitchFigures(t *testing.T) {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s := colorSwitch{from: "blue", to: "green", at: at}
	ms := func(n int) time.Time { return at.Add(time.Duration(n) * time.Millisecond) }
	results := []result{
		{start: ms(-50), at: ms(-10), server: "blue/blue-api1"}, // before: not counted
		{start: ms(-20), at: ms(80), server: "blue/blue-api2"},  // in flight on blue
		{start: ms(-5), at: ms(30), server: "blue/blue-api1"},   // in flight on blue
		{start: ms(1), at: ms(40), server: "green/green-api1"},  // after, to green
		{start: ms(2), at: ms(45), server: "blue/blue-api1"},    // after, to blue: a failed switch
		{start: ms(500), at: ms(520), server: "blue/blue-api1"}, // after the next switch: not counted
	}
	f := switchFiguresOf(results, s, ms(400))
	require.Equal(t, switchFigures{sentAfter: 2, toNew: 1, toOld: 1, oldLag: 2 * time.Millisecond, inFlightOld: 2, lastOld: 80 * time.Millisecond}, f)
	require.Equal(t, "green", colorOf("green/green-api1"))
	require.Empty(t, colorOf(""))
}

func TestParseStat(t *testing.T) {
	out := "# pxname,svname,qcur,status,weight\n" +
		"api,FRONTEND,,OPEN,\n" +
		"green,green-api1,0,UP,1\n" +
		"green,green-api2,0,DOWN,1\n" +
		"green,BACKEND,0,UP,2\n" +
		"blue,blue-api1,0,UP,1\n"
	st, err := parseStat(out, "green")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"green-api1": "UP", "green-api2": "DOWN"}, st)
	_, err = parseStat("# pxname,svname\napi,FRONTEND\n", "green")
	require.Error(t, err, "no status column")
}

func TestSystemsByTextAndMerge(t *testing.T) {
	blue := systemsByText(map[string]map[string]int{
		`[{"type":"text","text":"chaos r2b run 00001"}]`: {`[{"type":"text","text":"A"}]`: 1},
	})
	green := systemsByText(map[string]map[string]int{
		`[{"type":"text","text":"chaos r2b run 00001"}]`: {`"A"`: 1},
		`"chaos r2b run after 00001"`:                    {`[{"type":"text","text":"B"}]`: 2},
	})
	require.Equal(t, map[string]map[string]int{
		"chaos r2b run 00001":       {"A": 2},
		"chaos r2b run after 00001": {"B": 2},
	}, mergeSystems(blue, green))
}

// The blue-green HAProxy config is one HAProxy accepts (haproxy -c), and
// the switch over its admin socket moves requests between two real
// backends and back.
func TestColorLBSwitch(t *testing.T) {
	if _, err := Need("haproxy", "haproxy"); err != nil {
		t.Skip(err)
	}
	e, err := NewEnv("", io.Discard, false)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	backend := func(name string) *Proc {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		port, _ := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
		return &Proc{Name: name + "-api1", Port: port}
	}
	blue := &color{name: "blue", apis: []*Proc{backend("blue")}}
	green := &color{name: "green", apis: []*Proc{backend("green")}}
	lb, err := e.startColorLB(t.Context(), "blue", blue, green)
	require.NoError(t, err)
	out, err := exec.Command("haproxy", "-c", "-f", filepath.Join(e.Dir, "haproxy.cfg")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, lb.waitUp(t.Context(), green, 10*time.Second))
	get := func() string {
		resp, err := client.Get(lb.Base() + "/x")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, colorOf(resp.Header.Get(serverHeader)), string(b), "the header names the backend that answered")
		return string(b)
	}
	require.Equal(t, "blue", get())
	for _, to := range []string{"green", "blue", "green"} {
		_, err := lb.Switch(t.Context(), to)
		require.NoError(t, err)
		live, err := lb.Live(t.Context())
		require.NoError(t, err)
		require.Equal(t, to, live)
		for range 3 {
			require.Equal(t, to, get())
		}
		m, err := os.ReadFile(lb.mapFile)
		require.NoError(t, err)
		require.Equal(t, "live "+to+"\n", string(m), "the map file keeps the live color for a reload")
	}
}
