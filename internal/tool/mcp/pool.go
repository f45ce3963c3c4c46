package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/httptool"
	"github.com/agentd/agentd/internal/urlscope"
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
	// one is closed to make room (DefaultPoolMaxServers). It also caps the
	// hosts with a breaker and metric label of their own (see Pool).
	MaxServers int
	// Credentials are the operator's headers for the servers under given
	// URLs (managed.mcp.servers).
	Credentials []Credential
	// Secrets resolve {{secret:NAME}} in Credentials' header values, at
	// every request (a rotated value is used at once).
	Secrets *tool.Secrets
	// Breakers holds the breakers of the servers' hosts
	// ("mcp-url:HOST"); nil: none.
	Breakers *breaker.Set
	// Metrics records calls and connections by server host; nil: none.
	Metrics *tool.Metrics
	Log     *slog.Logger
	// HTTPClient replaces the policy's client (tests); nil: Policy.Client().
	HTTPClient *http.Client
}

// Credential is what agentd sends to the MCP servers under one URL.
type Credential struct {
	// URL is an absolute http(s) URL without user info, query or
	// fragment. It applies to a server URL of the same scheme and host
	// (and port) whose path is URL's path or under it, on path segment
	// boundaries ("https://a.example/mcp" covers ".../mcp" and
	// ".../mcp/x", not ".../mcpx" nor "https://a.example.evil.com/mcp");
	// of several, the longest path wins.
	URL string
	// Headers are set on every request to a server it applies to (and
	// on no other request: not on a redirect elsewhere); values may hold
	// {{secret:NAME}}.
	Headers map[string]string
	// Tenants are the tenants whose runs it serves; empty: every
	// tenant's. Two credentials of the same URL must both name tenants,
	// and no tenant twice.
	Tenants []string
}

// credential is a parsed Credential.
type credential struct {
	url                string // as configured, for errors
	scheme, host, path string // host: urlscope.Host; path: escaped, no trailing "/"
	headers            map[string]string
	tenants            []string // nil: every tenant
}

// allows reports whether c serves tenant; a restricted credential serves
// no unbound connection (tenant "").
func (c *credential) allows(tenant string) bool {
	return len(c.tenants) == 0 || (tenant != "" && slices.Contains(c.tenants, tenant))
}

// parseCredentials checks and parses cs, longest path first.
func parseCredentials(cs []Credential, secrets *tool.Secrets) ([]credential, error) {
	out := make([]credential, 0, len(cs))
	for i, c := range cs {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
			return nil, fmt.Errorf("[%d].url: want an absolute http(s) URL", i)
		case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			return nil, fmt.Errorf("[%d].url: no user info, query or fragment", i)
		case urlscope.Ambiguous(u.EscapedPath()):
			return nil, fmt.Errorf("[%d].url: no . or .. path segments, encoded / or \\, or backslash", i)
		}
		cr := credential{url: c.URL, scheme: strings.ToLower(u.Scheme), host: urlscope.Host(u), path: strings.TrimRight(u.EscapedPath(), "/"), headers: c.Headers}
		for j, t := range c.Tenants {
			if t == "" {
				return nil, fmt.Errorf("[%d].tenants[%d]: empty", i, j)
			}
		}
		if len(c.Tenants) > 0 {
			cr.tenants = slices.Clone(c.Tenants)
		}
		for _, o := range out {
			// The same URL twice only for disjoint sets of named
			// tenants: at most one applies to a tenant.
			if o.scheme == cr.scheme && o.host == cr.host && o.path == cr.path &&
				(o.tenants == nil || cr.tenants == nil || slices.ContainsFunc(cr.tenants, func(t string) bool { return slices.Contains(o.tenants, t) })) {
				return nil, fmt.Errorf("[%d].url: the same URL as %s (allowed only with disjoint tenants in both)", i, o.url)
			}
		}
		if len(c.Headers) == 0 {
			return nil, fmt.Errorf("[%d].headers: at least one", i)
		}
		for k, v := range c.Headers {
			// Not Expand: its error would quote the value.
			refs, err := tool.TemplateRefs(v)
			if err != nil {
				return nil, fmt.Errorf("[%d].headers.%s: malformed {{...}}", i, k)
			}
			for _, r := range refs {
				name, ok := strings.CutPrefix(r, "secret:")
				if !ok || !secrets.Has(name) {
					return nil, fmt.Errorf("[%d].headers.%s: {{%s}}: want {{secret:NAME}} of a defined secret", i, k, r)
				}
			}
		}
		out = append(out, cr)
	}
	slices.SortStableFunc(out, func(a, b credential) int { return len(b.path) - len(a.path) })
	return out, nil
}

// credentialFor returns the credential that applies to u for tenant (""
// on an unbound connection: unrestricted credentials only): the longest
// path covering u that serves tenant; nil if none.
func (p *Pool) credentialFor(u *url.URL, tenant string) *credential {
	for i := range p.creds {
		c := &p.creds[i]
		if c.allows(tenant) && urlscope.Covers(c.scheme, c.host, c.path, u) {
			return c
		}
	}
	return nil
}

