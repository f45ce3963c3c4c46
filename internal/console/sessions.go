package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// Managed Agents sessions (docs/managed-agents.md): a session's turns are
// runs on its conversation, so its page shows the session's own events
// (as GET /v1/sessions/{id}/events lists them) and the calls its paused
// turn waits for, decided through the same run.Runs.Decide as a
// user.tool_confirmation and the run page's buttons.

// Sessions reads sessions as the Managed Agents API does (managed.Service).
type Sessions interface {
	GetSession(ctx context.Context, tenant, id string) (managed.Session, error)
	ListEvents(ctx context.Context, tenant, id string, q url.Values) (managed.Page[json.RawMessage], error)
}

// sessionsPage is the page size of /console/sessions.
const sessionsPage = 50

// sessionStatuses are the list's status filter: the stored status (a
// session that is not terminated is idle in the store; running is its
// latest turn's state, shown per row).
var sessionStatuses = []string{managed.StatusIdle, managed.StatusTerminated}

var (
	validAgentID  = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	sessionCursor = regexp.MustCompile(`^([0-9]{1,20})\.([A-Za-z0-9_-]{1,128})$`)
)

type sessionRow struct {
	store.ConsoleSession
	Title string
	// State is what the session does now: running (a turn queued or
	// running), waiting (a turn paused for a person or the client), idle
	// or terminated.
	State string
	Cost  money.Nanos
}

type sessionsData struct {
	Status, Agent, Tenant string
	Statuses              []string
	Sessions              []sessionRow
	Cursor, NextQuery     string
}

func (c *Console) handleSessions(w http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	d := sessionsData{Status: q.Get("status"), Agent: strings.TrimSpace(q.Get("agent")), Tenant: strings.TrimSpace(q.Get("tenant")),
		Statuses: sessionStatuses, Cursor: q.Get("cursor")}
	p := store.ConsoleSessionsParams{Status: d.Status, AgentID: d.Agent}
	p.Page.Limit = sessionsPage + 1
	switch {
	case d.Status != "" && d.Status != managed.StatusIdle && d.Status != managed.StatusTerminated:
		c.renderError(w, r, &v, http.StatusBadRequest, "status: idle or terminated.")
		return
	case d.Agent != "" && !validAgentID.MatchString(d.Agent):
		c.renderError(w, r, &v, http.StatusBadRequest, "agent: an agent id.")
		return
	}
	if d.Cursor != "" {
		m := sessionCursor.FindStringSubmatch(d.Cursor)
		if m == nil {
			c.renderError(w, r, &v, http.StatusBadRequest, "cursor: not a cursor this page made.")
			return
		}
		us, _ := strconv.ParseInt(m[1], 10, 64)
		p.Page.AfterCreatedAt, p.Page.AfterID = time.UnixMicro(us).UTC(), m[2]
	}
	if t := v.tenantFor(d.Tenant); t != "" {
		p.Tenant = t
	} else {
		p.AllTenants = true
	}
	if !v.Admin {
		d.Tenant = ""
	}
	rows, err := c.cfg.Store.ListConsoleSessions(r.Context(), p)
	if err != nil {
		c.storeError(w, r, &v, "sessions", err)
		return
	}
	if len(rows) > sessionsPage {
		rows = rows[:sessionsPage]
		last := rows[len(rows)-1]
		nq := r.URL.Query()
		nq.Set("cursor", strconv.FormatInt(last.CreatedAt.UnixMicro(), 10)+"."+last.ID)
		d.NextQuery = nq.Encode()
	}
	for _, s := range rows {
		var sd managed.SessionData
		_ = json.Unmarshal(s.Data, &sd)
		d.Sessions = append(d.Sessions, sessionRow{ConsoleSession: s, Title: sd.Title, State: sessionState(s.Status, s.LastRunStatus),
			Cost: money.Nanos(s.CostNanos)})
	}
	c.render(w, r, &v, http.StatusOK, "sessions", "Sessions", d)
}

