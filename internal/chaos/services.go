package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Postgres is a PostgreSQL instance of the scenario's own (initdb in the
// temp dir, a free port), run as the postgres user when we are root.
type Postgres struct {
	Port    int
	dataDir string
	bin     string
	asUser  string // "postgres" when root
	e       *Env
}

// URL is the store URL of the instance's database postgres.
func (pg *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.Port)
}

func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("initdb not found (in /usr/lib/postgresql/*/bin or PATH): install the Debian package postgresql")
}

func (pg *Postgres) run(ctx context.Context, name string, args ...string) error {
	argv := append([]string{filepath.Join(pg.bin, name)}, args...)
	if pg.asUser != "" {
		argv = append([]string{"runuser", "-u", pg.asUser, "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// StartPostgres initialises and starts an instance.
func (e *Env) StartPostgres(ctx context.Context) (*Postgres, error) {
	return e.startPostgres(ctx, "pgdata", "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
}

// startPostgres initialises an instance in e.Dir/name with extra
// postgresql.conf lines and starts it.
func (e *Env) startPostgres(ctx context.Context, name, extra string) (*Postgres, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Port: port, dataDir: filepath.Join(e.Dir, name), bin: bin, e: e}
	if err := pg.ownDir(pg.dataDir); err != nil {
		return nil, err
	}
	if err := pg.run(ctx, "initdb", "-D", pg.dataDir, "-U", "postgres", "-A", "trust", "--no-sync"); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"max_connections = 200\nshared_buffers = 64MB\n%s", port, pg.dataDir, extra)
	f, err := os.OpenFile(filepath.Join(pg.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		return nil, err
	}
	e.onClose(pg.stopper())
	if err := pg.Start(ctx); err != nil {
		return nil, err
	}
	return pg, nil
}

// ownDir makes dir (0700) for PostgreSQL: owned by the postgres user when
// we are root (PostgreSQL refuses to run as root).
func (pg *Postgres) ownDir(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	pg.asUser = "postgres"
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a postgres user to run PostgreSQL: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, uid, gid)
}

func (pg *Postgres) stopper() func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = pg.run(ctx, "pg_ctl", "-D", pg.dataDir, "-m", "immediate", "-w", "stop")
	}
}

// Standby makes a streaming replica of pg with pg_basebackup (in
// e.Dir/name, application_name appName, a port of its own) and starts it.
func (pg *Postgres) Standby(ctx context.Context, name, appName string) (*Postgres, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	sb := &Postgres{Port: port, dataDir: filepath.Join(pg.e.Dir, name), bin: pg.bin, e: pg.e}
	if err := sb.ownDir(sb.dataDir); err != nil {
		return nil, err
	}
	if err := sb.run(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres",
		"-D", sb.dataDir, "-X", "stream", "--no-sync"); err != nil {
		return nil, err
	}
	// The standby's own config names no synchronous standby: promoted, it
	// would otherwise wait for one on every commit (forever: there is
	// none). docs/runbooks/postgres-failover.md says the same.
	conf := fmt.Sprintf("port = %d\nprimary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'\n"+
		"synchronous_standby_names = ''\n", port, pg.Port, appName)
	f, err := os.OpenFile(filepath.Join(sb.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(sb.dataDir, "standby.signal"), nil, 0o600); err != nil {
		return nil, err
	}
	if pg.asUser != "" {
		if err := exec.CommandContext(ctx, "chown", "postgres:", filepath.Join(sb.dataDir, "standby.signal")).Run(); err != nil {
			return nil, err
		}
	}
	pg.e.onClose(sb.stopper())
	if err := sb.Start(ctx); err != nil {
		return nil, err
	}
	return sb, nil
}

// Promote promotes a standby and waits until it accepts writes.
func (pg *Postgres) Promote(ctx context.Context) error {
	return pg.run(ctx, "pg_ctl", "-D", pg.dataDir, "-w", "-t", "60", "promote")
}

// Crash stops the instance at once (immediate: no shutdown checkpoint, as
// a crash).
func (pg *Postgres) Crash(ctx context.Context) error {
	return pg.run(ctx, "pg_ctl", "-D", pg.dataDir, "-m", "immediate", "-w", "stop")
}

// Start starts the instance and waits for it to accept connections.
func (pg *Postgres) Start(ctx context.Context) error {
	return pg.run(ctx, "pg_ctl", "-D", pg.dataDir, "-l", filepath.Join(pg.dataDir, "server.log"), "-w", "-t", "60", "start")
}

// Stop stops it (mode fast: connections are cut, as in a restart).
func (pg *Postgres) Stop(ctx context.Context) error {
	return pg.run(ctx, "pg_ctl", "-D", pg.dataDir, "-m", "fast", "-w", "-t", "60", "stop")
}

// StartRedis starts a redis-server of the scenario's own.
func (e *Env) StartRedis(ctx context.Context) (*Proc, error) {
	bin, err := Need("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := e.NewProc("redis", port, nil, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", e.Dir)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, waitTCP(ctx, p, 15*time.Second)
}

func waitTCP(ctx context.Context, p *Proc, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.Running() || time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %d: %s", p.Name, p.Port, Tail(p.Log, 10))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// haproxyDefaults is the HAProxy config the kit's proxies share: health
// checks on /readyz, retries (on another server) of requests that failed
// to connect or got an empty answer, and each answer names the server that
// gave it (header X-Agentd-Server: backend/server).
const haproxyDefaults = `defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 3
  option redispatch
  retry-on conn-failure empty-response response-timeout
`

// serverHeader is the answer header HAProxy sets to backend/server.
const serverHeader = "X-Agentd-Server"

// haproxyServers is a backend's server lines, one per instance, checked
// every 500 ms.
func haproxyServers(apis []*Proc) string {
	var b strings.Builder
	for _, a := range apis {
		fmt.Fprintf(&b, "  server %s 127.0.0.1:%d check inter 500ms fall 2 rise 1\n", a.Name, a.Port)
	}
	return b.String()
}

// StartHAProxy starts HAProxy in front of the API instances: health
// checks on /readyz every 500 ms, retries (on another server) of requests
// that failed to connect or got an empty answer.
func (e *Env) StartHAProxy(ctx context.Context, apis []*Proc) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`global
  maxconn 4096
%sfrontend api
  bind 127.0.0.1:%d
  http-response set-header %s %%b/%%s
  default_backend agentd
backend agentd
  balance roundrobin
  option httpchk GET /readyz
%s`, haproxyDefaults, port, serverHeader, haproxyServers(apis))
	return e.startHAProxy(ctx, port, "haproxy", cfg)
}

// startHAProxy writes cfg to e.Dir/name.cfg and starts HAProxy on it
// (listening on port).
func (e *Env) startHAProxy(ctx context.Context, port int, name, cfg string) (*Proc, error) {
	bin, err := Need("haproxy", "haproxy")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(e.Dir, name+".cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p := e.NewProc(name, port, nil, bin, "-db", "-f", path)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, waitTCP(ctx, p, 15*time.Second)
}

// StartSim starts `agentd sim` with its ledger (requests per conversation
// and message count) and the given latency.
func (e *Env) StartSim(ctx context.Context, latency time.Duration) (*Proc, error) {
	return e.startSimNamed(ctx, "sim", latency)
}

// startSimNamed is StartSim with the process named name (its log name).
func (e *Env) startSimNamed(ctx context.Context, name string, latency time.Duration) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := e.NewProc(name, port, nil, e.Bin, "sim", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-api-key", "k",
		"-ledger", "-seed", "1", "-latency", latency.String())
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, WaitHTTP(ctx, p.Base()+"/sim/ledger", 30*time.Second, p)
}

// Serve starts `agentd serve -role role` on a free port with config cfg
// and waits for /readyz.
func (e *Env) Serve(ctx context.Context, name, cfg, role string) (*Proc, error) {
	p, err := e.newServe(name, cfg, role)
	if err != nil {
		return nil, err
	}
	return p, p.startReady(ctx)
}

// newServe describes `agentd serve -role role` on a free port (not
// started: startReady starts it).
func (e *Env) newServe(name, cfg, role string) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return e.NewProc(name, port, []string{fmt.Sprintf("AGENTD_SERVER_ADDR=127.0.0.1:%d", port)},
		e.Bin, "serve", "-config", cfg, "-role", role), nil
}