// bindsTenant reports whether the connection to the server at raw is one
// per tenant: some credential covering it is restricted to tenants, so
// tenants may get different headers there. A URL that does not parse is
// never connected (CheckURL refuses it).
func (p *Pool) bindsTenant(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(p.creds, func(c credential) bool {
		return c.tenants != nil && urlscope.Covers(c.scheme, c.host, c.path, u)
	})
}

// credentialTransport sets the headers of the credential that applies to
// each request's own URL for the connection's tenant: a redirect to
// another host or path gets the headers of its URL, if any, never those
// of the first, and only those the tenant may use ("": an unbound
// connection, only unrestricted credentials).
type credentialTransport struct {
	p      *Pool
	tenant string
	next   http.RoundTripper
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.p.credentialFor(req.URL, t.tenant)
	if c == nil {
		return t.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	for k, v := range c.headers {
		hv, err := t.p.cfg.Secrets.Expand(v, nil)
		if err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("credentials of %s: header %s: %w", c.url, k, err)
		}
		r.Header.Set(k, hv)
	}
	return t.next.RoundTrip(r)
}

// otherServers is the breaker-less metrics label of the hosts beyond the
// pool's cap.
const otherServers = "other"

// Pool is the process's MCP clients of servers named by URL (the Managed
// Agents API's mcp_servers): one streamable-HTTP session per URL, opened
// when a run first needs it and shared by every session and run after,
// reconnected by its supervisor while it is pooled, closed by Close. Every
// dial is under PoolConfig.Policy. Where a credential restricted to
// tenants covers the URL, the session is per URL and tenant instead (see
// Tools).
//
// A server is known to agentd by its host (urlscope.Host): every request to a
// host goes through that host's breaker ("mcp-url:HOST", breaker.Transport:
// no answer or 5xx is a failure), and its tool calls and connections are
// counted under it (tool.Metrics). Both are bounded: the hosts of
// Credentials and the first MaxServers other hosts the process meets have
// their own; later hosts share the label "other" and have no breaker. The
// operator's Credentials are the only headers agentd adds.
type Pool struct {
	cfg   PoolConfig
	base  *http.Client      // the policy's; its CheckRedirect stays
	next  http.RoundTripper // base's transport
	creds []credential

	mu      sync.Mutex
	servers map[poolKey]*pooled
	closed  bool

	hostsMu sync.Mutex
	hosts   map[string]struct{} // hosts with a label of their own
	counted int                 // of them, not of Credentials (the cap's)
	capped  bool                // the cap was reached (logged once)
}

// poolKey names a pooled connection: its URL, and the tenant it serves
// when credentials covering the URL are restricted to tenants (else "":
// shared by every tenant), so that no connection is shared by tenants
// that would send different credentials.
type poolKey struct{ url, tenant string }

type pooled struct {
	s     *Server
	ready chan struct{} // closed once the first connection attempt ended
	err   error         // of that attempt (the entry is then dropped)
	used  time.Time
}

// NewPool returns an empty pool; an error names the invalid credential by
// its index ("[1].url: ...").
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxServers <= 0 {
		cfg.MaxServers = DefaultPoolMaxServers
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	creds, err := parseCredentials(cfg.Credentials, cfg.Secrets)
	if err != nil {
		return nil, err
	}
	base := cfg.HTTPClient
	if base == nil {
		base = cfg.Policy.Client()
	}
	p := &Pool{cfg: cfg, base: base, next: base.Transport, creds: creds, servers: map[poolKey]*pooled{}, hosts: map[string]struct{}{}}
	for _, c := range creds {
		p.hosts[c.host] = struct{}{}
	}
	if p.next == nil {
		p.next = http.DefaultTransport
	}
	return p, nil
}

// client is the HTTP client of a connection serving tenant ("": every
// tenant): the host's breaker, then the credentials tenant may use.
func (p *Pool) client(tenant string) *http.Client {
	c := *p.base // its CheckRedirect (the policy's) stays
	c.Transport = &breaker.Transport{Set: p.cfg.Breakers, Name: func(r *http.Request) string { return p.breakerName(p.hostLabel(r.URL)) },
		Next: &credentialTransport{p: p, tenant: tenant, next: p.next}}
	return &c
}

// key is the pooled connection of url for tenant.
func (p *Pool) key(tenant, url string) poolKey {
	if p.bindsTenant(url) {
		return poolKey{url: url, tenant: tenant}
	}
	return poolKey{url: url}
}

// hostLabel is u's host, or otherServers once MaxServers hosts (beyond
// those of Credentials) have their own.
func (p *Pool) hostLabel(u *url.URL) string {
	h := urlscope.Host(u)
	p.hostsMu.Lock()
	defer p.hostsMu.Unlock()
	if _, ok := p.hosts[h]; ok {
		return h
	}
	if p.counted < p.cfg.MaxServers {
		p.hosts[h] = struct{}{}
		p.counted++
		return h
	}
	if !p.capped {
		p.capped = true
		p.cfg.Log.Warn("MCP servers by URL: more hosts than managed.mcp.max_servers; further hosts share the metrics label \"other\" and have no circuit breaker",
			"max_servers", p.cfg.MaxServers)
	}
	return otherServers
}

