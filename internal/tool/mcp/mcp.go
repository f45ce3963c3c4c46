// Package mcp attaches the tools of MCP servers to agentd, through the
// official Go SDK (github.com/modelcontextprotocol/go-sdk): stdio servers
// (a command agentd starts, supervises and restarts with back-off) and
// streamable-HTTP servers. A Server discovers its tools with ListTools when
// it connects (and again on every reconnect and on a tools/list_changed
// notification) and hands out one tool.Tool per allowed tool.
package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/urlscope"
)

// Defaults of Config.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultMinBackoff     = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	// maxTools caps how many tools one server may offer.
	maxTools = 1000
	// stableAfter: a session that lived this long resets the back-off.
	stableAfter = 30 * time.Second
	// callWaitForSession is how long a call waits for a server that is
	// (re)connecting before it fails as unavailable.
	callWaitForSession = 3 * time.Second
)

// MetaIdempotencyKey is the _meta key of the idempotency key agentd sends
// with every call of a consequential MCP tool.
const MetaIdempotencyKey = "io.agentd/idempotency-key"

// Config is one MCP server. Exactly one of Command and URL is set.
type Config struct {
	// Name identifies the server in config, logs and metrics. Required.
	Name string
	// Command starts a stdio server: argv, no shell.
	Command []string
	// Env are extra environment variables of a stdio server; values may
	// hold {{secret:NAME}}. The server also gets PATH, HOME, TMPDIR, LANG,
	// TZ and the Go toolchain variables of agentd's environment, nothing
	// else (in particular not agentd's own credentials).
	Env map[string]string
	// Dir is a stdio server's working directory; "": agentd's.
	Dir string
	// URL of a streamable-HTTP server.
	URL string
	// Headers of every HTTP request to URL; values may hold {{secret:NAME}}.
	Headers map[string]string
	// ConnectTimeout bounds connecting and listing tools.
	ConnectTimeout time.Duration
	// MinBackoff and MaxBackoff bound the (jittered, doubling) delay
	// between reconnection attempts.
	MinBackoff, MaxBackoff time.Duration
	// ToolPrefix is put before each tool's name in what the model sees
	// (e.g. "demo_" makes "echo" "demo_echo").
	ToolPrefix string
	Secrets    *tool.Secrets
	Log        *slog.Logger
	Metrics    *tool.Metrics
	// HTTPClient for URL; nil: a default client. Headers are added on top.
	HTTPClient *http.Client
	// Breaker is the breaker of the server's requests when HTTPClient
	// goes through it (mcp.Pool): while it is open, a call or a wait for
	// a reconnection fails at once. nil: none (configured servers' tools
	// have theirs in tool.Guard).
	Breaker *breaker.Breaker
}

// Server is one configured MCP server and its supervised session.
type Server struct {
	cfg    Config
	client *sdk.Client
	log    *slog.Logger

	mu        sync.Mutex
	session   *sdk.ClientSession
	tools     map[string]discovered // by the server's tool name
	lastErr   error
	connected chan struct{} // closed while a session is up; replaced when it goes
	kick      chan struct{} // a call saw the session break
	rotated   chan struct{} // a secret of a stdio server's env changed

	cancel context.CancelFunc
	done   chan struct{}
}

type discovered struct {
	spec   llm.ToolSpec // with the server's name
	output *tool.Schema // nil: no output schema (or one agentd cannot read)
}

// New checks cfg and returns the (not yet started) server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("name: required")
	case len(cfg.Command) > 0 && cfg.URL != "":
		return nil, errors.New("set either command (stdio) or url (streamable HTTP), not both")
	case len(cfg.Command) == 0 && cfg.URL == "":
		return nil, errors.New("command or url is required")
	}
	for k, v := range cfg.Env {
		if _, err := cfg.Secrets.Expand(v, nil); err != nil {
			return nil, fmt.Errorf("env.%s: %w", k, err)
		}
	}
	for k, v := range cfg.Headers {
		if _, err := cfg.Secrets.Expand(v, nil); err != nil {
			return nil, fmt.Errorf("headers.%s: %w", k, err)
		}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Log.With("mcp_server", cfg.Name),
		tools:     map[string]discovered{},
		connected: make(chan struct{}),
		kick:      make(chan struct{}, 1),
		rotated:   make(chan struct{}, 1),
		lastErr:   errors.New("not started"),
	}
	s.client = sdk.NewClient(&sdk.Implementation{Name: "agentd", Version: "1"}, &sdk.ClientOptions{
		Logger:    s.log,
		KeepAlive: 30 * time.Second,
		ToolListChangedHandler: func(ctx context.Context, req *sdk.ToolListChangedRequest) {
			go s.refresh(req.Session)
		},
	})
	return s, nil
}

// Name is the server's name.
func (s *Server) Name() string { return s.cfg.Name }

