// Package fuzz holds the fuzz targets of internal/server's request
// decoders. They live apart from the server's own tests on purpose: a
// fuzz worker resets and compares the coverage counters of its whole test
// binary on every input, and the server's test binary (stores, drivers,
// every handler's test) has about five times the counters of one that
// links only what the decoders reach; that bookkeeping, not the decoder,
// was most of each input's cost. See docs/reliability.md, "Fuzzing".
package fuzz

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/server"
)

// fuzzBodyLimit is the MaxBodyBytes of the limited half of the fuzz targets.
const fuzzBodyLimit = 256

// limited is the body as the handlers read it: through
// http.MaxBytesReader with the server's limit.
func limited(data []byte) io.Reader {
	return http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), fuzzBodyLimit)
}

// FuzzDecodeChatRequest feeds arbitrary bodies to DecodeChatRequest, both
// unlimited and through http.MaxBytesReader as the handler does. It must
// never panic; an error is always a *server.Error with 400 (or 413 when
// the body is over the limit); success means agent and message are there;
// under the limit, the limit changes nothing.
// Seeds: testdata/fuzz/FuzzDecodeChatRequest.
func FuzzDecodeChatRequest(f *testing.F) {
	f.Add([]byte(`{"agent":"demo","message":"hello"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := server.DecodeChatRequest(bytes.NewReader(data))
		checkError(t, data, err, false)
		if err == nil {
			checkMessage(t, data, req.Agent, req.Message, req.ConversationID, req.MaxCostUSD)
		}
		lreq, lerr := server.DecodeChatRequest(limited(data))
		checkError(t, data, lerr, true)
		if lerr == nil {
			checkMessage(t, data, lreq.Agent, lreq.Message, lreq.ConversationID, lreq.MaxCostUSD)
		}
		sameUnderLimit(t, data, err, lerr, req == lreq)
	})
}

// FuzzDecodeRunRequest feeds arbitrary bodies to DecodeRunRequest (the
// body of POST /v1/runs, with its webhook URL), unlimited and through the
// handler's body limit. The oracle is FuzzDecodeChatRequest's, plus: an
// accepted webhook is an absolute http(s) URL with a host.
// Seeds: testdata/fuzz/FuzzDecodeRunRequest.
func FuzzDecodeRunRequest(f *testing.F) {
	f.Add([]byte(`{"agent":"demo","message":"hello"}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","webhook":"https://example.com/hook","max_cost_usd":0.5}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","webhook":"http://[::1]:80/x?y#z"}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","webhook":"file:///etc/passwd"}`))
	f.Add([]byte(`{"agent":"demo","message":"hi","max_cost_usd":-1e309}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := server.DecodeRunRequest(bytes.NewReader(data))
		checkError(t, data, err, false)
		if err == nil {
			checkRun(t, data, req)
		}
		lreq, lerr := server.DecodeRunRequest(limited(data))
		checkError(t, data, lerr, true)
		if lerr == nil {
			checkRun(t, data, lreq)
		}
		sameUnderLimit(t, data, err, lerr, req == lreq)
	})
}

func checkRun(t *testing.T, data []byte, req server.RunRequest) {
	t.Helper()
	checkMessage(t, data, req.Agent, req.Message, req.ConversationID, req.MaxCostUSD)
	if req.Webhook != "" {
		u, err := url.Parse(req.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("accepted webhook %q", req.Webhook)
		}
	}
}

// sameUnderLimit: under the limit, the limited decoding is the unlimited
// one; over it, it never succeeds.
func sameUnderLimit(t *testing.T, data []byte, err, lerr error, sameReq bool) {
	t.Helper()
	if len(data) <= fuzzBodyLimit {
		if (err == nil) != (lerr == nil) || (err != nil && err.Error() != lerr.Error()) {
			t.Fatalf("limited and unlimited decoding differ: %v vs %v", err, lerr)
		}
		if err == nil && !sameReq {
			t.Fatalf("limited and unlimited decoding differ for %q", data)
		}
	} else if lerr == nil {
		t.Fatalf("a %d-byte body passed a %d-byte limit", len(data), fuzzBodyLimit)
	}
}

func checkError(t *testing.T, data []byte, err error, limited bool) {
	t.Helper()
	if err == nil {
		return
	}
	var he *server.Error
	if !errors.As(err, &he) {
		t.Fatalf("error %T %v is not a *server.Error (body %q)", err, err, data)
	}
	switch {
	case he.Status == http.StatusBadRequest && he.Type == "invalid_request":
	case he.Status == http.StatusRequestEntityTooLarge && he.Type == "request_too_large" && limited && len(data) > fuzzBodyLimit:
	default:
		t.Fatalf("unexpected error status %d type %q (limited %v, %d bytes): %v", he.Status, he.Type, limited, len(data), err)
	}
	if he.Message == "" {
		t.Fatalf("error without message: %+v", he)
	}
}

func checkMessage(t *testing.T, data []byte, agent, message, conversationID string, maxCost float64) {
	t.Helper()
	if strings.TrimSpace(agent) == "" {
		t.Fatalf("accepted a request without agent: %q", data)
	}
	if strings.TrimSpace(message) == "" {
		t.Fatalf("accepted a request without message: %q", data)
	}
	if !utf8.ValidString(message) {
		t.Fatalf("accepted a message that is not UTF-8: %q", data)
	}
	if len(conversationID) > 128 {
		t.Fatalf("accepted a %d-byte conversation_id", len(conversationID))
	}
	if maxCost < 0 {
		t.Fatalf("accepted a negative cost cap from %q", data)
	}
}
