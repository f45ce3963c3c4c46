package observe

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// agentd's OTLP/HTTP (protobuf) trace client. It replaces otlptracehttp,
// whose import of go.opentelemetry.io/proto/otlp/collector/trace/v1 (for
// ExportTraceServiceRequest) links gRPC, grpc-gateway and genproto into the
// binary: that package also holds the collector's gRPC service and gateway
// handlers (docs/benchmarks.md, "Stripped binary: where the bytes go").
// The span → protobuf conversion stays the SDK's (otlptrace.New with this
// client); what is done here is the request: ExportTraceServiceRequest is
// one repeated field (1, ResourceSpans) and is encoded with protowire.
//
// Behaviour kept from otlptracehttp as agentd configured it: POST
// application/x-protobuf to the endpoint, 10 s per attempt, retries on
// 429/502/503/504 (and temporary network errors) with exponential backoff
// from 5 s up to 30 s for at most a minute, honouring Retry-After, the
// partial-success response turned into an error, and the standard
// environment variables otlptracehttp read: OTEL_EXPORTER_OTLP_HEADERS,
// _COMPRESSION (gzip), _CERTIFICATE, _CLIENT_CERTIFICATE and _CLIENT_KEY,
// each also as OTEL_EXPORTER_OTLP_TRACES_*, which wins.

const (
	otlpContentTypeProto = "application/x-protobuf"
	otlpContentTypeJSON  = "application/json"
	otlpMaxRequestSize   = 64 << 20 // otlptracehttp's default
	otlpMaxResponseSize  = 4 << 20  // otlptracehttp's default
	otlpTimeout          = 10 * time.Second
)

// otlpRetry is the exponential backoff of failed exports: otlptracehttp's
// defaults (cenkalti/backoff: ×1.5, ±50 % jitter).
type otlpRetry struct {
	Initial, Max, MaxElapsed time.Duration
}

var defaultOTLPRetry = otlpRetry{Initial: 5 * time.Second, Max: 30 * time.Second, MaxElapsed: time.Minute}

// otlpHTTPConfig configures an otlpHTTPClient.
type otlpHTTPConfig struct {
	URL     string // full URL, path included
	Headers map[string]string
	Gzip    bool
	Timeout time.Duration // per attempt
	TLS     *tls.Config   // nil: the defaults
	Retry   otlpRetry
}

// otlpHTTPClient implements otlptrace.Client over OTLP/HTTP with protobuf.
type otlpHTTPClient struct {
	cfg      otlpHTTPConfig
	hc       *http.Client
	stopCh   chan struct{}
	stopOnce sync.Once
}

var _ otlptrace.Client = (*otlpHTTPClient)(nil)

func newOTLPHTTPClient(cfg otlpHTTPConfig) *otlpHTTPClient {
	tr := http.DefaultTransport.(*http.Transport).Clone() // proxy from the environment, HTTP/2
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = otlpTimeout
	}
	return &otlpHTTPClient{
		cfg:    cfg,
		hc:     &http.Client{Transport: tr, Timeout: cfg.Timeout},
		stopCh: make(chan struct{}),
	}
}

// Start does nothing: connections are made by the first export.
func (c *otlpHTTPClient) Start(ctx context.Context) error { return ctx.Err() }

// Stop interrupts the exports in flight and their retries.
func (c *otlpHTTPClient) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stopCh) })
	c.hc.CloseIdleConnections()
	return ctx.Err()
}

