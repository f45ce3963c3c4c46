package managed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Session statuses.
const (
	StatusIdle       = "idle"
	StatusRunning    = "running"
	StatusTerminated = "terminated"
)

// SessionData is what store.ManagedSession.Data holds.
type SessionData struct {
	Title    string            `json:"title,omitempty"`
	Metadata map[string]string `json:"metadata"`
	Budget   *Budget           `json:"budget,omitempty"`
	// Agent: the tools and MCP servers an update gave the session's
	// agent (nil: its version's).
	Agent *SessionAgentConfig `json:"agent,omitempty"`
}

// Budget is a session's spend ceiling (BetaManagedAgentsBudgetLimit).
type Budget struct {
	Type        string `json:"type"`
	MaxListCost Money  `json:"max_list_cost"`
}

// Money is a BetaMonetaryAmount: an amount in minor units (cents) as an
// integer string.
type Money struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
}

// Session is a BetaManagedAgentsSession.
type Session struct {
	ID                 string            `json:"id"`
	Type               string            `json:"type"`
	Agent              SessionAgent      `json:"agent"`
	EnvironmentID      string            `json:"environment_id"`
	Title              *string           `json:"title"`
	Metadata           map[string]string `json:"metadata"`
	Status             string            `json:"status"`
	Stats              SessionStats      `json:"stats"`
	Usage              SessionUsage      `json:"usage"`
	Budget             *Budget           `json:"budget"`
	Resources          []any             `json:"resources"`
	VaultIDs           []string          `json:"vault_ids"`
	OutcomeEvaluations []any             `json:"outcome_evaluations"`
	DeploymentID       *string           `json:"deployment_id"`
	CreatedAt          string            `json:"created_at"`
	UpdatedAt          string            `json:"updated_at"`
	ArchivedAt         *string           `json:"archived_at"`
}

