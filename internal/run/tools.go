package run

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/tool"
)

// runTools runs the tool calls of one model turn in parallel, checkpointing
// each result as it arrives, then appends the tool_result message.
func (x *execution) runTools(ctx context.Context, calls []llm.Block) error {
	done := make(map[string]bool, len(x.st.Results))
	for _, r := range x.st.Results {
		done[r.ToolUseID] = true
	}
	// Calls finished before a restart are not repeated; calls that need
	// a person's decision run once approved, and pause the run until then.
	runnable, waiting, err := x.gate(ctx, calls, done)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(runnable))
	for _, c := range runnable {
		wg.Add(1)
		go func(c llm.Block) {
			defer wg.Done()
			res := x.callTool(ctx, c)
			x.mu.Lock()
			x.st.Results = append(x.st.Results, res)
			x.mu.Unlock()
			if err := x.checkpoint(ctx); err != nil {
				errs <- err
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(waiting) > 0 {
		return x.pause(ctx, waiting)
	}
	// Results go back in the order the model asked for them.
	x.mu.Lock()
	byID := make(map[string]llm.Block, len(x.st.Results))
	for _, r := range x.st.Results {
		byID[r.ToolUseID] = r
	}
	ordered := make([]llm.Block, 0, len(calls))
	for _, c := range calls {
		ordered = append(ordered, byID[c.ID])
	}
	content, err := json.Marshal(ordered)
	if err == nil {
		x.st.Messages = append(x.st.Messages, llm.Message{Role: "user", Content: content})
		x.st.Results, x.st.Decided = nil, nil
	}
	x.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode tool results: %w", err)
	}
	return nil
}

func (x *execution) callTool(ctx context.Context, c llm.Block) llm.Block {
	a := x.p.Agent
	ctx, span := observe.Tracer().Start(ctx, "execute_tool "+c.Name, trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "execute_tool"),
		attribute.String("gen_ai.tool.name", c.Name),
		attribute.String("gen_ai.tool.call.id", c.ID),
	))
	defer span.End()
	start := time.Now()
	res := llm.Block{Type: "tool_result", ToolUseID: c.ID}
	outcome := "ok"
	var t tool.Tool
	for _, cand := range a.Tools {
		if cand.Spec().Name == c.Name {
			t = cand
			break
		}
	}
	if t == nil {
		res.Content, res.IsError, outcome = fmt.Sprintf("tool %q is not available to this agent", c.Name), true, "unknown"
	} else {
		timeout := a.ToolTimeout
		if timeout <= 0 {
			timeout = DefaultToolTimeout
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		// Tools get the call's identity: idempotency keys and audit rows
		// of consequential tools.
		tctx = tool.WithCallInfo(tctx, tool.CallInfo{
			Tenant: x.p.Tenant, Agent: a.Name, RunID: x.p.RunID, Step: x.st.Step, ToolUseID: c.ID,
		})
		out, err := t.Call(tctx, c.Input)
		cancel()
		switch {
		case err != nil && tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
			res.Content, res.IsError, outcome = fmt.Sprintf("tool %s timed out after %s", c.Name, timeout), true, "timeout"
		case err != nil:
			// tool.Outcome: "error", or the kind of a *tool.Error
			// (timeout, unavailable, http_status, blocked, ...).
			res.Content, res.IsError, outcome = fmt.Sprintf("tool %s failed: %v", c.Name, err), true, tool.Outcome(err)
		default:
			res.Content = out
		}
	}
	d := time.Since(start)
	x.l.Metrics.ObserveTool(c.Name, outcome, d)
	span.SetAttributes(attribute.String("agentd.tool.outcome", outcome))
	if res.IsError {
		span.SetAttributes(attribute.String("error.type", outcome))
		span.SetStatus(codes.Error, observe.ScrubSpanText(res.Content))
	}
	x.emit(ToolResultEvent{
		Step: x.st.Step, ToolUseID: c.ID, Name: c.Name, Content: res.Content,
		IsError: res.IsError, DurationMS: d.Milliseconds(),
	})
	return res
}
