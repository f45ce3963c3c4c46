package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// maxListLimit is the largest page of GET /v1/runs (the stores' cap).
const maxListLimit = 1000

// RunRequest is the body of POST /v1/runs.
type RunRequest struct {
	Agent          string `json:"agent"`
	ConversationID string `json:"conversation_id,omitempty"`
	Message        string `json:"message"`
	// Webhook, when set, receives a POST of the finished run.
	Webhook string `json:"webhook,omitempty"`
	// MaxCostUSD caps the run's cost in USD; it can lower the agent's
	// max_cost_usd, never raise it. 0: none.
	MaxCostUSD float64 `json:"max_cost_usd,omitempty"`
	// ConcurrencyPolicy, when set, overrides the agent's
	// concurrency_policy for this message (see ChatRequest).
	ConcurrencyPolicy string `json:"concurrency_policy,omitempty"`
}

// DecodeRunRequest reads and checks a run request body (as
// DecodeChatRequest, plus the webhook URL).
func DecodeRunRequest(body io.Reader) (RunRequest, error) {
	var req RunRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, err
	}
	switch {
	case strings.TrimSpace(req.Agent) == "":
		return req, badRequest("agent: required")
	case strings.TrimSpace(req.Message) == "":
		return req, badRequest("message: required and must not be blank")
	case !utf8.ValidString(req.Message):
		return req, badRequest("message: must be valid UTF-8")
	case len(req.ConversationID) > 128:
		return req, badRequest("conversation_id: too long")
	case req.MaxCostUSD < 0:
		return req, badRequest("max_cost_usd: must be >= 0 (0: no cap)")
	}
	if _, err := run.ParsePolicy(req.ConcurrencyPolicy); err != nil {
		return req, badRequest(err.Error())
	}
	if req.Webhook != "" {
		u, err := url.Parse(req.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(req.Webhook) > 2048 {
			return req, badRequest("webhook: must be an absolute http(s) URL")
		}
	}
	return req, nil
}

func (s *Server) handleSubmitRun(w http.ResponseWriter, r *http.Request) {
	if !s.checkJSON(w, r) {
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	req, err := DecodeRunRequest(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	release, err := admit(r.Context(), s.submits)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	rn, created, err := s.runs.Submit(r.Context(), run.SubmitParams{
		Tenant: s.tenant(r), Agent: req.Agent, ConversationID: req.ConversationID,
		Message: req.Message, IdempotencyKey: key, Webhook: req.Webhook, MaxCostUSD: req.MaxCostUSD,
		ConcurrencyPolicy: run.Policy(req.ConcurrencyPolicy), // checked by DecodeRunRequest
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/runs/"+rn.ID)
	setConversationID(w, rn.ConversationID)
	status := http.StatusAccepted
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	writeJSON(w, status, run.NewRunBody(rn))
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request) {
	rn, err := s.runs.Store.GetRun(r.Context(), s.tenant(r), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setConversationID(w, rn.ConversationID)
	writeJSON(w, http.StatusOK, s.runBody(r, rn))
}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := store.ListRunsParams{Tenant: s.tenant(r), Agent: q.Get("agent"), Cursor: q.Get("cursor"), Limit: 50}
	if st := q.Get("status"); st != "" {
		switch rs := store.RunStatus(st); rs {
		case store.RunQueued, store.RunRunning, store.RunRequiresAction, store.RunSucceeded, store.RunFailed, store.RunCanceled,
			store.RunInterrupted:
			p.Status = rs
		default:
			s.writeError(w, r, badRequest("status: must be one of queued, running, requires_action, succeeded, failed, canceled, interrupted"))
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			s.writeError(w, r, badRequest("limit: must be an integer from 1 to 1000"))
			return
		}
		p.Limit = n
	}
	limit := p.Limit
	if limit < maxListLimit {
		p.Limit++ // one more tells whether there is a next page
	}
	runs, err := s.runs.Store.ListRuns(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// At the store's cap there is no room for the extra run: a full page
	// then always offers a cursor (the next page may be empty).
	more := len(runs) > limit || (limit == maxListLimit && len(runs) == limit)
	if len(runs) > limit {
		runs = runs[:limit]
	}
	body := struct {
		Runs       []run.RunBody `json:"runs"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}{Runs: make([]run.RunBody, len(runs))}
	for i, rn := range runs {
		body.Runs[i] = run.NewRunBody(rn)
	}
	if more {
		body.NextCursor = runs[len(runs)-1].ID
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleCancelRun(w http.ResponseWriter, r *http.Request) {
	rn, err := s.runs.Cancel(r.Context(), s.tenant(r), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusAccepted // a running run stops at its next renewal
	if rn.Status.Terminal() {
		status = http.StatusOK
	}
	writeJSON(w, status, run.NewRunBody(rn))
}

func (s *Server) handleInterruptRun(w http.ResponseWriter, r *http.Request) {
	rn, err := s.runs.Interrupt(r.Context(), s.tenant(r), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusAccepted // a running run stops at its next renewal
	if rn.Status.Terminal() {
		status = http.StatusOK
	}
	writeJSON(w, status, s.runBody(r, rn))
}

// handleRunEvents streams a run's events: the stored ones after
// Last-Event-ID (or ?after=), then live ones, ending after done or error.
func (s *Server) handleRunEvents(w http.ResponseWriter, r *http.Request) {
	s.StreamRunEvents(w, r, s.tenant(r), r.PathValue("id"))
}

// StreamRunEvents is GET /v1/runs/{id}/events for the run id of tenant
// (resolved by the caller): the operator console follows runs through it.
func (s *Server) StreamRunEvents(w http.ResponseWriter, r *http.Request, tenant, id string) {
	after := int64(0)
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, badRequest("Last-Event-ID / after: must be a non-negative integer (an event id)"))
			return
		}
		after = n
		break
	}
	if _, err := s.runs.Store.GetRun(r.Context(), tenant, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	release, err := s.admitFollower(r.Context(), tenant)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	sw, done := s.startSSE(w, r)
	defer done()
	// A follower only watches: when the server shuts down it is cut at
	// once (it resumes elsewhere with Last-Event-ID) instead of holding
	// the drain for its whole timeout.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.followers, cancel)
	defer stop()
	err = events.Follow(ctx, s.hub, s.runs.Store, id, after, sw.send, events.FollowOptions{
		Finished: func(ctx context.Context) (bool, error) {
			rn, err := s.runs.Store.GetRun(ctx, tenant, id)
			return err == nil && rn.Status.Terminal(), err
		},
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, errClientGone) {
		s.log.WarnContext(r.Context(), "event stream ended", "run_id", id, "err", err)
	}
}

// admitFollower takes the slots of a client that follows a stream of
// events (a run's, a session's): its tenant's stream quota, then one of
// the instance's stream slots. release gives both back.
func (s *Server) admitFollower(ctx context.Context, tenant string) (release func(), err error) {
	releaseTenant, err := s.tenants.Acquire(tenant, "stream")
	if err != nil {
		return nil, err
	}
	releaseSlot, err := admit(ctx, s.streams)
	if err != nil {
		releaseTenant()
		return nil, err
	}
	return func() { releaseSlot(); releaseTenant() }, nil
}
