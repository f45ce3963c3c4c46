package run

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/metered"
)

// callModel makes the step's model call. It is three functions so that
// the frame on the stack while the model is awaited is small: prepareCall
// and finishCall are not inlined, and their locals (the request being
// built, the span's attributes, the events' data) are gone during the
// wait. That depth decides the stack size of a held chat's goroutine (see
// docs/benchmarks.md, memory per chat).
func (x *execution) callModel(ctx context.Context) error {
	c, err := x.prepareCall(ctx)
	if err != nil {
		return err
	}
	resp, err := c.model.Stream(c.sctx, c.req, c.onDelta)
	return x.finishCall(ctx, c, &resp, err)
}

// modelCall is one step's model call, between prepareCall and finishCall.
type modelCall struct {
	step    int
	req     llm.Request
	model   llm.Model
	metered *metered.Call
	sctx    context.Context
	onDelta llm.DeltaFunc
}

// prepareCall builds the step's request and begins its metering: the token
// rate limit, the budget reservation and the span (package metered).
//
//go:noinline
func (x *execution) prepareCall(ctx context.Context) (*modelCall, error) {
	a := x.p.Agent
	step := x.st.Step + 1
	req := llm.Request{
		Model:     a.Model,
		System:    a.System,
		MaxTokens: a.MaxTokens,
		Messages:  append(append(make([]llm.Message, 0, len(x.p.History)+len(x.st.Messages)), x.p.History...), x.st.Messages...),
	}
	for _, t := range a.Tools {
		req.Tools = append(req.Tools, t.Spec())
	}
	model := a.Client
	if model == nil {
		model = x.l.Model
	}
	var keyID string
	if pr, ok := auth.FromContext(ctx); ok {
		keyID = pr.KeyID
	}
	m := x.l.meter()
	sctx, mc, err := m.Begin(ctx, metered.CallInfo{
		Tenant: x.p.Tenant, Key: keyID, Agent: a.Name, RunID: x.p.RunID, Step: step,
		Model: a.Model, Fallbacks: a.FallbackModels, MaxTokens: int64(a.MaxTokens),
		RunMaxUSD: runCap(a.MaxCostUSD, x.p.MaxCostUSD), Trace: true,
	}, &req)
	if err != nil {
		return nil, err
	}
	return &modelCall{
		step: step, req: req, model: model, metered: mc, sctx: sctx,
		onDelta: func(d llm.Delta) {
			x.emit(TextDeltaEvent{Step: step, Index: d.Index, Text: d.Text})
		},
	}, nil
}

// finishCall ends the call's metering (its usage row, cost and settlement)
// and takes its answer into the state, the events and a checkpoint.
//
//go:noinline
func (x *execution) finishCall(ctx context.Context, c *modelCall, r *llm.Response, err error) error {
	if err != nil {
		c.metered.Abort(ctx, err)
		return err
	}
	step, resp := c.step, r
	usd := c.metered.Settle(ctx, resp)
	u := resp.Usage

	content, err := json.Marshal(resp.Content)
	if err != nil {
		return fmt.Errorf("encode model output: %w", err)
	}
	if len(resp.Content) == 0 {
		content = json.RawMessage(`[{"type":"text","text":""}]`)
	}
	x.mu.Lock()
	x.st.Step = step
	x.st.Usage = x.st.Usage.Add(u)
	x.st.CostUSD += usd
	x.st.StopReason = resp.StopReason
	x.st.Messages = append(x.st.Messages, llm.Message{Role: "assistant", Content: content})
	x.st.Results = nil
	x.mu.Unlock()
	toolUse := false
	for _, b := range resp.Content {
		if b.Type == "tool_use" {
			toolUse = true
			x.emit(ToolUseEvent{Step: step, ID: b.ID, Name: b.Name, Input: b.Input})
		}
	}
	x.emit(UsageEvent{
		Step: step, Model: resp.Model, RequestID: resp.RequestID, StopReason: resp.StopReason,
		InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens,
		CostUSD: usd,
	})
	if !toolUse && x.p.Commit != nil && !x.p.Resumable {
		// The final answer of a run nothing resumes (an inline chat): the
		// loop ends and commitDone stores this step's checkpoint and
		// events with the turn, in one transaction, right after this. A
		// checkpoint of its own would be one more write per chat and
		// could only ever save a model call for a resumed run.
		return nil
	}
	// A resumable run checkpoints its final answer too: resumed after a
	// crash (or a drain) before its commit, it commits that answer
	// without calling the model again.
	return x.checkpoint(ctx)
}

// runCap is the lower of two caps, 0 meaning none.
func runCap(a, b float64) float64 {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}

// meter is the Loop's metering of model calls.
func (l *Loop) meter() metered.Meter {
	return metered.Meter{Pricing: l.Pricing, Usage: l.Usage, Tokens: l.Tokens, Budget: l.Budget, Metrics: l.Metrics, Log: l.Log}
}
