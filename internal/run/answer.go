package run

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/money"
)

// Answer is the data of a done event and the body of a chat answer.
type Answer struct {
	RunID          string      `json:"run_id"`
	ConversationID string      `json:"conversation_id"`
	Agent          string      `json:"agent"`
	Content        []llm.Block `json:"content"`
	Text           string      `json:"text"`
	StopReason     string      `json:"stop_reason"`
	Steps          int         `json:"steps"`
	Usage          llm.Usage   `json:"usage"`
	// CostUSD is the run's cost (agentd's pricing table).
	CostUSD money.Nanos `json:"cost_usd"`
	// PendingApprovals, on the answer of a chat that paused (StopReason
	// StopApprovalRequired), are the tool calls it waits for.
	PendingApprovals []ApprovalBody `json:"pending_approvals,omitempty"`
}

// StopApprovalRequired is the stop_reason of a chat answer whose run paused
// for a person's approval of a tool call: the run goes on as an async run
// once decided (POST /v1/runs/{id}/approvals).
const StopApprovalRequired = "approval_required"

func (x *execution) answerData() Answer {
	r := x.result()
	return NewAnswer(x.p.RunID, x.p.ConversationID, x.p.Agent.Name, r)
}

// NewAnswer builds the answer of a finished run.
func NewAnswer(runID, conversationID, agent string, r Result) Answer {
	a := Answer{
		RunID: runID, ConversationID: conversationID, Agent: agent,
		Content: r.Output, StopReason: r.StopReason, Steps: r.Steps, Usage: r.Usage, CostUSD: r.CostUSD,
	}
	if a.Content == nil {
		a.Content = []llm.Block{}
	}
	for _, b := range r.Output {
		if b.Type == "text" {
			a.Text += b.Text
		}
	}
	return a
}

// ErrorInfo classifies a run error for events, run rows and HTTP answers.
type ErrorInfo struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func errorData(err error) ErrorInfo { return ClassifyError(err) }

// ClassifyError maps a run error to a stable type and a message safe to show
// clients.
func ClassifyError(err error) ErrorInfo {
	switch {
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ErrorInfo{Type: "timeout", Message: "the run exceeded its time limit"}
	case errors.Is(err, ErrInterrupted):
		return ErrorInfo{Type: "interrupted", Message: "the run was interrupted; what it had checkpointed is kept"}
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		return ErrorInfo{Type: "canceled", Message: "the run was canceled"}
	case errors.Is(err, ErrMaxSteps):
		return ErrorInfo{Type: "max_steps", Message: ErrMaxSteps.Error()}
	case errors.Is(err, ErrRateLimited):
		return ErrorInfo{Type: "rate_limited", Message: err.Error()}
	case errors.Is(err, ErrApprovalTimeout):
		return ErrorInfo{Type: "approval_timeout", Message: err.Error()}
	case errors.Is(err, ErrProgramFailed):
		return ErrorInfo{Type: "program_failed", Message: err.Error()}
	case errors.Is(err, ErrToolsUnavailable):
		return ErrorInfo{Type: "tools_unavailable", Message: err.Error()}
	}
	if ex, ok := budget.AsExceeded(err); ok {
		return ErrorInfo{Type: "budget_exceeded", Message: ex.Error()}
	}
	if e, ok := llm.AsError(err); ok {
		switch {
		case e.Status == 429 || e.Status == 529 || e.Type == "overloaded_error" || e.Type == "rate_limit_error":
			return ErrorInfo{Type: "upstream_unavailable", Message: "the model provider is overloaded or rate-limiting: " + e.Message}
		case e.Type == "circuit_open" || e.Type == "queue_full":
			return ErrorInfo{Type: "upstream_unavailable", Message: "every model of the agent is unavailable (" + e.Type + ")"}
		case e.Type == "timeout":
			return ErrorInfo{Type: "upstream_timeout", Message: "the model call timed out"}
		case e.Status == 0:
			return ErrorInfo{Type: "upstream_error", Message: "the model provider could not be reached or cut the stream"}
		default:
			return ErrorInfo{Type: "upstream_error", Message: fmt.Sprintf("the model provider answered %d %s", e.Status, e.Type)}
		}
	}
	return ErrorInfo{Type: "internal_error", Message: "internal error"}
}
