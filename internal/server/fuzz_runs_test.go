package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeRunRequest feeds arbitrary bodies to the decoder of
// POST /v1/runs (the run request and its webhook URL) through the
// handler's body limit. It must never panic; an error is a *Error with 400
// (413 over the limit) and a message; an accepted request has an agent, a
// non-blank UTF-8 message, a bounded conversation id, a non-negative cap
// and, when set, an absolute http(s) webhook URL.
// Seeds: testdata/fuzz/FuzzDecodeRunRequest.
func FuzzDecodeRunRequest(f *testing.F) {
	f.Add([]byte(`{"agent":"demo","message":"hello"}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","webhook":"https://example.com/hook","max_cost_usd":0.5}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","webhook":"http://[::1]:80/x?y#z"}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","webhook":"file:///etc/passwd"}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","max_cost_usd":-1e309}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		r := httptest.NewRequest(http.MethodPost, "/v1/runs", bytes.NewReader(data))
		r.Body = http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), limit)
		req, err := decodeRunRequest(r)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("error %T %v is not a *Error (body %q)", err, err, data)
			}
			switch {
			case he.Status == http.StatusBadRequest && he.Type == "invalid_request":
			case he.Status == http.StatusRequestEntityTooLarge && len(data) > limit:
			default:
				t.Fatalf("unexpected error %d %q for %q: %v", he.Status, he.Type, data, err)
			}
			if he.Message == "" {
				t.Fatalf("error without a message: %+v", he)
			}
			return
		}
		if len(data) > limit {
			t.Fatalf("a %d-byte body passed a %d-byte limit", len(data), limit)
		}
		if strings.TrimSpace(req.Agent) == "" || strings.TrimSpace(req.Message) == "" || !utf8.ValidString(req.Message) {
			t.Fatalf("accepted %+v from %q", req, data)
		}
		if len(req.ConversationID) > 128 || req.MaxCostUSD < 0 {
			t.Fatalf("accepted %+v from %q", req, data)
		}
		if req.Webhook != "" {
			u, err := url.Parse(req.Webhook)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("accepted webhook %q", req.Webhook)
			}
		}
	})
}
