package resilience

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// Chained is one model of a fallback chain.
type Chained struct {
	// Name is the model id the call's Request.Model is set to.
	Name  string
	Model llm.Model
}

// Fallback returns a model that calls chain[0] and, when it fails before any
// output reached onDelta with a Temporary error (an open breaker, spent
// retries, a full queue), passes the call to the next model, with
// Request.Model replaced. A failure after output was streamed, a
// non-temporary error (400, 401, ...) and the caller's cancellation are
// returned as they are. The answer's Model names the model that answered.
func Fallback(chain []Chained, m *Metrics, log *slog.Logger) llm.Model {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(chain) == 1 {
		return &fixedModel{c: chain[0]}
	}
	return &fallbackModel{chain: chain, metrics: m, log: log}
}

// fixedModel is a chain of one: it only sets Request.Model.
type fixedModel struct{ c Chained }

func (f *fixedModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	req.Model = f.c.Name
	resp, err := f.c.Model.Stream(ctx, req, onDelta)
	if err == nil && resp.Model == "" {
		resp.Model = f.c.Name
	}
	return resp, err
}

type fallbackModel struct {
	chain   []Chained
	metrics *Metrics
	log     *slog.Logger
}

func (f *fallbackModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	streamed := false
	track := func(d llm.Delta) {
		streamed = true
		if onDelta != nil {
			onDelta(d)
		}
	}
	var (
		resp llm.Response
		err  error
	)
	for i, c := range f.chain {
		req.Model = c.Name
		resp, err = c.Model.Stream(ctx, req, track)
		if err == nil {
			if resp.Model == "" {
				resp.Model = c.Name
			}
			return resp, nil
		}
		if i == len(f.chain)-1 || streamed || ctx.Err() != nil {
			return resp, err
		}
		e, ok := llm.AsError(err)
		if !ok || e.Streamed || !e.Temporary() {
			return resp, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
			return resp, err
		}
		next := f.chain[i+1].Name
		f.metrics.fallback(c.Name, next)
		f.log.WarnContext(ctx, "model call falls back", "from", c.Name, "to", next, "err_type", e.Type, "status", e.Status)
	}
	return resp, err
}

// ttftModel records the time to the first streamed text of each call.
type ttftModel struct {
	next    llm.Model
	model   string
	metrics *Metrics
}

func (t *ttftModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	if t.metrics == nil {
		return t.next.Stream(ctx, req, onDelta)
	}
	start := time.Now()
	first := true
	return t.next.Stream(ctx, req, func(d llm.Delta) {
		if first {
			first = false
			t.metrics.observeTTFT(t.model, time.Since(start))
		}
		if onDelta != nil {
			onDelta(d)
		}
	})
}
