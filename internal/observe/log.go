package observe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a slog logger writing to w in format "json" or "text"
// at level ("debug", "info", "warn", "error"). Every record also carries the
// request, conversation and run ids found in its context (see WithAttrs) and
// the trace and span ids of the span in its context, if any. With
// WithRedaction, secrets are scrubbed from every record (see Redactor).
func NewLogger(w io.Writer, format, level string, opts ...LoggerOption) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "json", "":
		h = slog.NewJSONHandler(w, hopts)
	case "text":
		h = slog.NewTextHandler(w, hopts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	return NewLoggerFromHandler(h, opts...), nil
}

// NewLoggerFromHandler is NewLogger over h, the handler of a program that
// embeds agentd (its format and level are h's).
func NewLoggerFromHandler(h slog.Handler, opts ...LoggerOption) *slog.Logger {
	var o loggerOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.redact {
		// Inside the context handler: the attrs it adds are scrubbed too.
		h = NewRedactHandler(h, o.redactor)
	}
	return slog.New(contextHandler{h})
}

// LoggerOption configures NewLogger.
type LoggerOption func(*loggerOptions)

type loggerOptions struct {
	redact   bool
	redactor *Redactor
}

// WithRedaction scrubs r's secrets and the credential patterns from every
// record (r may be nil: patterns only).
func WithRedaction(r *Redactor) LoggerOption {
	return func(o *loggerOptions) { o.redact, o.redactor = true, r }
}

type ctxKey struct{}

// WithAttrs returns a context whose log records carry attrs (e.g.
// slog.String("run_id", id)) in addition to those already in ctx.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	next := make([]slog.Attr, 0, len(prev)+len(attrs))
	next = append(append(next, prev...), attrs...)
	return context.WithValue(ctx, ctxKey{}, next)
}

// contextHandler adds the attrs stored by WithAttrs, and the trace_id and
// span_id of the span in the context, to each record logged with a context
// (logger.InfoContext and friends).
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.Handler.Handle(ctx, r)
	}
	if attrs, ok := ctx.Value(ctxKey{}).([]slog.Attr); ok {
		r.AddAttrs(attrs...)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