// sessionState is what a session does now, from its stored status and its
// latest turn's.
func sessionState(status string, last store.RunStatus) string {
	switch {
	case status == managed.StatusTerminated:
		return managed.StatusTerminated
	case last == store.RunQueued || last == store.RunRunning:
		return managed.StatusRunning
	case last == store.RunRequiresAction:
		return "waiting"
	}
	return managed.StatusIdle
}

// getSession returns the session the viewer may see: any for an admin,
// else one of its tenant's.
func (c *Console) getSession(r *http.Request, v viewer, id string) (store.ManagedSession, error) {
	if v.Admin {
		return c.cfg.Store.FindManagedSession(r.Context(), id)
	}
	return c.cfg.Store.GetManagedSession(r.Context(), v.Tenant, id)
}

type sessionEventRow struct {
	ID, Type string
	Time     time.Time
	Summary  string
}

type sessionData struct {
	Session  managed.Session
	Tenant   string
	State    string
	Title    string
	Turns    []store.Run
	LastRun  string
	Input    int64
	Output   int64
	Cost     money.Nanos
	Events   []sessionEventRow
	More     bool
	Live     bool
	Pending  []pendingCall
	EventsOK bool
	// CanDecide shows the allow and deny buttons.
	CanDecide bool
	EventsURL string
	// Created and Archived (zero: not archived) are the session's times.
	Created, Archived time.Time
}

// maxSessionEvents caps the events one session page shows.
const maxSessionEvents = 1000

func (c *Console) handleSession(w http.ResponseWriter, r *http.Request, v viewer) {
	ms, err := c.getSession(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "session", err)
		return
	}
	if c.cfg.Sessions == nil {
		c.renderError(w, r, &v, http.StatusNotFound, "Managed Agents sessions are not served by this process.")
		return
	}
	s, err := c.cfg.Sessions.GetSession(r.Context(), ms.Tenant, ms.ID)
	if err != nil {
		c.storeError(w, r, &v, "session", err)
		return
	}
	runs, err := c.cfg.Store.ListConversationRuns(r.Context(), ms.Tenant, ms.ConversationID)
	if err != nil {
		c.storeError(w, r, &v, "session turns", err)
		return
	}
	d := sessionData{Session: s, Tenant: ms.Tenant, Turns: runs, EventsURL: "/console/sessions/" + ms.ID + "/events",
		Created: ms.CreatedAt, Archived: ms.ArchivedAt}
	if s.Title != nil {
		d.Title = *s.Title
	}
	var last store.RunStatus
	for _, rn := range runs {
		d.Input += rn.InputTokens
		d.Output += rn.OutputTokens
		d.Cost += rn.CostUSD
	}
	if n := len(runs); n > 0 {
		last, d.LastRun = runs[n-1].Status, runs[n-1].ID
	}
	d.State = sessionState(ms.Status, last)
	d.Live = d.State == managed.StatusRunning
	if last == store.RunRequiresAction {
		approvals, err := c.cfg.Store.ListApprovals(r.Context(), d.LastRun)
		if err != nil {
			c.storeError(w, r, &v, "approvals", err)
			return
		}
		for _, a := range approvals {
			if a.Decision == store.DecisionPending {
				d.Pending = append(d.Pending, pendingCall{ToolUseID: a.ToolUseID, Name: a.Name, Input: c.scrubJSON(a.Input),
					Kind: a.Kind, ExpiresAt: a.ExpiresAt})
			}
		}
		d.CanDecide = c.cfg.Approvals != nil && v.Approve
	}
	page, err := c.cfg.Sessions.ListEvents(r.Context(), ms.Tenant, ms.ID, url.Values{"limit": {strconv.Itoa(maxSessionEvents)}})
	switch {
	case errors.Is(err, managed.ErrEventsNotBuilt):
	case err != nil:
		c.storeError(w, r, &v, "session events", err)
		return
	default:
		d.EventsOK, d.More = true, page.NextPage != nil
		for _, raw := range page.Data {
			d.Events = append(d.Events, c.sessionEvent(raw))
		}
	}
	c.render(w, r, &v, http.StatusOK, "session", "Session "+ms.ID, d)
}

