package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Idempotency keys, for POST /v1/runs and POST /v1/chat alike: a key maps
// to the run its first request created (the run row's idempotency_key,
// unique per tenant) for the idempotency TTL. The same request again gets
// that run; another request under the key is refused.

// IdempotencyMismatchError: an Idempotency-Key was reused with a request
// that differs from the one that created its run. Payment APIs answer
// this as a client error rather than replaying the other request's run.
type IdempotencyMismatchError struct {
	Key   string
	RunID string
}

func (e *IdempotencyMismatchError) Error() string {
	return fmt.Sprintf("Idempotency-Key %q was already used for run %s with a different request; "+
		"send the same request to get that run, or use a new key", e.Key, e.RunID)
}

// IdempotencyInFlightError: the run of an Idempotency-Key is still
// executing, so there is no answer to replay yet.
type IdempotencyInFlightError struct {
	Key   string
	RunID string
}

func (e *IdempotencyInFlightError) Error() string {
	return fmt.Sprintf("a request with Idempotency-Key %q is still in progress (run %s); retry when it has finished", e.Key, e.RunID)
}

// keyedRequest is what an idempotency key is bound to.
type keyedRequest struct {
	key, agent, conversationID, message, webhook string
	maxCostUSD                                   float64
	agentVersion                                 int
	system                                       []string
	systemMessage                                string
}

func requestOf(p SubmitParams) keyedRequest {
	return keyedRequest{key: p.IdempotencyKey, agent: p.Agent, conversationID: p.ConversationID,
		message: p.Message, webhook: p.Webhook, maxCostUSD: p.MaxCostUSD, agentVersion: p.AgentVersion,
		system: p.System, systemMessage: p.SystemMessage}
}

// sameRequest checks that p is the request that created existing: the
// stored run is the fingerprint of its request (agent, conversation,
// message after the secret check, webhook, cost cap), so no hash needs to
// be kept beside it.
func sameRequest(existing store.Run, p keyedRequest) error {
	var in runInput
	_ = json.Unmarshal(existing.Input, &in) // stored by Submit or Prepare
	conv := existing.ConversationID
	if in.NewConversation {
		conv = "" // the request named none
	}
	if existing.Agent != p.agent || conv != p.conversationID || in.Message != p.message ||
		in.Webhook != p.webhook || in.MaxCostUSD != p.maxCostUSD || in.AgentVersion != p.agentVersion ||
		!slices.Equal(in.System, p.system) || in.SystemMessage != p.systemMessage {
		return &IdempotencyMismatchError{Key: p.key, RunID: existing.ID}
	}
	return nil
}

// keyStore is what idempotency keys need of the store.
type keyStore interface {
	GetRunByIdempotencyKey(ctx context.Context, tenant, key string) (store.Run, error)
	ExpireIdempotencyKeys(ctx context.Context, createdBefore time.Time) (int, error)
}

// replayStore is what replaying a chat needs of the store.
type replayStore interface {
	keyStore
	ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error)
}

// Replay is the finished run of a chat's Idempotency-Key and its stored
// events, the last of which is done or error: the answer to send again.
type Replay struct {
	Run    store.Run
	Events []store.Event
}

// Last returns the replay's last event (done or error).
func (r Replay) Last() (store.Event, bool) {
	if len(r.Events) == 0 {
		return store.Event{}, false
	}
	return r.Events[len(r.Events)-1], true
}

// lookupKey returns the run of key, if the key is known and younger than
// ttl; an expired key that was not swept yet is freed.
func lookupKey(ctx context.Context, st keyStore, tenant, key string, ttl time.Duration) (store.Run, bool, error) {
	existing, err := st.GetRunByIdempotencyKey(ctx, tenant, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Run{}, false, nil
	case err != nil:
		return store.Run{}, false, fmt.Errorf("look up idempotency key: %w", err)
	case time.Since(existing.CreatedAt) > ttl:
		// Expired but not yet swept: free the key for this request.
		if _, err := st.ExpireIdempotencyKeys(ctx, time.Now().Add(-ttl)); err != nil {
			return store.Run{}, false, fmt.Errorf("expire idempotency keys: %w", err)
		}
		return store.Run{}, false, nil
	}
	return existing, true, nil
}

// chatRequest is what a chat's Idempotency-Key is bound to.
func chatRequest(p ChatParams) keyedRequest {
	return keyedRequest{key: p.IdempotencyKey, agent: p.Agent, conversationID: p.ConversationID,
		message: p.Message, maxCostUSD: p.MaxCostUSD}
}

// Replayed looks up the run of a chat's Idempotency-Key (p.IdempotencyKey
// must be set): ok is false when the key is new (Prepare then binds it to
// the new run). A known key with another request is an
// *IdempotencyMismatchError; a run still executing an
// *IdempotencyInFlightError. Otherwise the finished run and its stored
// events are returned, to be sent again.
func (s *Service) Replayed(ctx context.Context, p ChatParams) (Replay, bool, error) {
	msg, err := s.Secrets.Check(p.Message)
	if err != nil {
		return Replay{}, false, err
	}
	p.Message = msg
	existing, ok, err := lookupKey(ctx, s.Store, p.Tenant, p.IdempotencyKey, s.idempotencyTTL())
	if err != nil || !ok {
		return Replay{}, false, err
	}
	if err := sameRequest(existing, chatRequest(p)); err != nil {
		return Replay{}, false, err
	}
	if !existing.Status.Terminal() {
		return Replay{}, false, &IdempotencyInFlightError{Key: p.IdempotencyKey, RunID: existing.ID}
	}
	rp := Replay{Run: existing}
	for after := int64(0); ; {
		page, err := s.Store.ListEvents(ctx, existing.ID, after, 1000)
		if err != nil {
			return Replay{}, false, fmt.Errorf("replay run %s: %w", existing.ID, err)
		}
		rp.Events = append(rp.Events, page...)
		if len(page) < 1000 {
			return rp, true, nil
		}
		after = page[len(page)-1].Seq
	}
}

// chatKeyConflict is the answer to a chat whose run could not be created
// (err): when err is the store's conflict on p's Idempotency-Key, another
// request with the key won the race, so the answer is that request's
// mismatch or in-flight error; otherwise err, wrapped.
func (s *Service) chatKeyConflict(ctx context.Context, p ChatParams, err error) error {
	if !errors.Is(err, store.ErrConflict) || p.IdempotencyKey == "" {
		return fmt.Errorf("create run: %w", err)
	}
	existing, ok, kerr := lookupKey(ctx, s.Store, p.Tenant, p.IdempotencyKey, s.idempotencyTTL())
	if kerr != nil || !ok {
		return fmt.Errorf("create run: %w", err)
	}
	if merr := sameRequest(existing, chatRequest(p)); merr != nil {
		return merr
	}
	return &IdempotencyInFlightError{Key: p.IdempotencyKey, RunID: existing.ID}
}

func (s *Service) idempotencyTTL() time.Duration {
	if s.IdempotencyTTL > 0 {
		return s.IdempotencyTTL
	}
	return DefaultIdempotencyTTL
}
