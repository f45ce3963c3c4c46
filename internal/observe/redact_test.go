package observe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type creds struct {
	User  string
	Token string
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

func TestRedactHandler(t *testing.T) {
	const secret = "hunter2-very-secret"
	const key = "sk-ant-api03-AbCdEf0123456789"
	const client = "agd_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, err := NewLogger(&buf, format, "debug", WithRedaction(NewRedactor(secret, "short")))
		require.NoError(t, err)
		ctx := WithAttrs(context.Background(), slog.String("request_id", secret))
		log = log.With("with", "x"+secret, slog.Group("g", "k", key))
		log.InfoContext(ctx, "msg "+secret,
			"str", "a "+secret+" b",
			"err", fmt.Errorf("wrapped: %w", errors.New("dial redis://:"+secret+"@host")),
			"nested", slog.GroupValue(slog.Group("inner", "v", "Bearer "+client)),
			"struct", creds{User: "u", Token: secret},
			"ptr", &creds{Token: key},
			"map", map[string]any{"k": []string{secret}},
			"stringer", stringer{"x " + secret},
			"bytes", []byte(secret),
			"client_key", client,
			"prefix", "agd_abcd1234", // a display prefix stays
			"short", "short", // below MinSecretLen: not a secret
			"n", 42,
		)
		out := buf.String()
		for _, s := range []string{secret, key, client} {
			require.NotContains(t, out, s, format)
		}
		require.Contains(t, out, RedactMask, format)
		require.Contains(t, out, "agd_abcd1234", format)
		require.Contains(t, out, "Bearer "+RedactMask, format)
		require.Contains(t, out, "short", format)
		require.Contains(t, out, "42", format)
		if format == "json" {
			require.Contains(t, out, `"struct":"{\"User\":\"u\",\"Token\":\"[redacted]\"}"`)
		}
	}
}

func TestRedactLeavesCleanValues(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "json", "info", WithRedaction(NewRedactor("s3cr3t-value")))
	require.NoError(t, err)
	log.Info("clean", "struct", creds{User: "u", Token: "t"})
	require.Contains(t, buf.String(), `"struct":{"User":"u","Token":"t"}`, "structure kept when nothing is secret")
}

func TestLogCarriesTraceIDs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "json", "info")
	require.NoError(t, err)
	log.InfoContext(ctx, "inside")
	span.End()
	sc := span.SpanContext()
	require.Contains(t, buf.String(), `"trace_id":"`+sc.TraceID().String()+`"`)
	require.Contains(t, buf.String(), `"span_id":"`+sc.SpanID().String()+`"`)

	// The queue's carrier: a traceparent round-trips to a child in the
	// same trace.
	tpHeader := TraceParent(ctx)
	require.True(t, strings.HasPrefix(tpHeader, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()), tpHeader)
	wctx := WithTraceParent(context.Background(), tpHeader)
	_, child := tp.Tracer("t").Start(wctx, "worker")
	child.End()
	ended := rec.Ended()
	require.Len(t, ended, 2)
	require.Equal(t, sc.TraceID(), ended[1].SpanContext().TraceID())
	require.Equal(t, sc.SpanID(), ended[1].Parent().SpanID())
	require.Empty(t, TraceParent(context.Background()))
}
