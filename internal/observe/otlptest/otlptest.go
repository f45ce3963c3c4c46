// Package otlptest is an OTLP/HTTP trace receiver for tests: it decodes
// every export with the official ExportTraceServiceRequest (plain or
// gzip), so what agentd encodes by hand is checked against the protocol's
// own message. Only tests import it: the proto packages do not reach the
// binary (go list -deps ./cmd/agentd).
package otlptest

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Export is one export the receiver took.
type Export struct {
	Req    *coltracepb.ExportTraceServiceRequest
	Header http.Header
	Path   string
	At     time.Time
}

// Receiver is a running receiver; URL is its base URL.
type Receiver struct {
	URL     string
	mu      sync.Mutex
	exports []Export
	respond func(i int, w http.ResponseWriter) bool
}

// New starts a receiver, closed when the test ends. It answers every
// export with an empty success unless SetRespond says otherwise, and a
// malformed one (not a POST of application/x-protobuf that decodes) with
// 400, which it does not keep.
func New(t testing.TB) *Receiver {
	t.Helper()
	rc := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		i := len(rc.exports)
		rc.exports = append(rc.exports, Export{Req: &req, Header: r.Header.Clone(), Path: r.URL.Path, At: time.Now()})
		respond := rc.respond
		rc.mu.Unlock()
		if respond != nil && respond(i, w) {
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// SetRespond makes f answer export i (from 0) when it returns true,
// instead of the empty success.
func (rc *Receiver) SetRespond(f func(i int, w http.ResponseWriter) bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.respond = f
}

// Exports are the exports taken so far, in order.
func (rc *Receiver) Exports() []Export {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Export(nil), rc.exports...)
}

// Count is the number of exports taken so far.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.exports)
}

// Spans are the spans of every export so far.
func (rc *Receiver) Spans() []*tracepb.Span {
	var spans []*tracepb.Span
	for _, e := range rc.Exports() {
		for _, rs := range e.Req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
	}
	return spans
}

// Paths are the URL paths of every export so far.
func (rc *Receiver) Paths() []string {
	var paths []string
	for _, e := range rc.Exports() {
		paths = append(paths, e.Path)
	}
	return paths
}
