package server

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentd/agentd/internal/observe"
)

// traced wraps next (the middleware) in the request's server span: its
// parent is the W3C traceparent of the request, if any (the global
// propagator, a no-op until tracing is set up). Everything below, access
// log included, sees the span in the request context, so log lines carry
// its trace_id. With tracing off the span is a no-op.
func (s *Server) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := observe.Tracer().Start(ctx, "", trace.WithSpanKind(trace.SpanKindServer))
		if !span.IsRecording() {
			// Tracing off (or this trace not sampled): skip the route
			// match and the scrubbing the attributes would cost.
			next.ServeHTTP(w, r.WithContext(ctx))
			span.End()
			return
		}
		_, pattern := s.mux.Handler(r)
		route := pattern // "POST /v1/chat": the method, then the path template
		if _, path, ok := strings.Cut(pattern, " "); ok {
			route = path
		}
		if route == "" || route == "/" {
			route = "unmatched"
		}
		span.SetName(r.Method + " " + route)
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String("url.path", observe.ScrubSpanText(r.URL.Path)),
		)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			span.SetAttributes(attribute.Int("http.response.status_code", rec.status),
				attribute.String("agentd.request_id", observe.ScrubSpanText(w.Header().Get("X-Request-Id"))))
			if rec.status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(rec.status))
			}
			span.End()
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}
