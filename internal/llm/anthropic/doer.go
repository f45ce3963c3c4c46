package anthropic

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// httpDoer sends a request: an *http.Client (Config.HTTPClient) or a
// transportDoer. The SDK takes either (option.WithHTTPClient).
type httpDoer interface {
	Do(req *http.Request) (*http.Response, error)
}

// transportDoer sends requests straight through its transport, as
// httputil.ReverseProxy does. What http.Client adds is of no use for a
// call to the Messages API and costs every call in flight: it clones the
// request's headers and keeps the copy until the answer's headers arrive
// (to replay them on a redirect; the API does not redirect: a 3xx is
// returned as it is), and it sets up cookie and timeout handling that is
// not configured. Errors are wrapped as http.Client wraps them (*url.Error,
// "Post \"…\": …"), so callers see the same errors. A base URL with a
// user and password keeps http.Client, which turns them into a Basic
// Authorization header (see New).
type transportDoer struct{ rt http.RoundTripper }

func (d transportDoer) Do(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, errors.New("anthropic: request without a URL")
	}
	resp, err := d.rt.RoundTrip(req)
	if err != nil {
		return nil, &url.Error{Op: method(req.Method), URL: req.URL.Redacted(), Err: err}
	}
	return resp, nil
}

// method is req.Method as http.Client names it in errors: "Post".
func method(m string) string {
	if m == "" {
		return "Get"
	}
	return m[:1] + strings.ToLower(m[1:])
}