// UploadTraces sends one ExportTraceServiceRequest, retrying what is
// retryable.
func (c *otlpHTTPClient) UploadTraces(ctx context.Context, rss []*tracepb.ResourceSpans) error {
	body, err := marshalExportTraceRequest(rss)
	if err != nil {
		return err
	}
	if len(body) > otlpMaxRequestSize {
		return fmt.Errorf("otlp request body too large: %d bytes exceeds %d", len(body), otlpMaxRequestSize)
	}
	if c.cfg.Gzip {
		var b bytes.Buffer
		gz := gzip.NewWriter(&b)
		if _, err := gz.Write(body); err != nil {
			return fmt.Errorf("otlp gzip: %w", err)
		}
		if err := gz.Close(); err != nil {
			return fmt.Errorf("otlp gzip: %w", err)
		}
		body = b.Bytes()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Stop interrupts the export; the goroutine ends with ctx
		select {
		case <-ctx.Done():
		case <-c.stopCh:
			cancel()
		}
	}()

	start := time.Now()
	interval := c.cfg.Retry.Initial
	for {
		throttle, err := c.send(ctx, body)
		if err == nil {
			return nil
		}
		if errors.Is(err, errNotRetryable) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		if c.cfg.Retry.Initial <= 0 {
			return err
		}
		elapsed := time.Since(start)
		if c.cfg.Retry.MaxElapsed > 0 && (elapsed > c.cfg.Retry.MaxElapsed || elapsed+throttle > c.cfg.Retry.MaxElapsed) {
			return fmt.Errorf("max retry time elapsed: %w", err)
		}
		delay := max(throttle, jitter(interval))
		interval = min(time.Duration(float64(interval)*1.5), c.cfg.Retry.Max)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// jitter returns d randomised by ±50 %, as cenkalti/backoff does.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// errNotRetryable marks an export failure that retrying cannot fix.
var errNotRetryable = errors.New("not retryable")

// send makes one attempt. A retryable failure comes with the Retry-After
// delay, if the server gave one.
func (c *otlpHTTPClient) send(ctx context.Context, body []byte) (throttle time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("otlp request: %w (%w)", err, errNotRetryable)
	}
	req.Header.Set("User-Agent", "OTel OTLP Exporter Go/"+otlptrace.Version()+" (agentd)")
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", otlpContentTypeProto)
	if c.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && ue.Temporary() { //nolint:staticcheck // otlptracehttp's rule
			return 0, err
		}
		return 0, fmt.Errorf("%w (%w)", err, errNotRetryable)
	}
	defer func() { _ = resp.Body.Close() }()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, otlpMaxResponseSize+1))
	if rerr == nil && len(data) > otlpMaxResponseSize {
		rerr = fmt.Errorf("otlp response body exceeds %d bytes", otlpMaxResponseSize)
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		if rerr != nil {
			return 0, fmt.Errorf("otlp response: %w (%w)", rerr, errNotRetryable)
		}
		if err := partialSuccess(resp.Header.Get("Content-Type"), data); err != nil {
			return 0, fmt.Errorf("%w (%w)", err, errNotRetryable)
		}
		return 0, nil
	case code == http.StatusTooManyRequests, code == http.StatusBadGateway,
		code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		return retryAfter(resp.Header.Get("Retry-After")),
			fmt.Errorf("retry-able request failure: %s: %s", resp.Status, bodyText(data))
	default:
		return 0, fmt.Errorf("failed to send to %s: %s (body: %s) (%w)", c.cfg.URL, resp.Status, bodyText(data), errNotRetryable)
	}
}

func bodyText(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty)"
	}
	return s
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		if n > int64(1<<63-1)/int64(time.Second) {
			return time.Duration(1<<63 - 1)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// marshalExportTraceRequest encodes ExportTraceServiceRequest{ResourceSpans:
// rss}: field 1, repeated, length-delimited.
func marshalExportTraceRequest(rss []*tracepb.ResourceSpans) ([]byte, error) {
	opts := proto.MarshalOptions{}
	var b []byte
	for _, rs := range rss {
		n := opts.Size(rs)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		before := len(b)
		var err error
		b, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, rs)
		if err != nil {
			return nil, fmt.Errorf("otlp marshal resource spans: %w", err)
		}
		if len(b)-before != n {
			return nil, fmt.Errorf("otlp marshal resource spans: size %d, wrote %d", n, len(b)-before)
		}
	}
	return b, nil
}

// PartialSuccessError is an export the receiver accepted only in part
// (ExportTracePartialSuccess).
type PartialSuccessError struct {
	RejectedSpans int64
	Message       string
}

func (e PartialSuccessError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "empty message"
	}
	return fmt.Sprintf("OTLP partial success: %s (%d spans rejected)", msg, e.RejectedSpans)
}

// partialSuccess decodes an ExportTraceServiceResponse (protobuf or JSON,
// by contentType) and returns its partial success as an error, nil when
// everything was accepted or the body is something else.
func partialSuccess(contentType string, body []byte) error {
	if len(body) == 0 {
		return nil
	}
	mt, _, _ := strings.Cut(contentType, ";")
	var ps PartialSuccessError
	switch strings.TrimSpace(mt) {
	case otlpContentTypeProto:
		var err error
		if ps, err = decodePartialSuccess(body); err != nil {
			return err
		}
	case otlpContentTypeJSON:
		var r struct {
			PartialSuccess *struct {
				RejectedSpans json.Number `json:"rejectedSpans"`
				ErrorMessage  string      `json:"errorMessage"`
			} `json:"partialSuccess"`
		}
		// protojson writes int64 as a string; json.Number takes both.
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("otlp response: %w", err)
		}
		if r.PartialSuccess == nil {
			return nil
		}
		ps.Message = r.PartialSuccess.ErrorMessage
		if s := r.PartialSuccess.RejectedSpans.String(); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("otlp response: rejectedSpans %q: %w", s, err)
			}
			ps.RejectedSpans = n
		}
	default:
		return nil
	}
	if ps.RejectedSpans != 0 || ps.Message != "" {
		return ps
	}
	return nil
}