// sessionEvent digests one Managed Agents event for the timeline: text of
// messages, tool names (inputs and results redacted as logs are), usage,
// errors, why the session went idle.
func (c *Console) sessionEvent(raw json.RawMessage) sessionEventRow {
	var e struct {
		ID          string `json:"id"`
		Type        string `json:"type"`
		ProcessedAt string `json:"processed_at"`
		Content     []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		Name       string          `json:"name"`
		Input      json.RawMessage `json:"input"`
		IsError    bool            `json:"is_error"`
		ToolUseID  string          `json:"tool_use_id"`
		Result     string          `json:"result"`
		StopReason struct {
			Type string `json:"type"`
		} `json:"stop_reason"`
		ModelUsage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"model_usage"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	row := sessionEventRow{ID: e.ID, Type: e.Type}
	if t, err := time.Parse(time.RFC3339Nano, e.ProcessedAt); err == nil {
		row.Time = t
	}
	text := func() string {
		var b strings.Builder
		for _, bl := range e.Content {
			if bl.Type == "text" {
				b.WriteString(bl.Text)
			}
		}
		return b.String()
	}
	switch e.Type {
	case "user.message", "agent.message":
		row.Summary = clip(c.redact(text()), 400)
	case "agent.tool_use", "agent.custom_tool_use", "agent.mcp_tool_use":
		row.Summary = e.Name + " " + clip(c.scrubJSON(e.Input), 200)
	case "agent.tool_result", "agent.mcp_tool_result", "user.custom_tool_result":
		row.Summary = clip(c.redact(text()), 200)
		if e.IsError {
			row.Summary = "error: " + row.Summary
		}
	case "user.tool_confirmation":
		row.Summary = e.Result + " " + e.ToolUseID
	case "session.status_idle":
		row.Summary = "stop_reason " + e.StopReason.Type
	case "span.model_request_end":
		row.Summary = groupDigits(e.ModelUsage.InputTokens) + " in, " + groupDigits(e.ModelUsage.OutputTokens) + " out"
	case "session.error":
		row.Summary = e.Error.Type + ": " + c.redact(e.Error.Message)
	}
	return row
}

// handleSessionEvents follows a session's events live: the same stream as
// GET /v1/sessions/{id}/events/stream, for the session's own tenant.
func (c *Console) handleSessionEvents(w http.ResponseWriter, r *http.Request, v viewer) {
	ms, err := c.getSession(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "session", err)
		return
	}
	if c.cfg.SessionEvents == nil {
		c.renderError(w, r, &v, http.StatusNotFound, "Live session events are not offered here.")
		return
	}
	c.cfg.SessionEvents(w, r, ms.Tenant, ms.ID)
}

// handleSessionDecide allows or denies a call the session's paused turn
// waits for: the decision of a user.tool_confirmation (allow → approve,
// deny → deny with the reason the model reads), through the same
// run.Runs.Decide.
func (c *Console) handleSessionDecide(w http.ResponseWriter, r *http.Request, v viewer) {
	ms, err := c.getSession(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "session", err)
		return
	}
	if c.cfg.Approvals == nil || !v.Approve {
		c.renderError(w, r, &v, http.StatusForbidden, "This key cannot decide on tool calls (it needs the approve or admin scope).")
		return
	}
	runs, err := c.cfg.Store.ListConversationRuns(r.Context(), ms.Tenant, ms.ConversationID)
	if err != nil {
		c.storeError(w, r, &v, "session turns", err)
		return
	}
	if len(runs) == 0 || runs[len(runs)-1].Status != store.RunRequiresAction {
		c.renderError(w, r, &v, http.StatusConflict, "No tool call of this session waits for a confirmation.")
		return
	}
	c.decide(w, r, v, runs[len(runs)-1], "/console/sessions/"+ms.ID)
}
