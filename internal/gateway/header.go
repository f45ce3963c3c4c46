package gateway

import (
	"net/http"
	"strings"
)

// Request headers that are the gateway's or the connection's, never
// forwarded: credentials (agentd's key is replaced by a pool key),
// hop-by-hop headers, and Accept-Encoding (the transport negotiates
// compression itself, so it can read the answer's usage).
var dropRequestHeader = map[string]bool{
	"Authorization": true, "X-Api-Key": true, "Cookie": true, "Proxy-Authorization": true,
	"Host": true, "Content-Length": true, "Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Accept-Encoding": true,
}

// Response headers never copied to the client: hop-by-hop ones and those
// the gateway's own writer sets.
var dropResponseHeader = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Content-Encoding": true,
	// agentd's organization and its quota, not the tenant's.
	"Set-Cookie": true, "Anthropic-Organization-Id": true,
}

func forwardHeader(in http.Header) http.Header {
	out := make(http.Header, len(in))
	for k, v := range in {
		if !dropRequestHeader[k] && !strings.HasPrefix(k, "X-Forwarded-") {
			out[k] = v
		}
	}
	return out
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		// Anthropic-Ratelimit-*: the limits of agentd's key; the
		// tenant's are agentd's X-RateLimit-*.
		if !dropResponseHeader[k] && !strings.HasPrefix(k, "Anthropic-Ratelimit-") {
			dst[k] = v
		}
	}
}
