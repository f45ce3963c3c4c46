package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of agentd's spans.
const TracerName = "github.com/agentd/agentd"

// Tracer returns agentd's tracer from the global provider (a no-op until
// SetupTracing installs one).
func Tracer() trace.Tracer { return otel.Tracer(TracerName) }

// TracingConfig configures SetupTracing.
type TracingConfig struct {
	// Endpoint is the OTLP/HTTP endpoint; empty: tracing off. A URL
	// without a path gets /v1/traces.
	Endpoint    string
	ServiceName string
	Version     string
	// SampleRatio of new traces (parent-based: a sampled remote parent is
	// always followed).
	SampleRatio float64
	// Redactor scrubs error messages and paths put on spans (nil:
	// patterns only).
	Redactor *Redactor
	// Log receives export errors (nil: OpenTelemetry's default, the
	// standard logger).
	Log *slog.Logger
}

// spanRedactor scrubs what spans carry; set by SetupTracing.
var spanRedactor atomic.Pointer[Redactor]

// ScrubSpanText returns s scrubbed for a span attribute or status.
func ScrubSpanText(s string) string { return spanRedactor.Load().Scrub(s) }

// SetupTracing installs a global tracer provider exporting spans over
// OTLP/HTTP in batches, and the W3C trace-context propagator. With no
// endpoint it changes nothing and tracing stays a no-op. shutdown flushes
// the spans still buffered and restores the previous globals.
func SetupTracing(ctx context.Context, cfg TracingConfig) (shutdown func(context.Context) error, err error) {
	if cfg.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("otlp endpoint %q: not a URL", cfg.Endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	hc := otlpHTTPConfig{URL: u.String(), Timeout: otlpTimeout, Retry: defaultOTLPRetry}
	otlpEnv(&hc, os.Getenv, cfg.Log)
	// The SDK converts spans to OTLP; agentd's client sends them (see
	// otlphttp.go for why not otlptracehttp).
	exp, err := otlptrace.New(ctx, newOTLPHTTPClient(hc))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", cfg.Version),
	))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	spanRedactor.Store(cfg.Redactor)
	if cfg.Log != nil {
		l := cfg.Log
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			l.Warn("tracing: span export failed", "err", err)
		}))
	}
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return func(ctx context.Context) error {
		err := tp.Shutdown(ctx) // flushes
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		return err
	}, nil
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when
// there is none: what a queued run keeps so that its worker's spans join
// the submitting request's trace.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// WithTraceParent returns ctx with the remote span context of traceparent
// as the parent of the spans started from it; an empty or invalid
// traceparent leaves ctx as it is.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// EndSpan records err (if any, its message scrubbed) on span as its status
// and ends it.
func EndSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		msg := ScrubSpanText(err.Error())
		span.RecordError(errors.New(msg))
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}
