package config

import (
	"fmt"
	"net"
	"strings"
)

// The exposure rule: auth.mode none serves every endpoint to whoever can
// connect, so it is accepted on a loopback server.addr only, unless the
// operator sets auth.allow_unauthenticated_network: true (for instance
// behind a proxy that authenticates, or on a closed network of a demo).

// LoopbackAddr reports whether the listen address addr (host:port) accepts
// connections from this machine only: its host is "localhost" or a
// loopback IP (127.0.0.0/8, ::1). An empty host, 0.0.0.0 or :: (every
// interface), any other IP and any other host name are not loopback.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateExposure refuses auth.mode none on a non-loopback server.addr
// without the explicit opt-in.
func (c *Config) validateExposure(v *validator) {
	if c.Auth.Mode != AuthNone || c.Auth.AllowUnauthenticatedNetwork || LoopbackAddr(c.Server.Addr) {
		return
	}
	v.add("auth.mode", fmt.Sprintf("none on server.addr %q (not a loopback address) would serve the API without authentication "+
		"to anyone who can reach %s: use mode: keys, a loopback server.addr such as 127.0.0.1:8080, "+
		"or set auth.allow_unauthenticated_network: true to accept that", c.Server.Addr, c.Server.Addr))
}

// AuthWarning is the warning to log at start-up about the auth settings,
// naming the listen address; "" when there is nothing to warn about
// (auth.mode keys).
func (c *Config) AuthWarning() string {
	if c.Auth.Mode != AuthNone {
		return ""
	}
	if LoopbackAddr(c.Server.Addr) {
		return fmt.Sprintf("authentication is off (auth.mode: none) on %s: anyone who can connect to %s from this machine acts as tenant \"default\"; use only for a local demo",
			c.Server.Addr, c.Server.Addr)
	}
	return fmt.Sprintf("authentication is off (auth.mode: none) on %s, a non-loopback address (auth.allow_unauthenticated_network: true): "+
		"anyone who can reach %s acts as tenant \"default\" and can use every endpoint", c.Server.Addr, c.Server.Addr)
}
