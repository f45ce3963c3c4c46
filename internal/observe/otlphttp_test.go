package observe

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	// Test-only: the official message decodes what agentd encodes by hand.
	// It does not reach the binary (go list -deps ./cmd/agentd).
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/agentd/agentd/internal/observe/otlptest"
)

func testResourceSpans() []*tracepb.ResourceSpans {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	span := func(name string) *tracepb.Span {
		return &tracepb.Span{
			TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), Name: name,
			Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: 1, EndTimeUnixNano: 2,
			Attributes: []*commonpb.KeyValue{str("gen_ai.request.model", "claude-x")},
		}
	}
	return []*tracepb.ResourceSpans{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "a")}},
			ScopeSpans: []*tracepb.ScopeSpans{{
				Scope: &commonpb.InstrumentationScope{Name: TracerName},
				Spans: []*tracepb.Span{span("one"), span("two")},
			}},
		},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "b")}}},
	}
}

// The hand-written request encoding is the official message's.
func TestMarshalExportTraceRequestMatchesOfficial(t *testing.T) {
	rss := testResourceSpans()
	got, err := marshalExportTraceRequest(rss)
	if err != nil {
		t.Fatal(err)
	}
	var dec coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(got, &dec); err != nil {
		t.Fatal(err)
	}
	if want := (&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss}); !proto.Equal(&dec, want) {
		t.Fatalf("decoded %v, want %v", &dec, want)
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes differ from the official encoding:\n got %x\nwant %x", got, want)
	}
	if empty, err := marshalExportTraceRequest(nil); err != nil || len(empty) != 0 {
		t.Fatalf("empty request: %x, %v", empty, err)
	}
}

// SetupTracing end to end: spans reach an OTLP receiver at /v1/traces with
// their attributes, scope and resource, and the headers and gzip of the
// standard environment variables.
func TestSetupTracingExportsOverOTLPHTTP(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			rc := otlptest.New(t)
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-ignored=1")
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20tok, x-scope-orgid=t1")
			if gz {
				t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
			}
			ctx := context.Background()
			shutdown, err := SetupTracing(ctx, TracingConfig{Endpoint: rc.URL, ServiceName: "agentd-test", Version: "v9"})
			if err != nil {
				t.Fatal(err)
			}
			_, span := Tracer().Start(ctx, "chat claude-x", trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("gen_ai.request.model", "claude-x"), attribute.Int("agentd.step", 3)))
			span.End()
			if err := shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			ex := rc.Exports()
			if len(ex) != 1 {
				t.Fatalf("%d exports, want 1", len(ex))
			}
			if ex[0].Path != "/v1/traces" {
				t.Errorf("path %q, want /v1/traces", ex[0].Path)
			}
			h := ex[0].Header
			if h.Get("Authorization") != "Bearer tok" || h.Get("X-Scope-Orgid") != "t1" || h.Get("X-Ignored") != "" {
				t.Errorf("headers %v: want the TRACES_ ones only", h)
			}
			if got := h.Get("Content-Encoding") == "gzip"; got != gz {
				t.Errorf("gzip %v, want %v", got, gz)
			}
			rss := ex[0].Req.ResourceSpans
			if len(rss) != 1 || len(rss[0].ScopeSpans) != 1 || len(rss[0].ScopeSpans[0].Spans) != 1 {
				t.Fatalf("request %v: want one span", ex[0].Req)
			}
			res := map[string]string{}
			for _, kv := range rss[0].Resource.Attributes {
				res[kv.Key] = kv.Value.GetStringValue()
			}
			if res["service.name"] != "agentd-test" || res["service.version"] != "v9" || res["telemetry.sdk.language"] != "go" {
				t.Errorf("resource %v", res)
			}
			if sc := rss[0].ScopeSpans[0].Scope.GetName(); sc != TracerName {
				t.Errorf("scope %q", sc)
			}
			s := rss[0].ScopeSpans[0].Spans[0]
			if s.Name != "chat claude-x" || s.Kind != tracepb.Span_SPAN_KIND_CLIENT || len(s.TraceId) != 16 {
				t.Errorf("span %v", s)
			}
			attrs := map[string]*commonpb.AnyValue{}
			for _, kv := range s.Attributes {
				attrs[kv.Key] = kv.Value
			}
			if attrs["gen_ai.request.model"].GetStringValue() != "claude-x" || attrs["agentd.step"].GetIntValue() != 3 {
				t.Errorf("attributes %v", s.Attributes)
			}
		})
	}
}

func testClient(url string) *otlpHTTPClient {
	return newOTLPHTTPClient(otlpHTTPConfig{
		URL: url + "/v1/traces", Headers: map[string]string{"X-Key": "k"},
		Retry: otlpRetry{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, MaxElapsed: 5 * time.Second},
	})
}

