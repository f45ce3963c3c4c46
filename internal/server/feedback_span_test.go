package server

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentd/agentd/internal/store"
)

// The feedback span is a child of the request's span, names the run and
// agent like the run's invoke_agent span, and carries the event
// "feedback" with the rating.
func TestFeedbackSpan(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, parent := tp.Tracer("test").Start(t.Context(), "POST /v1/runs/{id}/feedback")
	recordFeedbackSpan(ctx, tp.Tracer("test"), store.FeedbackEntry{ID: "fb_1", Tenant: "acme", RunID: "run_1", Agent: "demo",
		Rating: -1, PreviousRating: 1, Revision: 2, Comment: "my card number is in here", Tags: []string{"a"}, UpdatedAt: time.Now()})
	parent.End()

	ended := rec.Ended()
	require.Len(t, ended, 2)
	span := ended[0]
	require.Equal(t, "feedback", span.Name())
	require.Equal(t, parent.SpanContext().SpanID(), span.Parent().SpanID())
	require.Equal(t, parent.SpanContext().TraceID(), span.SpanContext().TraceID())
	require.Contains(t, span.Attributes(), attribute.String("agentd.run_id", "run_1"))
	require.Contains(t, span.Attributes(), attribute.String("gen_ai.agent.name", "demo"))
	require.Len(t, span.Events(), 1)
	ev := span.Events()[0]
	require.Equal(t, "feedback", ev.Name)
	require.Contains(t, ev.Attributes, attribute.Int("agentd.feedback.rating", -1))
	require.Contains(t, ev.Attributes, attribute.Int("agentd.feedback.previous_rating", 1))
	require.Contains(t, ev.Attributes, attribute.Int("agentd.feedback.revision", 2))
	require.Contains(t, ev.Attributes, attribute.Bool("agentd.feedback.comment", true))
	for _, a := range append(span.Attributes(), ev.Attributes...) {
		require.NotContains(t, a.Value.Emit(), "card number", "a comment's text is never put on a span: %s", a.Key)
	}
}