// Start starts the supervisor and waits until the server is connected and
// its tools are listed, or ConnectTimeout passed, or ctx ended. An error
// means the first attempt failed; the supervisor keeps trying in the
// background until Stop, so agentd can serve without the server.
func (s *Server) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.done = make(chan struct{})
	first := make(chan error, 1)
	go s.supervise(runCtx, first)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the session (a stdio server gets EOF on stdin, then SIGTERM,
// then SIGKILL) and the supervisor.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
}

// SecretRotated tells the server that secret name has a new value. A stdio
// server whose env uses it is restarted, since a process's environment is
// fixed when it starts (calls in flight on it fail); HTTP headers take the
// new value with the next request and need nothing.
func (s *Server) SecretRotated(name string) {
	if len(s.cfg.Command) == 0 {
		return
	}
	for _, v := range s.cfg.Env {
		refs, _ := tool.TemplateRefs(v)
		if slices.Contains(refs, "secret:"+name) {
			s.log.Info("MCP server: a secret of its env was rotated; restarting it", "secret", name)
			select {
			case s.rotated <- struct{}{}:
			default:
			}
			return
		}
	}
}

// ToolNames returns the names of the tools the server offers now, sorted.
func (s *Server) ToolNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.tools))
	for n := range s.tools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Err returns why the server is not connected, nil while it is.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session != nil {
		return nil
	}
	return s.lastErr
}

func (s *Server) supervise(ctx context.Context, first chan<- error) {
	defer close(s.done)
	backoff := s.cfg.MinBackoff
	attempt := 0
	for {
		if attempt > 0 {
			s.cfg.Metrics.ServerRestart(s.cfg.Name)
		}
		attempt++
		// This attempt reads the secrets as they are now: a rotation
		// signalled before it needs no further restart.
		select {
		case <-s.rotated:
		default:
		}
		cs, err := s.connect(ctx)
		if first != nil {
			first <- err
			first = nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("MCP server: cannot connect; retrying", "err", s.cfg.Secrets.Scrub(err.Error()), "retry_in", backoff)
		} else {
			since := time.Now()
			waitDone := make(chan struct{})
			go func() { _ = cs.Wait(); close(waitDone) }()
			var reason string
			select {
			case <-ctx.Done():
				reason = "stopping"
			case <-waitDone:
				reason = "connection closed (server exited or dropped the connection)"
			case <-s.kick:
				reason = "a call found the connection broken"
			case <-s.rotated:
				reason = "a secret of its environment was rotated"
			}
			s.drop(cs, errors.New(reason))
			_ = cs.Close()
			if ctx.Err() != nil {
				s.log.Info("MCP server stopped")
				return
			}
			s.log.Warn("MCP server disconnected; reconnecting", "reason", reason, "uptime", time.Since(since).Round(time.Millisecond))
			if time.Since(since) > stableAfter {
				backoff = s.cfg.MinBackoff
			}
		}
		// Full jitter around the back-off keeps restarts of many agentd
		// instances apart.
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// connect opens a session and lists the tools.
func (s *Server) connect(ctx context.Context) (*sdk.ClientSession, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	t, err := s.transport(ctx)
	if err != nil {
		s.setErr(err)
		return nil, err
	}
	cs, err := s.client.Connect(cctx, t, nil)
	if err != nil {
		err = fmt.Errorf("connect: %w", err)
		s.setErr(err)
		return nil, err
	}
	tools, err := s.list(cctx, cs)
	if err != nil {
		_ = cs.Close()
		err = fmt.Errorf("list tools: %w", err)
		s.setErr(err)
		return nil, err
	}
	s.mu.Lock()
	s.session, s.tools, s.lastErr = cs, tools, nil
	close(s.connected)
	s.mu.Unlock()
	s.cfg.Metrics.ServerUp(s.cfg.Name, true)
	s.log.Info("MCP server connected", "tools", s.ToolNames())
	return cs, nil
}

func (s *Server) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// drop forgets session cs (if it is still current).
func (s *Server) drop(cs *sdk.ClientSession, why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session != cs {
		return
	}
	s.session, s.lastErr = nil, why
	s.connected = make(chan struct{})
	s.cfg.Metrics.ServerUp(s.cfg.Name, false)
}

// list returns the server's tools (all pages).
func (s *Server) list(ctx context.Context, cs *sdk.ClientSession) (map[string]discovered, error) {
	tools := map[string]discovered{}
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		if len(tools) >= maxTools {
			s.log.Warn("MCP server offers too many tools; ignoring the rest", "max", maxTools)
			break
		}
		schema, err := json.Marshal(t.InputSchema)
		if err != nil || t.InputSchema == nil {
			schema = json.RawMessage(`{"type":"object"}`)
		}
		d := discovered{spec: llm.ToolSpec{Name: t.Name, Description: t.Description, InputSchema: schema}}
		if t.OutputSchema != nil {
			if raw, err := json.Marshal(t.OutputSchema); err == nil {
				if sch, err := tool.ParseSchema(raw); err == nil {
					d.output = sch
				} else {
					s.log.Warn("MCP tool has an output schema agentd cannot read; output not checked", "tool", t.Name, "err", err)
				}
			}
		}
		tools[t.Name] = d
	}
	return tools, nil
}

// refresh lists the tools again after a tools/list_changed notification.
func (s *Server) refresh(cs *sdk.ClientSession) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	tools, err := s.list(ctx, cs)
	if err != nil {
		s.log.Warn("MCP server: cannot list tools after tools/list_changed", "err", err)
		return
	}
	s.mu.Lock()
	if s.session == cs {
		s.tools = tools
	}
	s.mu.Unlock()
	s.log.Info("MCP server tools changed", "tools", s.ToolNames())
}

