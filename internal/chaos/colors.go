package chaos

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// A color is one side of a blue-green deploy: API instances and workers
// of one config (here: one system prompt for the agent "demo"), started
// beside the other color on the same store and queue.
type color struct {
	name    string // "blue", "green": also its HAProxy backend
	system  string // the agent's system prompt in its config
	cfg     string // its config file
	apis    []*Proc
	workers []*Proc
}

// newColor writes a color's config and describes its processes (on free
// ports, not started: start starts them). HAProxy can name them before
// they run.
func (e *Env) newColor(name, system, storeURL, simBase, toolURL string, apis, workers int) (*color, error) {
	cfg, err := e.configFile("agentd-"+name+".yaml", system, storeURL, "", simBase, toolURL)
	if err != nil {
		return nil, err
	}
	c := &color{name: name, system: system, cfg: cfg}
	for i := 1; i <= apis; i++ {
		p, err := e.newServe(fmt.Sprintf("%s-api%d", name, i), cfg, "api")
		if err != nil {
			return nil, err
		}
		c.apis = append(c.apis, p)
	}
	for i := 1; i <= workers; i++ {
		p, err := e.newServe(fmt.Sprintf("%s-worker%d", name, i), cfg, "worker")
		if err != nil {
			return nil, err
		}
		c.workers = append(c.workers, p)
	}
	return c, nil
}

// start starts every process of the color, one after the other (the
// first one migrates the schema), each ready before the next.
func (c *color) start(ctx context.Context) error {
	for _, p := range append(append([]*Proc(nil), c.apis...), c.workers...) {
		if err := p.startReady(ctx); err != nil {
			return err
		}
	}
	return nil
}

// stop sends SIGTERM to every process of the color at once (each drains)
// and waits for them to exit.
func (c *color) stop() {
	done := make(chan struct{})
	procs := append(append([]*Proc(nil), c.apis...), c.workers...)
	for _, p := range procs {
		go func() {
			p.Signal(syscall.SIGTERM)
			done <- struct{}{}
		}()
	}
	for range procs {
		<-done
	}
}

// colorLB is HAProxy in front of two colors: one backend per color, the
// live one chosen per request through a map (key "live" → backend), set
// at run time over the admin socket. This is the switch an operator
// makes: one command, atomic, every later request goes to the new color;
// requests in flight on the old one finish there. Both backends are
// health-checked all the time, so the idle color is seen UP before the
// switch. See docs/runbooks/blue-green.md.
type colorLB struct {
	*Proc
	sock    string // the admin socket (stats socket, level admin)
	mapFile string // the map file: "live COLOR"
}

// colorLBConfig is the HAProxy config of a colorLB listening on port.
func colorLBConfig(port int, sock, mapFile, live string, colors ...*color) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  maxconn 4096\n  stats socket %s mode 600 level admin\n%s", sock, haproxyDefaults)
	fmt.Fprintf(&b, "frontend api\n  bind 127.0.0.1:%d\n", port)
	fmt.Fprintf(&b, "  use_backend %%[str(live),map(%s,%s)]\n  default_backend %s\n", mapFile, live, live)
	fmt.Fprintf(&b, "  http-response set-header %s %%b/%%s\n", serverHeader)
	for _, c := range colors {
		fmt.Fprintf(&b, "backend %s\n  balance roundrobin\n  option httpchk GET /readyz\n%s", c.name, haproxyServers(c.apis))
	}
	return b.String()
}

// startColorLB starts HAProxy in front of colors with live getting the
// traffic.
func (e *Env) startColorLB(ctx context.Context, live string, colors ...*color) (*colorLB, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	lb := &colorLB{sock: filepath.Join(e.Dir, "haproxy.sock"), mapFile: filepath.Join(e.Dir, "live.map")}
	if err := os.WriteFile(lb.mapFile, []byte("live "+live+"\n"), 0o644); err != nil {
		return nil, err
	}
	if lb.Proc, err = e.startHAProxy(ctx, port, "haproxy", colorLBConfig(port, lb.sock, lb.mapFile, live, colors...)); err != nil {
		return nil, err
	}
	return lb, nil
}

