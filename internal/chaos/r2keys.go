package chaos

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/sim"
)

// R2KeysConfig is the model-key rotation scenario (the second part of R2).
type R2KeysConfig struct {
	Rate    float64
	Latency time.Duration
}

func (c *R2KeysConfig) flags(fs *flag.FlagSet) {
	fs.Float64Var(&c.Rate, "rate", 20, "chats per second")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "the simulated model's latency")
}

// RunR2Keys rotates the upstream API key twice under chat load through
// HAProxy, with the key in a file source agentd re-reads (as a mounted
// Kubernetes secret): a routine rotation (the upstream accepts both keys,
// the file gets the new one, the old key is revoked after agentd moved)
// and a compromise (the file adds a third key after the current one, and
// the upstream revokes the current one while agentd still uses it first:
// its calls get 401 and move to the next key). Revoking a key before
// agentd has read its successor fails calls until the next poll: the
// runbook (key-rotation.md) adds the new key first.
// 0 failed client requests. The upstream is a sim inside the kit, so the
// scenario can change the keys it accepts.
func RunR2Keys(ctx context.Context, e *Env, cfg R2KeysConfig) error {
	t0 := time.Now()
	s := sim.New(sim.Config{Latency: cfg.Latency}, nil)
	s.SetAPIKeys("key-1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	e.onClose(func() { _ = srv.Close() })
	simBase := "http://" + ln.Addr().String()

	keyFile := filepath.Join(e.Dir, "anthropic-keys")
	if err := os.WriteFile(keyFile, []byte("key-1\n"), 0o644); err != nil {
		return err
	}
	pg, err := e.StartPostgres(ctx)
	if err != nil {
		return err
	}
	tools, err := e.StartToolServer()
	if err != nil {
		return err
	}
	cfgPath, err := e.Config(pg.URL(), "", simBase, tools.URL)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	keys := fmt.Sprintf("    keys:\n      sources: [{file: %q}]\n      poll_interval: 500ms\n      grace: 1m\n", keyFile)
	conf := strings.Replace(string(raw), "    api_key: k\n", keys, 1)
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		return err
	}
	c := &cluster{pg: pg, cfg: cfgPath}
	for i := 1; i <= 2; i++ {
		a, err := e.Serve(ctx, fmt.Sprintf("api%d", i), cfgPath, "all")
		if err != nil {
			return err
		}
		c.apis = append(c.apis, a)
	}
	if c.lb, err = e.StartHAProxy(ctx, c.apis); err != nil {
		return err
	}
	e.Logf("R2-keys: 2 instances behind HAProxy :%d, key file %s, up in %s", c.lb.Port, keyFile, time.Since(t0).Round(time.Millisecond))
	l := startLoad(c.lb.Base(), cfg.Rate, false)
	step := func(d time.Duration, what string, f func() error) error {
		if err := sleep(ctx, d); err != nil {
			return err
		}
		e.Logf("R2-keys: %s", what)
		return f()
	}
	write := func(k string) func() error {
		return func() error { return os.WriteFile(keyFile, []byte(k+"\n"), 0o644) }
	}
	steps := []struct {
		wait time.Duration
		what string
		f    func() error
	}{
		{3 * time.Second, "routine: the upstream accepts key-1 and key-2", func() error { s.SetAPIKeys("key-1", "key-2"); return nil }},
		{time.Second, "routine: the key file holds key-2", write("key-2")},
		{5 * time.Second, "routine: key-1 revoked upstream", func() error { s.SetAPIKeys("key-2"); return nil }},
		{5 * time.Second, "compromise: the key file holds key-2 then key-3, the upstream accepts both", func() error {
			s.SetAPIKeys("key-2", "key-3")
			return write("key-2\nkey-3")()
		}},
		// Once agentd has read the file (poll 500 ms): revoked while it is
		// still the primary, key-2 gets 401s, is marked bad and each call
		// is retried with key-3.
		{2 * time.Second, "compromise: key-2 revoked upstream while it is agentd's primary", func() error { s.SetAPIKeys("key-3"); return nil }},
	}
	for _, st := range steps {
		if err := step(st.wait, st.what, st.f); err != nil {
			return err
		}
	}
	if err := sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	results := l.Stop()
	failed := 0
	codes := map[int]int{}
	for _, r := range results {
		codes[r.status]++
		if r.status != http.StatusOK {
			failed++
			if failed <= 3 {
				e.Logf("R2-keys: failed: %d %s", r.status, r.err)
			}
		}
	}
	ok := failed == 0 && len(results) > 0
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(e.Out, "R2-keys %s chats=%d failed=%d answers_by_status=%v rotations=2 (routine, compromise) rate=%.0f/s wall=%s\n",
		verdict, len(results), failed, codes, cfg.Rate, time.Since(t0).Round(time.Second))
	if !ok {
		return errVerdict
	}
	return nil
}
