package managed

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// Turns is the Runner of sessions: every turn a session submits (whoever
// submits it: a user.message, an initial event, a queued message) goes
// through it, so a session's settings apply to each of its runs in one
// place:
//
//   - budget: the run's max_cost_usd is what the session's budget has left
//     (the budget less the cost_usd of its earlier runs). A session that
//     has nothing left still runs its turn, which stops before its first
//     model call with session.status_idle {budget_reached}: "the session
//     stops issuing new model requests once the tracked list cost reaches
//     max_list_cost".
//   - webhooks: when the session's tenant has a webhook endpoint, the
//     run's webhook is SessionWebhook (that endpoint, looked up when
//     delivered); the deliveries are agentd's queued, retried run
//     webhooks, which WebhookDeliverer sends in Managed Agents' shape.
type Turns struct {
	Runner
	Store store.Managed
	// Webhooks are the sessions' webhook endpoints; nil: none.
	Webhooks *WebhookEndpoints
	// Wake is told of each turn submitted (Service.Wake); nil: nothing.
	Wake func(conversationID string)
}

// Submit submits a session's turn with its budget and webhook.
func (t *Turns) Submit(ctx context.Context, p run.SubmitParams) (store.Run, bool, error) {
	ms, err := t.Store.GetManagedSessionByConversation(ctx, p.Tenant, p.ConversationID)
	if errors.Is(err, store.ErrNotFound) {
		return t.Runner.Submit(ctx, p) // not a session's conversation
	}
	if err != nil {
		return store.Run{}, false, err
	}
	return t.SubmitSession(ctx, ms, p)
}

// SubmitSession is Submit for a turn of session ms, which the caller has
// just read (a user.message: Service.SendEvents reads it once).
func (t *Turns) SubmitSession(ctx context.Context, ms store.ManagedSession, p run.SubmitParams) (store.Run, bool, error) {
	var d SessionData
	if err := json.Unmarshal(ms.Data, &d); err != nil {
		return store.Run{}, false, fmt.Errorf("decode session %s: %w", ms.ID, err)
	}
	if d.Budget != nil {
		left, err := t.budgetLeft(ctx, ms, d.Budget)
		if err != nil {
			return store.Run{}, false, err
		}
		// A cap of at least one nano-dollar: 0 would mean no cap.
		if capUSD := max(left, 1).USD(); p.MaxCostUSD == 0 || capUSD < p.MaxCostUSD {
			p.MaxCostUSD = capUSD
		}
	}
	if _, ok := t.Webhooks.For(p.Tenant); ok && p.Webhook == "" {
		p.Webhook = SessionWebhook
	}
	r, created, err := t.Runner.Submit(ctx, p)
	if err == nil && t.Wake != nil {
		t.Wake(p.ConversationID) // the session's streams read the new turn now
	}
	return r, created, err
}

// budgetLeft is b less the cost of the session's runs (each run's
// cost_usd, as checkpointed).
func (t *Turns) budgetLeft(ctx context.Context, ms store.ManagedSession, b *Budget) (money.Nanos, error) {
	cents, err := strconv.ParseInt(b.MaxListCost.Amount, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("session %s: budget amount %q: %w", ms.ID, b.MaxListCost.Amount, err)
	}
	left := money.Nanos(cents * 10_000_000)
	runs, err := t.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID)
	if err != nil {
		return 0, err
	}
	for _, r := range runs {
		left -= r.CostUSD
	}
	return left, nil
}

// Webhook events of sessions (BetaWebhookEventDataUnion types).
const (
	WebhookStatusIdled      = "session.status_idled"
	WebhookStatusTerminated = "session.status_terminated"
	WebhookBudgetReached    = "session.budget_reached"
)

// WebhookDeliverer delivers the queue's webhook jobs (queue.WebhookDeliverer).
// A session's job (a session.* event, or a run's whose url is
// SessionWebhook or, queued by an earlier agentd, some endpoint's URL)
// goes to the endpoint of the job's tenant as configured at delivery
// (Webhooks.For; whatever the job names), in Managed Agents' shape,
// signed as Standard Webhooks with that endpoint's key (what the SDK's
// client.Beta.Webhooks.Unwrap verifies); with no endpoint for the tenant
// any more it is dropped (logged). Any other url is a run's own webhook
// (a /v1/runs client's): it goes to Run (agentd's run webhooks). So an
// endpoint gets only session events, each of its own tenants' sessions
// under that tenant's key, and a run's own URL never gets one.
//
// A run that paused (requires_action) or ended sends session.status_idled;
// one that ended with budget_exceeded sends session.budget_reached first,
// in the same delivery attempt. Each event's id is stable across retries
// (whe_<run or session>_<event>), so receivers dedupe on it.
type WebhookDeliverer struct {
	Run interface {
		Deliver(ctx context.Context, tenant, runID, url, event, key string) error
	}
	Store interface {
		GetRun(ctx context.Context, tenant, id string) (store.Run, error)
		GetManagedSessionByConversation(ctx context.Context, tenant, conversationID string) (store.ManagedSession, error)
	}
	// Webhooks are the sessions' webhook endpoints; nil: none (every
	// job is a run's).
	Webhooks *WebhookEndpoints
	Client   *http.Client
}

