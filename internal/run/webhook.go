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

// Webhook delivers finished runs: a POST of the run's JSON, signed with
// HMAC-SHA256 so the receiver can check it came from agentd:
//
//	X-Agentd-Signature: t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<body>")>
//
// Retries with back-off are the queue's (a delivery is a job).
type Webhook struct {
	Store interface {
		GetRun(ctx context.Context, tenant, id string) (store.Run, error)
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
		CreatedAt: r.CreatedAt,
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

// Deliver posts the run to url once; an error makes the queue retry.
func (w *Webhook) Deliver(ctx context.Context, tenant, runID, url string) error {
	r, err := w.Store.GetRun(ctx, tenant, runID)
	if err != nil {
		return fmt.Errorf("load run %s: %w", runID, err)
	}
	body, err := json.Marshal(NewRunBody(r))
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
	req.Header.Set("Idempotency-Key", runID) // receivers dedupe retries
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