// baseEnv are the variables of agentd's environment a stdio server gets.
var baseEnv = []string{"PATH", "HOME", "USER", "TMPDIR", "LANG", "LC_ALL", "TZ",
	"GOPATH", "GOCACHE", "GOMODCACHE", "GOROOT", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"}

func (s *Server) transport(ctx context.Context) (sdk.Transport, error) {
	if len(s.cfg.Command) > 0 {
		cmd := exec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
		cmd.Dir = s.cfg.Dir
		for _, k := range baseEnv {
			if v, ok := os.LookupEnv(k); ok {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		for k, v := range s.cfg.Env {
			ev, err := s.cfg.Secrets.Expand(v, nil)
			if err != nil {
				return nil, fmt.Errorf("env.%s: %w", k, err)
			}
			cmd.Env = append(cmd.Env, k+"="+ev)
		}
		cmd.Stderr = &lineLogger{log: s.log, secrets: s.cfg.Secrets}
		// A server that exits but leaves a child holding stderr open must
		// not block Wait forever.
		cmd.WaitDelay = 2 * time.Second
		return &sdk.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}, nil
	}
	hc := s.cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	if len(s.cfg.Headers) > 0 {
		c := *hc
		base := c.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		u, err := url.Parse(s.cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		c.Transport = &headerTransport{base: base, headers: s.cfg.Headers, secrets: s.cfg.Secrets,
			scheme: strings.ToLower(u.Scheme), host: urlscope.Host(u)}
		hc = &c
	}
	return &sdk.StreamableClientTransport{Endpoint: s.cfg.URL, HTTPClient: hc, MaxRetries: 1, DisableStandaloneSSE: true}, nil
}

// headerTransport adds the configured headers, secrets resolved per
// request, to the requests to the server's own scheme and host: a redirect
// to another host does not carry them.
type headerTransport struct {
	base         http.RoundTripper
	headers      map[string]string
	secrets      *tool.Secrets
	scheme, host string // of Config.URL (host: urlscope.Host)
}

func (h *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.ToLower(req.URL.Scheme) != h.scheme || urlscope.Host(req.URL) != h.host {
		return h.base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	for k, v := range h.headers {
		hv, err := h.secrets.Expand(v, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(k, hv)
	}
	return h.base.RoundTrip(req)
}

// lineLogger logs a stdio server's stderr line by line (capped, secrets
// scrubbed).
type lineLogger struct {
	log     *slog.Logger
	secrets *tool.Secrets
	mu      sync.Mutex
	buf     []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			if len(l.buf) > 4096 {
				// A long line without a newline: emit all but a tail
				// that could be the start of a secret, so that a secret
				// across the split is still scrubbed whole.
				keep := min(len(l.buf), max(l.secrets.MaxLen()-1, 0))
				l.emit(l.buf[:len(l.buf)-keep])
				l.buf = append(l.buf[:0], l.buf[len(l.buf)-keep:]...)
			}
			return len(p), nil
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) emit(line []byte) {
	if len(line) == 0 {
		return
	}
	l.log.Info("MCP server stderr", "line", tool.Truncate(l.secrets.Scrub(string(line)), 1024))
}

var _ io.Writer = (*lineLogger)(nil)

// current returns the live session, waiting up to wait for one while the
// server (re)connects.
func (s *Server) current(ctx context.Context, wait time.Duration) (*sdk.ClientSession, error) {
	s.mu.Lock()
	cs, ch := s.session, s.connected
	s.mu.Unlock()
	if cs != nil {
		return cs, nil
	}
	// No reconnection can succeed before the breaker lets probes through.
	if err := s.cfg.Breaker.Err(); err != nil {
		return nil, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session == nil {
		return nil, tool.Errorf(tool.KindUnavailable, "MCP server %s is not available: %v", s.cfg.Name, s.lastErr)
	}
	return s.session, nil
}