// command sends one command to HAProxy's admin socket (its runtime API:
// what `echo CMD | socat stdio SOCKET` does) and returns the answer.
func (lb *colorLB) command(ctx context.Context, cmd string) (string, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", lb.sock)
	if err != nil {
		return "", fmt.Errorf("haproxy admin socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy %q: %w", cmd, err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("haproxy %q: %w", cmd, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Switch sends the live traffic to color to: `set map` (effective at
// once), then the map file (so that a reload or restart keeps it). It
// returns how long the runtime command took.
func (lb *colorLB) Switch(ctx context.Context, to string) (time.Duration, error) {
	start := time.Now()
	out, err := lb.command(ctx, fmt.Sprintf("set map %s live %s", lb.mapFile, to))
	took := time.Since(start)
	if err != nil {
		return took, err
	}
	if out != "" { // success is an empty answer
		return took, fmt.Errorf("haproxy set map: %s", out)
	}
	return took, os.WriteFile(lb.mapFile, []byte("live "+to+"\n"), 0o644)
}

// Live is the live color, as HAProxy has it (`show map`).
func (lb *colorLB) Live(ctx context.Context) (string, error) {
	out, err := lb.command(ctx, "show map "+lb.mapFile)
	if err != nil {
		return "", err
	}
	// Lines: "0x55d5c0a1b2c0 live green".
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "live" {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("haproxy show map %s: no key live in %q", lb.mapFile, out)
}

// serverStatus is every server's status of backend (`show stat`: UP,
// DOWN, MAINT…).
func (lb *colorLB) serverStatus(ctx context.Context, backend string) (map[string]string, error) {
	out, err := lb.command(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return parseStat(out, backend)
}

// parseStat reads `show stat` CSV (header "# pxname,svname,…,status,…")
// into server → status for one backend.
func parseStat(out, backend string) (map[string]string, error) {
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("haproxy show stat: %v: %q", err, out)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	px, sv, st := col["pxname"], col["svname"], col["status"]
	if st == 0 {
		return nil, fmt.Errorf("haproxy show stat: no status column in %q", rows[0])
	}
	out2 := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > st && row[px] == backend && row[sv] != "FRONTEND" && row[sv] != "BACKEND" {
			out2[row[sv]] = row[st]
		}
	}
	return out2, nil
}

// waitUp waits until HAProxy sees every server of color c UP: what an
// operator checks before switching to it.
func (lb *colorLB) waitUp(ctx context.Context, c *color, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		st, err := lb.serverStatus(ctx, c.name)
		up := err == nil && len(st) == len(c.apis)
		for _, s := range st {
			up = up && s == "UP"
		}
		if up {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HAProxy does not see every server of %s UP within %s: %v %v", c.name, within, st, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// simSystems is the sim's ledger of system prompts: per conversation (the
// text of its first user message), requests per system prompt (its text).
func simSystems(sim *Proc) (map[string]map[string]int, error) {
	resp, err := client.Get(sim.Base() + "/sim/ledger")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Systems map[string]map[string]int `json:"systems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return systemsByText(body.Systems), nil
}

// systemsByText re-keys the sim's systems ledger by the text of the first
// user message and of the system prompt (a JSON string or text blocks).
func systemsByText(systems map[string]map[string]int) map[string]map[string]int {
	byFirst := make(map[string]map[string]int, len(systems))
	for first, counts := range systems {
		m := make(map[string]int, len(counts))
		for sys, n := range counts {
			m[jsonText(sys)] += n
		}
		byFirst[jsonText(first)] = m
	}
	return byFirst
}

// jsonText is the text of raw content: a JSON string, or the texts of an
// array of blocks; raw itself when it is neither.
func jsonText(raw string) string {
	var blocks []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal([]byte(raw), &blocks) == nil {
		var t strings.Builder
		for _, b := range blocks {
			t.WriteString(b.Text)
		}
		return t.String()
	}
	var s string
	if json.Unmarshal([]byte(raw), &s) == nil {
		return s
	}
	return raw
}

// blueLive starts blue, and HAProxy in front of blue and green with blue
// live, and waits until HAProxy sees blue UP (green is defined, not
// started).
func (e *Env) blueLive(ctx context.Context, blue, green *color) (*colorLB, error) {
	if err := blue.start(ctx); err != nil {
		return nil, err
	}
	lb, err := e.startColorLB(ctx, "blue", blue, green)
	if err != nil {
		return nil, err
	}
	if err := lb.waitUp(ctx, blue, 30*time.Second); err != nil {
		return nil, err
	}
	return lb, nil
}
