package server_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/server"
)

// fuzzBodyLimit is the MaxBodyBytes of the limited half of the fuzz target.
const fuzzBodyLimit = 256

// FuzzDecodeChatRequest feeds arbitrary bodies to DecodeChatRequest, both
// unlimited and through http.MaxBytesReader as the handler does. It must
// never panic; an error is always a *server.Error with 400 (or 413 when
// the body is over the limit); success means agent and message are there.
// Seeds: testdata/fuzz/FuzzDecodeChatRequest.
func FuzzDecodeChatRequest(f *testing.F) {
	f.Add([]byte(`{"agent":"demo","message":"hello"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := server.DecodeChatRequest(bytes.NewReader(data))
		checkDecoded(t, data, req, err, false)

		lreq, lerr := server.DecodeChatRequest(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), fuzzBodyLimit))
		checkDecoded(t, data, lreq, lerr, true)
		if len(data) <= fuzzBodyLimit {
			// Under the limit, the limit changes nothing.
			if (err == nil) != (lerr == nil) || (err != nil && err.Error() != lerr.Error()) {
				t.Fatalf("limited and unlimited decoding differ: %v vs %v", err, lerr)
			}
			if err == nil && req != lreq {
				t.Fatalf("limited and unlimited decoding differ: %+v vs %+v", req, lreq)
			}
		} else if lerr == nil {
			t.Fatalf("a %d-byte body passed a %d-byte limit", len(data), fuzzBodyLimit)
		}
	})
}

func checkDecoded(t *testing.T, data []byte, req server.ChatRequest, err error, limited bool) {
	t.Helper()
	if err != nil {
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
		return
	}
	if strings.TrimSpace(req.Agent) == "" {
		t.Fatalf("accepted a request without agent: %q", data)
	}
	if strings.TrimSpace(req.Message) == "" {
		t.Fatalf("accepted a request without message: %q", data)
	}
	if !utf8.ValidString(req.Message) {
		t.Fatalf("accepted a message that is not UTF-8: %q", data)
	}
	if len(req.ConversationID) > 128 {
		t.Fatalf("accepted a %d-byte conversation_id", len(req.ConversationID))
	}
}
