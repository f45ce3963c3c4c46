package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/httptool"
)

// DefaultPoolMaxServers is PoolConfig.MaxServers' default.
const DefaultPoolMaxServers = 64

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Policy is the SSRF guard of every connection (httptool.Policy: one
	// place for the private-address policy).
	Policy httptool.Policy
	// ConnectTimeout bounds connecting to a server and listing its tools
	// (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// MaxServers caps the servers kept connected; the least recently used
	// one is closed to make room (DefaultPoolMaxServers).
	MaxServers int
	Log        *slog.Logger
	// HTTPClient replaces the policy's client (tests); nil: Policy.Client().
	HTTPClient *http.Client
}

// Pool is the process's MCP clients of servers named by URL (the Managed
// Agents API's mcp_servers): one streamable-HTTP session per URL, opened
// when a run first needs it and shared by every session and run after,
// reconnected by its supervisor while it is pooled, closed by Close.
// Servers are anonymous to agentd: no configured headers or secrets, no
// per-server metrics (their number is the clients'), every dial under
// PoolConfig.Policy.
type Pool struct {
	cfg    PoolConfig
	client *http.Client

	mu      sync.Mutex
	servers map[string]*pooled
	closed  bool
}

type pooled struct {
	s     *Server
	ready chan struct{} // closed once the first connection attempt ended
	err   error         // of that attempt (the entry is then dropped)
	used  time.Time
}

// NewPool returns an empty pool.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxServers <= 0 {
		cfg.MaxServers = DefaultPoolMaxServers
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := cfg.HTTPClient
	if c == nil {
		c = cfg.Policy.Client()
	}
	return &Pool{cfg: cfg, client: c, servers: map[string]*pooled{}}
}

// CheckURL checks url against the pool's policy without connecting (see
// httptool.Policy.CheckURL).
func (p *Pool) CheckURL(url string) error { return p.cfg.Policy.CheckURL(url) }

// ErrPoolClosed: the pool was closed (the process is stopping).
var ErrPoolClosed = errors.New("MCP client pool closed")

// Tools returns every tool the server at url offers now, connecting to it
// first if no connection is pooled (bounded by ConnectTimeout and ctx).
// Each tool's Spec is the server's (no prefix); ServerToolName is its name.
func (p *Pool) Tools(ctx context.Context, url string) ([]tool.Tool, error) {
	s, err := p.server(ctx, url)
	if err != nil {
		return nil, err
	}
	if s.Err() != nil {
		// Pooled but reconnecting: wait for it as long as a first
		// connection may take.
		if _, err := s.current(ctx, p.cfg.ConnectTimeout); err != nil {
			return nil, err
		}
	}
	return s.Tools(ToolOptions{Allow: []string{"*"}})
}

// Known returns the names of the tools the server at url offered when last
// listed, without connecting (nil: not pooled).
func (p *Pool) Known(url string) []string {
	p.mu.Lock()
	e, ok := p.servers[url]
	p.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-e.ready:
	default:
		return nil
	}
	if e.err != nil {
		return nil
	}
	return e.s.ToolNames()
}

// server returns the pooled server of url, connecting one if none is.
// Callers asking for the same url while it connects wait for that attempt;
// a failed attempt is not kept (the next call tries again).
func (p *Pool) server(ctx context.Context, url string) (*Server, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	e, ok := p.servers[url]
	var evict *Server
	if !ok {
		e = &pooled{ready: make(chan struct{})}
		evict = p.evictLocked()
		p.servers[url] = e
	}
	e.used = time.Now()
	p.mu.Unlock()
	if evict != nil {
		evict.Stop()
	}
	if ok {
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err != nil {
			return nil, e.err
		}
		return e.s, nil
	}
	s, err := p.connect(ctx, url)
	p.mu.Lock()
	e.s, e.err = s, err
	if err != nil && p.servers[url] == e {
		delete(p.servers, url)
	}
	closed := p.closed
	p.mu.Unlock()
	close(e.ready)
	if err == nil && closed { // Close ran while this one connected
		s.Stop()
		return nil, ErrPoolClosed
	}
	return s, err
}

// evictLocked drops the least recently used connected server when the pool
// is full and returns it, to be stopped outside the lock.
func (p *Pool) evictLocked() *Server {
	if len(p.servers) < p.cfg.MaxServers {
		return nil
	}
	var oldest string
	var at time.Time
	for u, e := range p.servers {
		select {
		case <-e.ready:
		default:
			continue // connecting: its caller waits for it
		}
		if oldest == "" || e.used.Before(at) {
			oldest, at = u, e.used
		}
	}
	if oldest == "" {
		return nil
	}
	s := p.servers[oldest].s
	delete(p.servers, oldest)
	p.cfg.Log.Info("MCP client pool full; closing the least recently used server", "url", oldest, "max_servers", p.cfg.MaxServers)
	return s
}

func (p *Pool) connect(ctx context.Context, url string) (*Server, error) {
	s, err := New(Config{Name: url, URL: url, ConnectTimeout: p.cfg.ConnectTimeout, HTTPClient: p.client, Log: p.cfg.Log})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	if err := s.Start(cctx); err != nil {
		// The SDK may take a few seconds to give up an attempt that
		// hangs; the caller does not wait for that.
		go s.Stop()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s", p.cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("MCP server %s: %w", url, err)
	}
	return s, nil
}

// Close closes every pooled connection; later calls fail with
// ErrPoolClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var stop []*Server
	for u, e := range p.servers {
		select {
		case <-e.ready:
			if e.s != nil {
				stop = append(stop, e.s)
			}
		default: // connecting: server() stops it when it sees closed
		}
		delete(p.servers, u)
	}
	p.mu.Unlock()
	for _, s := range stop {
		s.Stop()
	}
}