// SessionStats are a session's times.
type SessionStats struct {
	ActiveSeconds   float64 `json:"active_seconds"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// SessionUsage is a session's cumulative use (BetaManagedAgentsSessionUsage):
// the sums of agentd's usage rows (one per model call) of the session's
// runs, and the time its turns ran.
type SessionUsage struct {
	InputTokens          int64         `json:"input_tokens"`
	OutputTokens         int64         `json:"output_tokens"`
	CacheReadInputTokens int64         `json:"cache_read_input_tokens"`
	CacheCreation        CacheCreation `json:"cache_creation"`
	ActiveSeconds        float64       `json:"active_seconds"`
	// ListCost is agentd's cost_usd of those calls (its pricing table) in
	// cents, rounded up.
	ListCost Money `json:"list_cost"`
	// CostUSD is the same cost in USD, exact to the nano-dollar (agentd's
	// cost_usd; not a field of the SDK's type, which keeps it as an extra
	// field).
	CostUSD money.Nanos `json:"cost_usd"`
}

// Cents is n in whole US cents, rounded up (a budget compares with it, so
// it never understates the spend), as a BetaMonetaryAmount.
func Cents(n money.Nanos) Money {
	const perCent = int64(money.Nanos(10_000_000)) // 1e-2 USD in nano-dollars
	c := int64(n) / perCent
	if int64(n)%perCent > 0 {
		c++
	}
	return Money{Amount: strconv.FormatInt(max(c, 0), 10), Currency: "USD"}
}

// usageOf is a session's usage: its runs' usage rows and the time its
// runs executed (from start to finish, or to now while one runs).
func (s *Service) usageOf(ctx context.Context, ms store.ManagedSession, runs []store.Run) (SessionUsage, error) {
	t, err := s.Store.SumConversationUsage(ctx, ms.Tenant, ms.ConversationID)
	if err != nil {
		return SessionUsage{}, err
	}
	u := SessionUsage{InputTokens: t.InputTokens, OutputTokens: t.OutputTokens, CacheReadInputTokens: t.CacheReadInputTokens,
		// The ledger does not split cache writes by lifetime; agentd
		// writes 5-minute entries.
		CacheCreation: CacheCreation{Ephemeral5mInputTokens: t.CacheCreationInputTokens},
		ListCost:      Cents(t.CostUSD), CostUSD: t.CostUSD}
	now := time.Now()
	for _, r := range runs {
		switch {
		case r.StartedAt.IsZero():
		case !r.FinishedAt.IsZero():
			u.ActiveSeconds += max(0, r.FinishedAt.Sub(r.StartedAt).Seconds())
		case r.Status == store.RunRunning:
			u.ActiveSeconds += max(0, now.Sub(r.StartedAt).Seconds())
		}
	}
	return u, nil
}

// CacheCreation splits cache writes by lifetime.
type CacheCreation struct {
	Ephemeral1hInputTokens int64 `json:"ephemeral_1h_input_tokens"`
	Ephemeral5mInputTokens int64 `json:"ephemeral_5m_input_tokens"`
}

// SessionDeleted answers a delete.
type SessionDeleted struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// SessionCreateRequest is the body of POST /v1/sessions.
type SessionCreateRequest struct {
	Agent         json.RawMessage    `json:"agent"`
	EnvironmentID json.RawMessage    `json:"environment_id"`
	Title         json.RawMessage    `json:"title"`
	Metadata      map[string]*string `json:"metadata"`
	Budget        json.RawMessage    `json:"budget"`
	InitialEvents json.RawMessage    `json:"initial_events"`
	Resources     json.RawMessage    `json:"resources"`
	VaultIDs      json.RawMessage    `json:"vault_ids"`
}

// SessionUpdateRequest is the body of POST /v1/sessions/{id}.
type SessionUpdateRequest struct {
	Title    json.RawMessage    `json:"title"`
	Metadata map[string]*string `json:"metadata"`
	Agent    json.RawMessage    `json:"agent"`
	Budget   json.RawMessage    `json:"budget"`
	VaultIDs json.RawMessage    `json:"vault_ids"`
}

var amountRE = regexp.MustCompile(`^[1-9][0-9]{0,15}$`)

func parseBudget(raw json.RawMessage) (*Budget, error) {
	var b struct {
		Type        string `json:"type"`
		MaxListCost struct {
			Amount   string `json:"amount"`
			Currency string `json:"currency"`
		} `json:"max_list_cost"`
	}
	if err := decodeStrict("budget", raw, &b); err != nil {
		return nil, err
	}
	if b.Type != "" && b.Type != "limit" {
		return nil, invalid("budget.type: want limit, got %q", b.Type)
	}
	if !amountRE.MatchString(b.MaxListCost.Amount) {
		return nil, invalid("budget.max_list_cost.amount: want a positive integer number of cents as a string, got %q", b.MaxListCost.Amount)
	}
	if b.MaxListCost.Currency != "USD" {
		return nil, invalid("budget.max_list_cost.currency: want USD, got %q", b.MaxListCost.Currency)
	}
	return &Budget{Type: "limit", MaxListCost: Money{Amount: b.MaxListCost.Amount, Currency: "USD"}}, nil
}

func emptyArray(raw json.RawMessage) bool {
	if !present(raw) || isNull(raw) {
		return true
	}
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) == 0
}

// agentRef reads a session's agent: an id string (the latest version) or
// {"type": "agent", "id", "version"?}.
func agentRef(raw json.RawMessage) (id string, version int64, err error) {
	if !present(raw) || isNull(raw) {
		return "", 0, invalid("agent: required (an agent id, or {\"type\": \"agent\", \"id\": ..., \"version\": ...})")
	}
	if json.Unmarshal(raw, &id) == nil {
		if id == "" {
			return "", 0, invalid("agent: empty id")
		}
		return id, 0, nil
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", 0, invalid("agent: want an id string or an object")
	}
	switch head.Type {
	case "agent", "":
	case "agent_with_overrides":
		return "", 0, unsupported("agent", "agent_with_overrides (per-session agent overrides)")
	default:
		return "", 0, invalid("agent.type: want agent, got %q", head.Type)
	}
	var ref struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Version *int64 `json:"version"`
	}
	if err := decodeStrict("agent", raw, &ref); err != nil {
		return "", 0, err
	}
	if ref.ID == "" {
		return "", 0, invalid("agent.id: required")
	}
	if ref.Version != nil {
		if *ref.Version < 1 {
			return "", 0, invalid("agent.version: want an integer >= 1")
		}
		version = *ref.Version
	}
	return ref.ID, version, nil
}

// notFound names what was not found, keeping store.ErrNotFound in the
// chain.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return &NotFoundError{Message: fmt.Sprintf(format, args...), err: err}
	}
	return err
}

// NotFoundError is a 404 naming what was not found.
type NotFoundError struct {
	Message string
	err     error
}

func (e *NotFoundError) Error() string { return e.Message }
func (e *NotFoundError) Unwrap() error { return e.err }

// CreateSession creates a session (status idle) and its conversation.
func (s *Service) CreateSession(ctx context.Context, tenant string, req SessionCreateRequest) (Session, error) {
	// Every initial event is parsed and checked before anything is
	// stored: a bad one refuses the session.
	initial, err := parseInitialEvents(req.InitialEvents)
	if err != nil {
		return Session{}, err
	}
	if !emptyArray(req.Resources) {
		return Session{}, unsupported("resources", "mounting resources (files, GitHub repositories, memory stores) into a container")
	}
	if !emptyArray(req.VaultIDs) {
		return Session{}, unsupported("vault_ids", "vaults")
	}
	agentID, version, err := agentRef(req.Agent)
	if err != nil {
		return Session{}, err
	}
	a, err := s.Store.GetManagedAgent(ctx, tenant, agentID, version)
	if err != nil {
		if version > 0 {
			return Session{}, notFound(err, "agent %s has no version %d", agentID, version)
		}
		return Session{}, notFound(err, "agent %s not found", agentID)
	}
	if version == 0 && !a.ArchivedAt.IsZero() {
		return Session{}, invalid("agent: %s is archived", agentID)
	}
	if len(initial) > 0 {
		// The agent must be able to run the first turn.
		if _, err := s.runnableVersion("initial_events[0]", a); err != nil {
			return Session{}, err
		}
		if s.Runs == nil || s.RunEvents == nil {
			return Session{}, ErrEventsNotBuilt
		}
	}
	var envID string
	if !present(req.EnvironmentID) || json.Unmarshal(req.EnvironmentID, &envID) != nil || envID == "" {
		return Session{}, invalid("environment_id: required, the id of an environment")
	}
	env, err := s.Store.GetManagedEnvironment(ctx, tenant, envID)
	if err != nil {
		return Session{}, notFound(err, "environment %s not found", envID)
	}
	if !env.ArchivedAt.IsZero() {
		return Session{}, invalid("environment_id: %s is archived", envID)
	}
	var d SessionData
	if present(req.Title) && !isNull(req.Title) && json.Unmarshal(req.Title, &d.Title) != nil {
		return Session{}, invalid("title: want a string")
	}
	if req.Metadata != nil {
		if d.Metadata, err = patchMetadata("metadata", nil, req.Metadata, false); err != nil {
			return Session{}, err
		}
	}
	if d.Metadata == nil {
		d.Metadata = map[string]string{}
	}
	if present(req.Budget) && !isNull(req.Budget) {
		if d.Budget, err = parseBudget(req.Budget); err != nil {
			return Session{}, err
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return Session{}, err
	}
	ms, err := s.Store.CreateManagedSession(ctx, store.ManagedSession{ID: newID("sesn"), Tenant: tenant, AgentID: a.ID,
		AgentVersion: a.Version, EnvironmentID: envID, ConversationID: newID("conv"), Status: StatusIdle, Data: b})
	if err != nil {
		return Session{}, err
	}
	if len(initial) > 0 {
		// Applied as POST /v1/sessions/{id}/events would apply them: the
		// first user.message starts a turn, each later one is queued
		// behind it. A refusal now (the store failed) deletes the session
		// again.
		if _, err := s.apply(ctx, ms, a, "", "initial_events", initial, store.Run{}); err != nil {
			if derr := s.Store.DeleteManagedSession(context.WithoutCancel(ctx), tenant, ms.ID); derr != nil {
				slog.WarnContext(ctx, "delete refused session", "session_id", ms.ID, "err", derr)
			}
			return Session{}, err
		}
		return s.renderSession(ctx, ms, a)
	}
	return s.renderSessionRuns(ctx, ms, a, nil, true) // no turn yet
}

// renderSession is the wire form of ms; a is its agent version when the
// caller has it (zero: read it).
func (s *Service) renderSession(ctx context.Context, ms store.ManagedSession, a store.ManagedAgent) (Session, error) {
	return s.renderSessionRuns(ctx, ms, a, nil, false)
}

// renderSessionRuns is renderSession with the session's runs when known
// (a session just created has none), read from the store otherwise.
func (s *Service) renderSessionRuns(ctx context.Context, ms store.ManagedSession, a store.ManagedAgent, runs []store.Run, known bool) (Session, error) {
	if a.ID == "" {
		var err error
		if a, err = s.Store.GetManagedAgent(ctx, ms.Tenant, ms.AgentID, ms.AgentVersion); err != nil {
			return Session{}, fmt.Errorf("session %s: its agent %s v%d: %w", ms.ID, ms.AgentID, ms.AgentVersion, err)
		}
	}
	a, c, err := sessionAgentOf(ms, a) // with the session's tools
	if err != nil {
		return Session{}, err
	}
	var d SessionData
	if err := json.Unmarshal(ms.Data, &d); err != nil {
		return Session{}, fmt.Errorf("decode session %s: %w", ms.ID, err)
	}
	if d.Metadata == nil {
		d.Metadata = map[string]string{}
	}
	if !known {
		if runs, err = s.Store.ListConversationRuns(ctx, ms.Tenant, ms.ConversationID); err != nil {
			return Session{}, err
		}
	}
	if ms.Status != StatusTerminated {
		// A session runs while its latest turn is queued or running; a
		// turn waiting for the client (requires_action) leaves it idle.
		if n := len(runs); n > 0 && (runs[n-1].Status == store.RunQueued || runs[n-1].Status == store.RunRunning) {
			ms.Status = StatusRunning
		}
	}
	usage := SessionUsage{ListCost: Cents(0)}
	if len(runs) > 0 { // no turn, no usage rows
		if usage, err = s.usageOf(ctx, ms, runs); err != nil {
			return Session{}, err
		}
	}
	end := time.Now()
	if !ms.ArchivedAt.IsZero() {
		end = ms.ArchivedAt
	}
	return Session{
		ID: ms.ID, Type: "session", Agent: renderSessionAgent(a, c), EnvironmentID: ms.EnvironmentID,
		Title: optString(d.Title), Metadata: d.Metadata, Status: ms.Status,
		Stats: SessionStats{ActiveSeconds: usage.ActiveSeconds, DurationSeconds: max(0, end.Sub(ms.CreatedAt).Seconds())},
		Usage: usage, Budget: d.Budget, Resources: []any{}, VaultIDs: []string{}, OutcomeEvaluations: []any{},
		CreatedAt: mustTimestamp(ms.CreatedAt), UpdatedAt: mustTimestamp(ms.UpdatedAt), ArchivedAt: timestamp(ms.ArchivedAt),
	}, nil
}

// GetSession returns a session.
func (s *Service) GetSession(ctx context.Context, tenant, id string) (Session, error) {
	ms, err := s.Store.GetManagedSession(ctx, tenant, id)
	if err != nil {
		return Session{}, err
	}
	return s.renderSession(ctx, ms, store.ManagedAgent{})
}

// UpdateSession changes a session's title, metadata (a patch), budget or
// its agent's tools and MCP servers (session_update.go); an update that
// changes something appends a session.updated event.
func (s *Service) UpdateSession(ctx context.Context, tenant, id string, req SessionUpdateRequest) (Session, error) {
	if !emptyArray(req.VaultIDs) {
		return Session{}, unsupported("vault_ids", "vaults")
	}
	ms, err := s.Store.GetManagedSession(ctx, tenant, id)
	if err != nil {
		return Session{}, err
	}
	if ms.Status == StatusTerminated {
		return Session{}, invalid("session %s is terminated: it cannot be updated", id)
	}
	var d SessionData
	if err := json.Unmarshal(ms.Data, &d); err != nil {
		return Session{}, fmt.Errorf("decode session %s: %w", id, err)
	}
	before := d
	if present(req.Title) {
		d.Title = ""
		if !isNull(req.Title) && json.Unmarshal(req.Title, &d.Title) != nil {
			return Session{}, invalid("title: want a string or null")
		}
	}
	if req.Metadata != nil {
		if d.Metadata, err = patchMetadata("metadata", d.Metadata, req.Metadata, false); err != nil {
			return Session{}, err
		}
	}
	if present(req.Budget) {
		switch {
		case isNull(req.Budget):
			d.Budget = nil
		case d.Budget == nil:
			return Session{}, invalid("budget: a budget cannot be added to a session created without one (budget_create_only)")
		default:
			if d.Budget, err = parseBudget(req.Budget); err != nil {
				return Session{}, err
			}
		}
	}
	var a store.ManagedAgent
	if present(req.Agent) && !isNull(req.Agent) {
		var sa *SessionAgentConfig
		if sa, a, err = s.updateSessionAgent(ctx, ms, d, req.Agent); err != nil {
			return Session{}, err
		}
		if sa != nil {
			d.Agent = sa
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return Session{}, err
	}
	ms.Data = b
	ms.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
	ev, changed, err := sessionUpdatedEvent(ms, a, before, d, ms.UpdatedAt)
	if err != nil {
		return Session{}, err
	}
	if !changed {
		ms, err = s.Store.UpdateManagedSession(ctx, ms)
	} else if ms, _, err = s.Store.UpdateManagedSessionEvent(ctx, ms, ev); err == nil {
		s.Wake(ms.ConversationID) // its streams send the session.updated
	}
	if err != nil {
		return Session{}, err
	}
	return s.renderSession(ctx, ms, store.ManagedAgent{})
}

// ListSessions lists the tenant's sessions, newest first unless order=asc.
func (s *Service) ListSessions(ctx context.Context, tenant string, q url.Values) (BidirectionalPage[Session], error) {
	var out BidirectionalPage[Session]
	for _, k := range []string{"deployment_id", "memory_store_id"} {
		if q.Has(k) {
			return out, unsupported(k, "filtering by "+k)
		}
	}
	p, err := parseList(tenant, q, "agent_id", "agent_version", "order", "statuses[]", "statuses",
		"created_at[gt]", "created_at[gte]", "created_at[lt]", "created_at[lte]")
	if err != nil {
		return out, err
	}
	lp := store.ListManagedSessionsParams{ManagedPage: p, AgentID: q.Get("agent_id")}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		lp.Ascending = true
	default:
		return out, invalid("order: want asc or desc, got %q", q.Get("order"))
	}
	if v := q.Get("agent_version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || lp.AgentID == "" {
			return out, invalid("agent_version: want an integer >= 1, with agent_id")
		}
		lp.AgentVersion = n
	}
	for _, st := range append(q["statuses[]"], q["statuses"]...) {
		switch st {
		case StatusIdle, StatusRunning, StatusTerminated, "rescheduling":
			lp.Statuses = append(lp.Statuses, st)
		default:
			return out, invalid("statuses: unknown status %q", st)
		}
	}
	for _, b := range []struct {
		key       string
		dst       *time.Time
		inclusive *bool
		incl      bool
	}{
		{"created_at[gt]", &lp.CreatedAfter, &lp.CreatedAfterInclusive, false},
		{"created_at[gte]", &lp.CreatedAfter, &lp.CreatedAfterInclusive, true},
		{"created_at[lt]", &lp.CreatedBefore, &lp.CreatedBeforeInclusive, false},
		{"created_at[lte]", &lp.CreatedBefore, &lp.CreatedBeforeInclusive, true},
	} {
		v := q.Get(b.key)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return out, invalid("%s: want an RFC 3339 time, got %q", b.key, v)
		}
		if !b.dst.IsZero() {
			return out, invalid("%s: only one lower and one upper bound", b.key)
		}
		*b.dst, *b.inclusive = t, b.incl
	}
	limit := lp.Limit
	lp.Limit++
	rows, err := s.Store.ListManagedSessions(ctx, lp)
	if err != nil {
		return out, err
	}
	out.Data = []Session{}
	agents := map[string]store.ManagedAgent{}
	for i, ms := range rows {
		if i == limit {
			out.NextPage = encodeCursor(rows[i-1].CreatedAt, rows[i-1].ID)
			break
		}
		key := ms.AgentID + "@" + strconv.FormatInt(ms.AgentVersion, 10)
		a, ok := agents[key]
		if !ok {
			if a, err = s.Store.GetManagedAgent(ctx, tenant, ms.AgentID, ms.AgentVersion); err != nil {
				return out, fmt.Errorf("session %s: its agent: %w", ms.ID, err)
			}
			agents[key] = a
		}
		w, err := s.renderSession(ctx, ms, a)
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, w)
	}
	return out, nil
}

// ArchiveSession archives a session: it is terminated and takes no more
// events; its history stays readable.
func (s *Service) ArchiveSession(ctx context.Context, tenant, id string) (Session, error) {
	before, err := s.Store.GetManagedSession(ctx, tenant, id)
	if err != nil {
		return Session{}, err
	}
	ms, err := s.Store.ArchiveManagedSession(ctx, tenant, id, StatusTerminated, time.Time{})
	if err != nil {
		return Session{}, err
	}
	if _, ok := s.WebhookEndpoints.For(tenant); ok && before.ArchivedAt.IsZero() && s.Webhooks != nil {
		// Queued (and retried) like a run's webhook, to the tenant's
		// endpoint at delivery; a failure to queue it does not undo the
		// archive.
		if err := s.Webhooks.EnqueueWebhook(context.WithoutCancel(ctx), tenant, id, SessionWebhook, WebhookStatusTerminated); err != nil {
			slog.WarnContext(ctx, "queue session webhook", "session_id", id, "err", err)
		}
	}
	return s.renderSession(ctx, ms, store.ManagedAgent{})
}

// DeleteSession deletes a session with its conversation.
func (s *Service) DeleteSession(ctx context.Context, tenant, id string) (SessionDeleted, error) {
	if err := s.Store.DeleteManagedSession(ctx, tenant, id); err != nil {
		return SessionDeleted{}, err
	}
	return SessionDeleted{ID: id, Type: "session_deleted"}, nil
}