// 503 with Retry-After, then success: one retry, after the delay asked, with
// the same request.
func TestOTLPClientRetriesHonouringRetryAfter(t *testing.T) {
	rc := otlptest.New(t)
	rc.SetRespond(func(i int, w http.ResponseWriter) bool {
		if i == 0 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	c := testClient(rc.URL)
	if err := c.UploadTraces(context.Background(), testResourceSpans()); err != nil {
		t.Fatal(err)
	}
	ex := rc.Exports()
	if len(ex) != 2 {
		t.Fatalf("%d requests, want 2", len(ex))
	}
	if d := ex[1].At.Sub(ex[0].At); d < 900*time.Millisecond {
		t.Errorf("retried after %v, want Retry-After's 1s", d)
	}
	if !proto.Equal(ex[0].Req, ex[1].Req) || len(ex[1].Req.ResourceSpans) != 2 {
		t.Errorf("retry sent another request")
	}
	if ex[1].Header.Get("X-Key") != "k" {
		t.Errorf("retry headers %v", ex[1].Header)
	}
}

func TestOTLPClientRetryableAndNot(t *testing.T) {
	for _, tc := range []struct {
		status int
		tries  int // before success (0: never succeeds)
		want   int // requests
		ok     bool
	}{
		{http.StatusTooManyRequests, 2, 3, true},
		{http.StatusBadGateway, 1, 2, true},
		{http.StatusGatewayTimeout, 1, 2, true},
		{http.StatusBadRequest, 1, 1, false},
		{http.StatusInternalServerError, 1, 1, false},
	} {
		rc := otlptest.New(t)
		rc.SetRespond(func(i int, w http.ResponseWriter) bool {
			if tc.tries == 0 || i < tc.tries {
				http.Error(w, "nope", tc.status)
				return true
			}
			return false
		})
		err := testClient(rc.URL).UploadTraces(context.Background(), testResourceSpans())
		if (err == nil) != tc.ok || rc.Count() != tc.want {
			t.Errorf("status %d: err %v after %d requests; want ok=%v after %d", tc.status, err, rc.Count(), tc.ok, tc.want)
		}
	}
}

// A receiver that stays unavailable: retries stop at MaxElapsed.
func TestOTLPClientGivesUp(t *testing.T) {
	rc := otlptest.New(t)
	rc.SetRespond(func(_ int, w http.ResponseWriter) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	c := testClient(rc.URL)
	c.cfg.Retry.MaxElapsed = 200 * time.Millisecond
	start := time.Now()
	err := c.UploadTraces(context.Background(), testResourceSpans())
	if err == nil || time.Since(start) > 3*time.Second || rc.Count() < 3 {
		t.Fatalf("err %v after %v and %d requests; want an error after a few retries", err, time.Since(start), rc.Count())
	}
}

// Stop interrupts an export waiting for its retry.
func TestOTLPClientStopInterruptsRetry(t *testing.T) {
	rc := otlptest.New(t)
	rc.SetRespond(func(_ int, w http.ResponseWriter) bool {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "later", http.StatusTooManyRequests)
		return true
	})
	c := testClient(rc.URL)
	c.cfg.Retry.MaxElapsed = time.Minute
	done := make(chan error, 1)
	go func() { done <- c.UploadTraces(context.Background(), testResourceSpans()) }()
	for rc.Count() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not interrupt the retry")
	}
}

func TestOTLPClientPartialSuccess(t *testing.T) {
	pb, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 2, ErrorMessage: "too old"}})
	for _, tc := range []struct {
		ctype string
		body  []byte
		want  *PartialSuccessError
	}{
		{"application/x-protobuf", pb, &PartialSuccessError{RejectedSpans: 2, Message: "too old"}},
		{"application/json", []byte(`{"partialSuccess":{"rejectedSpans":"2","errorMessage":"too old"}}`), &PartialSuccessError{RejectedSpans: 2, Message: "too old"}},
		{"application/json; charset=utf-8", []byte(`{"partialSuccess":{"rejectedSpans":5}}`), &PartialSuccessError{RejectedSpans: 5}},
		{"application/json", []byte(`{"partialSuccess":{}}`), nil},
		{"application/x-protobuf", nil, nil},
		{"text/plain", []byte("ok"), nil},
	} {
		rc := otlptest.New(t)
		rc.SetRespond(func(_ int, w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", tc.ctype)
			_, _ = w.Write(tc.body)
			return true
		})
		err := testClient(rc.URL).UploadTraces(context.Background(), testResourceSpans())
		var ps PartialSuccessError
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s %s: %v, want nil", tc.ctype, tc.body, err)
		case tc.want != nil && (!errors.As(err, &ps) || ps != *tc.want):
			t.Errorf("%s %s: %v, want %v", tc.ctype, tc.body, err, *tc.want)
		}
		if rc.Count() != 1 {
			t.Errorf("%s: %d requests, a partial success is not retried", tc.ctype, rc.Count())
		}
	}
}

func TestOTLPEnv(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_HEADERS":     "a=1,bad,b=x%2Cy , c d=2",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent.pem",
	}
	cfg := otlpHTTPConfig{URL: "https://collector:4318/v1/traces"}
	otlpEnv(&cfg, func(k string) string { return env[k] }, nil)
	if len(cfg.Headers) != 2 || cfg.Headers["a"] != "1" || cfg.Headers["b"] != "x,y" || !cfg.Gzip || cfg.TLS != nil {
		t.Fatalf("config %+v", cfg)
	}
	env["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"] = "none"
	cfg = otlpHTTPConfig{URL: "http://collector:4318/v1/traces"}
	otlpEnv(&cfg, func(k string) string { return env[k] }, nil)
	if cfg.Gzip {
		t.Fatal("TRACES_COMPRESSION=none should win")
	}
}
