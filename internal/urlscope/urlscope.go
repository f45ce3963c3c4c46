// Package urlscope holds the rules by which agentd decides which URLs a
// URL prefix covers (the operator's credentials of MCP servers by URL):
// one place, used by the configuration's validation and by the MCP pool
// that sends the credentials, so that what `agentd config check` accepts
// is what the process does.
package urlscope

import (
	"net"
	"net/url"
	"strings"
)

// Host is u's host as agentd names it (breakers, metrics, credential
// matching): lower case, no trailing dot, the port only when it is not the
// scheme's default.
func Host(u *url.URL) string {
	h, port := strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		return net.JoinHostPort(h, port)
	}
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// Ambiguous reports whether an escaped path could name, on a server that
// normalises it, a path other than the one it spells: a "." or ".."
// segment (also percent-encoded), or an encoded separator (%2F, %5C) or a
// backslash, which a server may decode into a segment boundary. Such a
// path is never covered by a prefix.
func Ambiguous(escapedPath string) bool {
	l := strings.ToLower(escapedPath)
	if strings.Contains(l, "%2f") || strings.Contains(l, "%5c") || strings.Contains(l, `\`) {
		return true
	}
	for _, seg := range strings.Split(l, "/") {
		seg = strings.ReplaceAll(seg, "%2e", ".")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// Key is the prefix a URL stands for, to tell two prefixes apart:
// scheme, Host and the escaped path without a trailing "/".
func Key(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + Host(u) + strings.TrimRight(u.EscapedPath(), "/")
}

// Covers reports whether the prefix (scheme, host as Host, escaped path
// without a trailing "/") covers u: same scheme and host, and u's path is
// the prefix's or below it on a "/" boundary; never an Ambiguous path.
func Covers(scheme, host, path string, u *url.URL) bool {
	p := u.EscapedPath()
	if Ambiguous(p) || strings.ToLower(u.Scheme) != scheme || Host(u) != host {
		return false
	}
	return p == path || strings.HasPrefix(p, path+"/")
}