// startReady starts an agentd instance and waits for its /readyz.
func (p *Proc) startReady(ctx context.Context) error {
	if err := p.Start(); err != nil {
		return err
	}
	return WaitHTTP(ctx, p.Base()+"/readyz", 90*time.Second, p)
}

// defaultSystem is the agent's system prompt in the kit's config.
const defaultSystem = "Use the tools when they help."

// Config writes the agentd config shared by the scenario's processes.
// The agent "demo" has the built-in clock and the HTTP tool "counter"
// (consequential: it gets an Idempotency-Key) served by tools.
func (e *Env) Config(storeURL, redisURL, simBase, toolURL string) (string, error) {
	return e.configFile("agentd.yaml", defaultSystem, storeURL, redisURL, simBase, toolURL)
}

// configFile writes the config of Config with the agent's system prompt
// system to e.Dir/name.
func (e *Env) configFile(name, system, storeURL, redisURL, simBase, toolURL string) (string, error) {
	redis := ""
	if redisURL != "" {
		redis = fmt.Sprintf("redis:\n  url: %q\n  timeout: 200ms\n  dial_timeout: 200ms\n", redisURL)
	}
	cfg := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_timeout: 5s
store:
  url: %q
%sworker:
  concurrency: 50
  lease_ttl: 3s
  reclaim_interval: 500ms
  poll_interval: 100ms
providers:
  anthropic:
    base_url: %s
    api_key: k
    simulate: never
    request_timeout: 30s
auth:
  mode: none
log:
  level: info
  format: json
tools:
  http:
    - name: counter
      description: Counts calls.
      method: post
      url: %s
      allow_private: true
      consequential: true
      timeout: 5s
      input_schema: {type: object, properties: {n: {type: integer}}}
agents:
  - name: demo
    model: claude-sonnet-4-5
    system: %q
    tools: [clock, counter]
    max_steps: 8
    timeout: 2m
`, storeURL, redis, simBase, toolURL, system)
	path := filepath.Join(e.Dir, name)
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// ToolServer is the HTTP tool "counter": it counts calls per
// Idempotency-Key (run:step:tool_use), so a repeated tool call is seen at
// the tool.
type ToolServer struct {
	URL string
	mu  sync.Mutex
	n   map[string]int
	srv *http.Server
}

// StartToolServer serves the counter on a free port.
func (e *Env) StartToolServer() (*ToolServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ts := &ToolServer{URL: "http://" + ln.Addr().String() + "/count", n: map[string]int{}}
	ts.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.n[r.Header.Get("Idempotency-Key")]++
		c := ts.n[r.Header.Get("Idempotency-Key")]
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"count": c})
	})}
	go func() { _ = ts.srv.Serve(ln) }()
	e.onClose(func() { _ = ts.srv.Close() })
	return ts, nil
}

// Calls returns the calls per idempotency key.
func (ts *ToolServer) Calls() map[string]int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make(map[string]int, len(ts.n))
	for k, v := range ts.n {
		out[k] = v
	}
	return out
}

// SimLedger is the sim's ledger: per conversation (the JSON of its first
// user message), requests per message count.
func SimLedger(sim *Proc) (int64, map[string]map[int]int, error) {
	resp, err := client.Get(sim.Base() + "/sim/ledger")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Requests int64                  `json:"requests"`
		Ledger   map[string]map[int]int `json:"ledger"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, nil, err
	}
	return body.Requests, body.Ledger, nil
}

// Query runs one SQL query with psql on the instance and returns its
// output (unaligned, tuples only).
func (pg *Postgres) Query(ctx context.Context, sql string) (string, error) {
	argv := []string{filepath.Join(pg.bin, "psql"), "-X", "-tA", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres", "-d", "postgres", "-c", sql}
	if pg.asUser != "" {
		argv = append([]string{"runuser", "-u", pg.asUser, "--"}, argv...)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %w: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