// Deliver sends one queued webhook job.
func (w *WebhookDeliverer) Deliver(ctx context.Context, tenant, id, url, event, key string) error {
	sessionEvent := strings.HasPrefix(event, "session.") // id is a session's
	if !sessionEvent && url != SessionWebhook && !w.Webhooks.isEndpoint(url) {
		return w.Run.Deliver(ctx, tenant, id, url, event, key) // a run's own webhook
	}
	ep, ok := w.Webhooks.For(tenant)
	if !ok {
		// Its tenant's endpoint was removed since the job was queued (or
		// a /v1/runs client of a tenant without one named another's).
		slog.InfoContext(ctx, "webhook not sent: the tenant has no session webhook endpoint", "tenant", tenant, "id", id, "event", event)
		return nil
	}
	if sessionEvent {
		return w.send(ctx, ep, tenant, id, event, "whe_"+id+"_"+strings.TrimPrefix(event, "session."))
	}
	r, err := w.Store.GetRun(ctx, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted (with its session): nothing to tell
	}
	if err != nil {
		return fmt.Errorf("load run %s: %w", id, err)
	}
	ms, err := w.Store.GetManagedSessionByConversation(ctx, tenant, r.ConversationID)
	if errors.Is(err, store.ErrNotFound) {
		// Its session was deleted since (or a /v1/runs client named an
		// endpoint: an endpoint only ever gets session events).
		return nil
	}
	if err != nil {
		return err
	}
	if strings.HasPrefix(r.Error, "budget_exceeded") {
		if err := w.send(ctx, ep, tenant, ms.ID, WebhookBudgetReached, "whe_"+id+"_budget_reached"); err != nil {
			return err
		}
	}
	suffix := "_idled"
	if event == run.WebhookRunRequiresAction {
		// A run may pause more than once: each pause is its own event.
		suffix += "_" + strings.ReplaceAll(key, ":", "_")
	}
	return w.send(ctx, ep, tenant, ms.ID, WebhookStatusIdled, "whe_"+id+suffix)
}

// WebhookEvent is the body of a session webhook (UnwrapWebhookEvent).
type WebhookEvent struct {
	ID        string           `json:"id"`
	CreatedAt string           `json:"created_at"`
	Type      string           `json:"type"`
	Data      WebhookEventData `json:"data"`
}

// WebhookEventData names the session; fetch it with GET for its state.
type WebhookEventData struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	OrganizationID string `json:"organization_id"`
	WorkspaceID    string `json:"workspace_id"`
}

// send posts one event of session sessionID to ep, signed with ep's key.
func (w *WebhookDeliverer) send(ctx context.Context, ep WebhookEndpoint, tenant, sessionID, event, eventID string) error {
	now := time.Now().UTC()
	body, err := json.Marshal(WebhookEvent{ID: eventID, CreatedAt: now.Format(time.RFC3339Nano), Type: "event",
		Data: WebhookEventData{ID: sessionID, Type: event, OrganizationID: tenant, WorkspaceID: tenant}})
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	sig, err := SignWebhook(ep.Key, eventID, ts, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentd-webhook")
	req.Header.Set("webhook-id", eventID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", sig)
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s of session %s: %w", event, sessionID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s of session %s: receiver answered %s", event, sessionID, resp.Status)
	}
	return nil
}

// SignWebhook is the Standard Webhooks signature of a delivery:
// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>", key being the
// base64 after "whsec_".
func SignWebhook(key, id, ts string, body []byte) (string, error) {
	secret, err := WebhookKeyBytes(key)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// WebhookKeyBytes decodes a signing key "whsec_<base64>".
func WebhookKeyBytes(key string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whsec_"))
	if err != nil || !strings.HasPrefix(key, "whsec_") || len(b) < 16 {
		return nil, errors.New(`want "whsec_" followed by the base64 of at least 16 random bytes`)
	}
	return b, nil
}
