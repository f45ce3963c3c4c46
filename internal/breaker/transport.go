package breaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Transport is an http.RoundTripper with one breaker per destination host
// (Prefix+host, e.g. "webhook:hooks.example.com:8443" keeps the port when
// the URL has one). While a host's breaker is open, requests to it fail at
// once with an *OpenError. Failures: no response (connection refused, DNS,
// TLS, a timeout) and 5xx answers; any other answer is a success; a
// request its caller cancelled counts as nothing.
type Transport struct {
	// Set holds the breakers; nil: no breakers.
	Set *Set
	// Prefix is put before the host: "webhook:".
	Prefix string
	// Name, when set, names the breaker of a request instead of
	// Prefix+host; "" sends it without a breaker. A caller whose hosts
	// are not bounded uses it to bound its breakers.
	Name func(*http.Request) string
	// Next sends the requests. Defaults to http.DefaultTransport.
	Next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	name := t.Prefix + req.URL.Host
	if t.Name != nil {
		name = t.Name(req)
	}
	var b *Breaker // nil: no breaker
	if name != "" {
		b = t.Set.Get(name)
	}
	done, err := b.Allow()
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close it, even on error
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Host, err)
	}
	resp, err := next.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() != nil && !errors.Is(err, context.DeadlineExceeded):
		done(Ignore)
	case err != nil, resp.StatusCode >= 500:
		done(Failure)
	default:
		done(Success)
	}
	return resp, err
}