// decodePartialSuccess reads field 1 (ExportTracePartialSuccess:
// 1 rejected_spans int64, 2 error_message string) of a protobuf
// ExportTraceServiceResponse, skipping unknown fields.
func decodePartialSuccess(b []byte) (PartialSuccessError, error) {
	var ps PartialSuccessError
	bad := func(n int) (PartialSuccessError, error) {
		return PartialSuccessError{}, fmt.Errorf("otlp response: %w", protowire.ParseError(n))
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return bad(n)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return bad(n)
			}
			b = b[n:]
			continue
		}
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return bad(n)
		}
		b = b[n:]
		for len(m) > 0 { // fields of one message merge
			fnum, ftyp, k := protowire.ConsumeTag(m)
			if k < 0 {
				return bad(k)
			}
			m = m[k:]
			switch {
			case fnum == 1 && ftyp == protowire.VarintType:
				v, k := protowire.ConsumeVarint(m)
				if k < 0 {
					return bad(k)
				}
				ps.RejectedSpans, m = int64(v), m[k:]
			case fnum == 2 && ftyp == protowire.BytesType:
				v, k := protowire.ConsumeString(m)
				if k < 0 {
					return bad(k)
				}
				ps.Message, m = v, m[k:]
			default:
				if k = protowire.ConsumeFieldValue(fnum, ftyp, m); k < 0 {
					return bad(k)
				}
				m = m[k:]
			}
		}
	}
	return ps, nil
}

// otlpEnv reads the OTEL_EXPORTER_OTLP_* variables otlptracehttp honoured
// (the per-signal TRACES_ form wins) into cfg. The endpoint and the timeout
// come from agentd's configuration, as before. A value that cannot be used
// is logged and ignored, as otlptracehttp did.
func otlpEnv(cfg *otlpHTTPConfig, getenv func(string) string, log *slog.Logger) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_" + name)); v != "" {
			return v
		}
		return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_" + name))
	}
	warn := func(msg string, args ...any) {
		if log != nil {
			log.Warn(msg, args...)
		}
	}
	if v := get("HEADERS"); v != "" {
		cfg.Headers = parseOTLPHeaders(v, warn)
	}
	if v := get("COMPRESSION"); v != "" {
		cfg.Gzip = v == "gzip"
	}
	if p := get("PROTOCOL"); p != "" && p != "http/protobuf" {
		warn("tracing: only OTLP http/protobuf is supported; ignoring the protocol setting", "protocol", p)
	}
	if !strings.HasPrefix(strings.ToLower(cfg.URL), "https://") {
		return
	}
	var tc *tls.Config
	if path := get("CERTIFICATE"); path != "" {
		pem, err := os.ReadFile(path)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			warn("tracing: OTLP certificate ignored", "err", err)
		case !pool.AppendCertsFromPEM(pem):
			warn("tracing: OTLP certificate ignored: no PEM certificate", "path", path)
		default:
			tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	}
	if cert, key := get("CLIENT_CERTIFICATE"), get("CLIENT_KEY"); cert != "" && key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			warn("tracing: OTLP client certificate ignored", "err", err)
		} else {
			if tc == nil {
				tc = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tc.Certificates = []tls.Certificate{pair}
		}
	}
	cfg.TLS = tc
}

// parseOTLPHeaders parses "k1=v1,k2=v2" (values URL-escaped), as
// otlptracehttp did: bad pairs are reported and skipped.
func parseOTLPHeaders(s string, warn func(string, ...any)) map[string]string {
	h := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !validHeaderKey(k) {
			warn("tracing: OTLP header ignored: want key=value", "key", k)
			continue
		}
		uv, err := url.PathUnescape(v)
		if err != nil {
			warn("tracing: OTLP header ignored: bad escape", "key", k)
			continue
		}
		h[k] = strings.TrimSpace(uv)
	}
	return h
}

// validHeaderKey reports whether k is an HTTP token.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r >= 0x80 || !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}