// breakerName is the breaker of a host label ("": none).
func (p *Pool) breakerName(label string) string {
	if label == otherServers {
		return ""
	}
	return breaker.PrefixMCPURL + label
}

// serverLabel is hostLabel of a server URL (otherServers if it does not
// parse: CheckURL refuses it anyway).
func (p *Pool) serverLabel(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return otherServers
	}
	return p.hostLabel(u)
}

// CheckURL checks url against the pool's policy without connecting (see
// httptool.Policy.CheckURL).
func (p *Pool) CheckURL(url string) error { return p.cfg.Policy.CheckURL(url) }

// ErrPoolClosed: the pool was closed (the process is stopping).
var ErrPoolClosed = errors.New("MCP client pool closed")

// Tools returns every tool the server at url offers now to a run of
// tenant, connecting to it first if no connection is pooled (bounded by
// ConnectTimeout and ctx). The connection is shared by every tenant
// unless a credential covering url is restricted to tenants; then it is
// tenant's own, and sends only the credentials tenant may use.
// Each tool's Spec is the server's (no prefix); ServerToolName is its name.
//
// Calls of the tools are counted by server host (tool.Metrics). While the
// host's breaker is open, a server not connected fails at once: one not
// pooled with the breaker's error, one pooled (reconnecting) offers the
// tools it last listed, whose calls fail at once with an error the model
// reads.
func (p *Pool) Tools(ctx context.Context, tenant, url string) ([]tool.Tool, error) {
	label := p.serverLabel(url)
	s, err := p.server(ctx, p.key(tenant, url), label)
	if err != nil {
		return nil, err
	}
	if s.Err() != nil {
		// Pooled but reconnecting: wait for it as long as a first
		// connection may take.
		if _, err := s.current(ctx, p.cfg.ConnectTimeout); err != nil {
			if _, open := breaker.AsOpen(err); !open || len(s.ToolNames()) == 0 {
				return nil, err
			}
		}
	}
	ts, err := s.Tools(ToolOptions{Allow: []string{"*"}})
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		ts[i] = &metered{Tool: t, server: label, m: p.cfg.Metrics}
	}
	return ts, nil
}

// metered counts the calls of a tool of a server by URL.
type metered struct {
	tool.Tool
	server string // host label
	m      *tool.Metrics
}

func (t *metered) Call(ctx context.Context, input json.RawMessage) (string, error) {
	start := time.Now()
	out, err := t.Tool.Call(ctx, input)
	t.m.MCPURLCall(t.server, tool.Outcome(err), time.Since(start))
	return out, err
}

// ServerToolName is the tool's name on its server.
func (t *metered) ServerToolName() string {
	return t.Tool.(interface{ ServerToolName() string }).ServerToolName()
}

// Known returns the names of the tools the server at url offered tenant
// when last listed, without connecting (nil: not pooled).
func (p *Pool) Known(tenant, url string) []string {
	p.mu.Lock()
	e, ok := p.servers[p.key(tenant, url)]
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

// server returns the pooled server of k, connecting one if none is.
// Callers asking for the same k while it connects wait for that attempt;
// a failed attempt is not kept (the next call tries again).
func (p *Pool) server(ctx context.Context, k poolKey, label string) (*Server, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	e, ok := p.servers[k]
	var evict *Server
	if !ok {
		e = &pooled{ready: make(chan struct{})}
		evict = p.evictLocked()
		p.servers[k] = e
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
	s, err := p.connect(ctx, k, label)
	outcome := "ok"
	if _, open := breaker.AsOpen(err); open {
		outcome = tool.KindCircuitOpen
	} else if err != nil {
		outcome = "error"
	}
	p.cfg.Metrics.MCPURLConnect(label, outcome)
	p.mu.Lock()
	e.s, e.err = s, err
	if err != nil && p.servers[k] == e {
		delete(p.servers, k)
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
	var oldest poolKey
	var at time.Time
	found := false
	for k, e := range p.servers {
		select {
		case <-e.ready:
		default:
			continue // connecting: its caller waits for it
		}
		if !found || e.used.Before(at) {
			oldest, at, found = k, e.used, true
		}
	}
	if !found {
		return nil
	}
	s := p.servers[oldest].s
	delete(p.servers, oldest)
	p.cfg.Log.Info("MCP client pool full; closing the least recently used server", "url", oldest.url, "tenant", oldest.tenant, "max_servers", p.cfg.MaxServers)
	return s
}

func (p *Pool) connect(ctx context.Context, k poolKey, label string) (*Server, error) {
	url := k.url
	var b *breaker.Breaker
	if name := p.breakerName(label); name != "" {
		b = p.cfg.Breakers.Get(name)
	}
	s, err := New(Config{Name: url, URL: url, ConnectTimeout: p.cfg.ConnectTimeout, HTTPClient: p.client(k.tenant), Log: p.cfg.Log, Breaker: b})
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
