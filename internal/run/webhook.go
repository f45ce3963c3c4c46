package run

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Webhook delivers runs that finished or paused for approval
// (X-Agentd-Event run.completed, run.requires_action): a POST of the run's
// JSON, signed with
// HMAC-SHA256 so the receiver can check it came from agentd:
//
//	X-Agentd-Signature: t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<body>")>
//
// Retries with back-off are the queue's (a delivery is a job).
type Webhook struct {
	Store interface {
		GetRun(ctx context.Context, tenant, id string) (store.Run, error)
		ListApprovals(ctx context.Context, runID string) ([]store.Approval, error)
	}
	Secret string
	Client *http.Client
}

// RunBody is the public JSON shape of a run (GET /v1/runs/{id}, webhooks).
type RunBody struct {
	ID             string          `json:"id"`
	Agent          string          `json:"agent"`
	ConversationID string          `json:"conversation_id"`
	Status         string          `json:"status"`
	Input          json.RawMessage `json:"input"`
	Output         json.RawMessage `json:"output,omitempty"`
	Error          string          `json:"error,omitempty"`
	Attempt        int             `json:"attempt"`
	Steps          int             `json:"steps"`
	Usage          RunUsage        `json:"usage"`
	CostUSD        money.Nanos     `json:"cost_usd"` // agentd's pricing table
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	// Turn is the run's place in its conversation's order (concurrency
	// policies enqueue, interrupt, rollback): 1, 2, 3, ... in the order
	// the server accepted the messages; absent for a run outside it.
	Turn int64 `json:"turn,omitempty"`
	// AgentDigest names the definition of the configured agent the run
	// executes with: the one it was submitted under (SHA-256, hex);
	// absent for agents defined through the API and hosted programs.
	AgentDigest string `json:"agent_digest,omitempty"`
	// PendingApprovals are the tool calls a run in status requires_action
	// waits for.
	PendingApprovals []ApprovalBody `json:"pending_approvals,omitempty"`
}

// ApprovalBody is the public JSON shape of a tool call that waits for, or
// was decided by, a person.
type ApprovalBody struct {
	ToolUseID   string          `json:"tool_use_id"`
	Name        string          `json:"name"`
	Input       json.RawMessage `json:"input"`
	Step        int             `json:"step"`
	RequestedAt time.Time       `json:"requested_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	// Decision is approve, deny or timeout; empty while pending.
	Decision  store.Decision `json:"decision,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	DecidedBy string         `json:"decided_by,omitempty"`
	DecidedAt *time.Time     `json:"decided_at,omitempty"`
}

// NewApprovalBody converts an approval to its public shape.
func NewApprovalBody(a store.Approval) ApprovalBody {
	b := ApprovalBody{
		ToolUseID: a.ToolUseID, Name: a.Name, Input: a.Input, Step: a.Step, RequestedAt: a.RequestedAt, ExpiresAt: a.ExpiresAt,
		Decision: a.Decision, Reason: a.Reason, DecidedBy: a.DecidedBy,
	}
	if b.Input == nil {
		b.Input = json.RawMessage("{}")
	}
	if !a.DecidedAt.IsZero() {
		b.DecidedAt = &a.DecidedAt
	}
	return b
}

// SetPending sets PendingApprovals to the undecided ones of approvals.
func (b *RunBody) SetPending(approvals []store.Approval) {
	b.PendingApprovals = nil
	for _, a := range approvals {
		if a.Decision == store.DecisionPending {
			b.PendingApprovals = append(b.PendingApprovals, NewApprovalBody(a))
		}
	}
}

// RunUsage is a run's token count.
type RunUsage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// NewRunBody converts a run row to its public shape.
func NewRunBody(r store.Run) RunBody {
	b := RunBody{
		ID: r.ID, Agent: r.Agent, ConversationID: r.ConversationID, Status: string(r.Status),
		Input: r.Input, Output: r.Output, Error: r.Error, Attempt: r.Attempt, Steps: r.Steps,
		Usage:     RunUsage{InputTokens: r.InputTokens, OutputTokens: r.OutputTokens},
		CostUSD:   r.CostUSD,
		CreatedAt: r.CreatedAt, Turn: r.Turn, AgentDigest: r.AgentDigest,
	}
	if b.Input == nil {
		b.Input = json.RawMessage("{}")
	}
	if !r.StartedAt.IsZero() {
		b.StartedAt = &r.StartedAt
	}
	if !r.FinishedAt.IsZero() {
		b.FinishedAt = &r.FinishedAt
	}
	return b
}

// Deliver posts the run, as it is now, to url once, with the event in
// X-Agentd-Event and key in Idempotency-Key; an error makes the queue
// retry.
func (w *Webhook) Deliver(ctx context.Context, tenant, runID, url, event, key string) error {
	r, err := w.Store.GetRun(ctx, tenant, runID)
	if err != nil {
		return fmt.Errorf("load run %s: %w", runID, err)
	}
	rb := NewRunBody(r)
	if r.Status == store.RunRequiresAction {
		approvals, err := w.Store.ListApprovals(ctx, runID)
		if err != nil {
			return fmt.Errorf("load approvals of run %s: %w", runID, err)
		}
		rb.SetPending(approvals)
	}
	body, err := json.Marshal(rb)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", runID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentd-webhook")
	req.Header.Set("X-Agentd-Run-ID", runID)
	req.Header.Set("X-Agentd-Event", event)
	req.Header.Set("Idempotency-Key", key) // receivers dedupe retries
	req.Header.Set("X-Agentd-Signature", "t="+ts+",v1="+Sign(w.Secret, ts, body))
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook for run %s: %w", runID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook for run %s: receiver answered %s", runID, resp.Status)
	}
	return nil
}

// Sign returns the hex HMAC-SHA256 of "<ts>.<body>" under secret.
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
