package httptool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/agentd/agentd/internal/tool"
)

// ErrBlocked is returned (wrapped) for a destination the SSRF guard refuses.
var ErrBlocked = errors.New("destination refused by the SSRF guard")

// blockedPrefixes are the ranges an HTTP tool may not reach unless it sets
// allow_private: loopback, private, link-local (including cloud metadata at
// 169.254.169.254), carrier-grade NAT, unspecified, multicast, benchmarking,
// documentation and reserved ranges, and their IPv6 counterparts (IPv4-mapped
// IPv6 addresses are checked as IPv4).
var blockedPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32",
		"fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
		// IPv6 transition forms that embed an IPv4 address (6to4, Teredo)
		// and the 6to4 relay anycast range.
		"2002::/16", "2001::/32", "192.88.99.0/24",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// MaxRedirects is how many redirects an HTTP tool follows.
const MaxRedirects = 5

// Policy is the SSRF guard of an outbound client: destinations in the
// ranges CheckIP refuses are unreachable unless AllowPrivate, or the URL's
// host is one of AllowHosts. HTTP tools use it with AllowPrivate alone
// (tools.http[].allow_private); the MCP servers that agents created through
// the Managed Agents API name by URL with both (managed.mcp).
type Policy struct {
	AllowPrivate bool
	// AllowHosts are host names or IP literals (no port; matched without
	// case) that may be at private addresses.
	AllowHosts []string
	// Hint ends the message of a refusal: how to allow the destination.
	// Default: "set allow_private: true to allow it".
	Hint string
}

// allowsHost reports whether host (a URL's host name, no port) is exempt.
func (p Policy) allowsHost(host string) bool {
	if p.AllowPrivate {
		return true
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	for _, h := range p.AllowHosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

func (p Policy) hint() string {
	if p.Hint != "" {
		return p.Hint
	}
	return "set allow_private: true to allow it"
}

// CheckURL is the check that needs no DNS: raw must be an absolute http(s)
// URL, and a host that is an IP literal in a refused range, or "localhost"
// (or a name under it), is refused unless allowed. Host names are checked
// again, against every address they resolve to, when the client dials.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("want an absolute http(s) URL, got %q", raw)
	}
	host := u.Hostname()
	if p.allowsHost(host) {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := checkIPHint(ip, p.hint()); err != nil {
			return err
		}
		return nil
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return fmt.Errorf("%w: %s is a loopback name (%s)", ErrBlocked, host, p.hint())
	}
	return nil
}

// Client returns an HTTP client under the policy: it dials through the
// guard (unless the host is allowed), never through a proxy, checks each
// redirect and follows at most MaxRedirects. Headers named in
// stripOnCrossHost are dropped on a redirect to another host.
func (p Policy) Client(stripOnCrossHost ...string) *http.Client {
	return newClient(p, nil, stripOnCrossHost)
}

// CheckIP returns an error wrapping ErrBlocked if ip is in a loopback,
// private, link-local or otherwise non-public range.
func CheckIP(ip netip.Addr) error {
	return checkIPHint(ip, "set allow_private: true to allow it")
}

func checkIPHint(ip netip.Addr, hint string) error {
	ip = ip.Unmap()
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is a loopback, private, link-local or reserved address (%s)", ErrBlocked, ip, hint)
		}
	}
	return nil
}

// checkAddr is the dial-time check: address is the resolved "ip:port" the
// dialer is about to connect to, so every IP a name resolves to (also after
// a DNS change between requests: rebinding) and every redirect target is
// checked.
func checkAddr(_, address string) error {
	return checkAddrHint(address, "set allow_private: true to allow it")
}

func checkAddrHint(address, hint string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: bad address %q", ErrBlocked, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrBlocked, host)
	}
	return checkIPHint(ip, hint)
}

// newClient returns a client whose transport dials through the guard
// (unless the policy allows the host dialed) and never through a proxy
// (the guard checks the address it dials), and which checks each redirect.
// check replaces the dial-time check (tests).
func newClient(p Policy, check func(network, address string) error, stripOnCrossHost []string) *http.Client {
	if check == nil {
		hint := p.hint()
		check = func(_, address string) error { return checkAddrHint(address, hint) }
	}
	open := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error { return check(network, address) }}
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		// address is the URL's host:port, before resolution: an allowed
		// host dials without the check, any other through it.
		if host, _, err := net.SplitHostPort(address); err == nil && p.allowsHost(host) {
			return open.DialContext(ctx, network, address)
		}
		return guarded.DialContext(ctx, network, address)
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return tool.Errorf(tool.KindBlocked, "stopped after %d redirects", MaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return tool.Errorf(tool.KindBlocked, "redirect to a %q URL refused", req.URL.Scheme)
			}
			if !p.allowsHost(req.URL.Hostname()) {
				if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil {
					if err := checkIPHint(ip, p.hint()); err != nil {
						return &tool.Error{Kind: tool.KindBlocked, Err: fmt.Errorf("redirect refused: %w", err)}
					}
				}
			}
			if req.URL.Host != via[0].URL.Host {
				// Configured headers may carry credentials: they go to
				// the configured host only.
				for _, h := range stripOnCrossHost {
					req.Header.Del(h)
				}
			}
			return nil
		},
	}
}
