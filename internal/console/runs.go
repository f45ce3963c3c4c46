package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

// runsPage is the page size of /console/runs.
const runsPage = 50

// runStatuses are the status filter's choices (a status added to the
// store goes here too; the filter itself takes any well-formed status).
var runStatuses = []store.RunStatus{store.RunQueued, store.RunRunning, store.RunRequiresAction, store.RunSucceeded, store.RunFailed,
	store.RunCanceled, store.RunInterrupted}

// validStatus is the shape of a run status.
var validStatus = regexp.MustCompile(`^[a-z_]{1,32}$`)

type runsData struct {
	Status, Agent, Tenant string
	Statuses              []store.RunStatus
	Runs                  []store.Run
	Cursor, NextCursor    string
	// NextQuery is the query string of the next page.
	NextQuery string
}

func (c *Console) handleRuns(w http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	d := runsData{Status: q.Get("status"), Agent: strings.TrimSpace(q.Get("agent")), Tenant: strings.TrimSpace(q.Get("tenant")),
		Statuses: runStatuses, Cursor: q.Get("cursor")}
	p := store.ListRunsParams{Agent: d.Agent, Cursor: d.Cursor, Limit: runsPage + 1}
	if d.Status != "" {
		if !validStatus.MatchString(d.Status) {
			c.renderError(w, r, &v, http.StatusBadRequest, "status: a run status such as queued, running, succeeded, failed or canceled.")
			return
		}
		p.Status = store.RunStatus(d.Status)
	}
	if t := v.tenantFor(d.Tenant); t != "" {
		p.Tenant = t
	} else {
		p.AllTenants = true
	}
	if !v.Admin {
		d.Tenant = ""
	}
	runs, err := c.cfg.Store.ListRuns(r.Context(), p)
	if err != nil {
		c.storeError(w, r, &v, "runs", err)
		return
	}
	if len(runs) > runsPage {
		runs = runs[:runsPage]
		d.NextCursor = runs[len(runs)-1].ID
		nq := r.URL.Query()
		nq.Set("cursor", d.NextCursor)
		d.NextQuery = nq.Encode()
	}
	d.Runs = runs
	c.render(w, r, &v, http.StatusOK, "runs", "Runs", d)
}

// getRun returns the run the viewer may see: any run for an admin, else
// one of its tenant's.
func (c *Console) getRun(r *http.Request, v viewer, id string) (store.Run, error) {
	if v.Admin {
		return c.cfg.Store.FindRun(r.Context(), id)
	}
	return c.cfg.Store.GetRun(r.Context(), v.Tenant, id)
}

// maxTimelineEvents caps the events one run page reads.
const maxTimelineEvents = 5000

type eventRow struct {
	Seq     int64
	Type    string
	Time    time.Time
	Summary string
}

type modelCall struct {
	Step                   int
	Model                  string
	InputTokens, OutputTok int64
	CacheRead, CacheCreate int64
	Cost                   money.Nanos
	Latency                time.Duration
	StopReason, RequestID  string
}

type toolCall struct {
	Step          int
	ID, Name      string
	Input, Output string
	IsError       bool
	Duration      time.Duration
	Done          bool
}

type runData struct {
	Run        store.Run
	Input      string
	Output     string
	Events     []eventRow
	Truncated  bool
	LastSeq    int64
	ModelCalls []modelCall
	ToolCalls  []toolCall
	Checkpoint int // the latest checkpoint's step; 0: none
	Resumes    int
	Errors     []string
	Live       bool
	CanCancel  bool
	EventsURL  string
	// Pending are the tool calls the run waits for (requires_action);
	// CanDecide shows their approve and deny buttons.
	Pending   []pendingCall
	CanDecide bool
	// Feedback is what people said of the run (POST /v1/runs/{id}/feedback).
	Feedback []store.FeedbackEntry
}

// pendingCall is a tool call waiting for a person, as the run page shows
// it (the input scrubbed as logs are).
type pendingCall struct {
	ToolUseID string
	Name      string
	Input     string
	Kind      store.ApprovalKind
	ExpiresAt time.Time
}

func (c *Console) handleRun(w http.ResponseWriter, r *http.Request, v viewer) {
	rn, err := c.getRun(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "run", err)
		return
	}
	evs, err := c.cfg.Store.ListEvents(r.Context(), rn.ID, 0, maxTimelineEvents)
	if err != nil {
		c.storeError(w, r, &v, "run events", err)
		return
	}
	d := runData{Run: rn, Input: c.scrubJSON(rn.Input), Output: outputText(rn.Output), Live: !rn.Status.Terminal(),
		CanCancel: c.cfg.Runs != nil && !rn.Status.Terminal(), Truncated: len(evs) == maxTimelineEvents,
		EventsURL: "/console/runs/" + rn.ID + "/events"}
	if cp, err := c.cfg.Store.LatestCheckpoint(r.Context(), rn.ID); err == nil {
		d.Checkpoint = cp.Step
	} else if !errors.Is(err, store.ErrNotFound) {
		c.storeError(w, r, &v, "checkpoint", err)
		return
	}
	if rn.Error != "" {
		d.Errors = append(d.Errors, c.redact(rn.Error))
	}
	if rn.Status == store.RunRequiresAction {
		approvals, err := c.cfg.Store.ListApprovals(r.Context(), rn.ID)
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
	fb, err := c.cfg.Store.ListFeedback(r.Context(), store.ListFeedbackParams{Tenant: rn.Tenant, RunID: rn.ID, Limit: 100})
	if err != nil {
		c.storeError(w, r, &v, "feedback", err)
		return
	}
	for i := range fb {
		fb[i].Comment = c.redact(fb[i].Comment)
	}
	d.Feedback = fb
	c.digest(&d, evs)
	c.render(w, r, &v, http.StatusOK, "run", "Run "+rn.ID, d)
}

// digest folds a run's events into the timeline (consecutive text deltas
// of a step as one row), model calls (from usage events: latency is the
// time since the step began) and tool calls (tool_use paired with its
// tool_result).
func (c *Console) digest(d *runData, evs []store.Event) {
	stepStart := time.Time{}
	tools := map[string]int{}
	for _, ev := range evs {
		d.LastSeq = ev.Seq
		row := eventRow{Seq: ev.Seq, Type: ev.Type, Time: ev.CreatedAt}
		switch ev.Type {
		case run.EventStart:
			var e run.StartEvent
			_ = json.Unmarshal(ev.Data, &e)
			row.Summary = "agent " + e.Agent + ", model " + e.Model
			stepStart = ev.CreatedAt
		case run.EventTextDelta:
			var e run.TextDeltaEvent
			_ = json.Unmarshal(ev.Data, &e)
			if n := len(d.Events); n > 0 && d.Events[n-1].Type == run.EventTextDelta {
				d.Events[n-1].Summary = clip(d.Events[n-1].Summary+e.Text, 400)
				d.Events[n-1].Seq = ev.Seq
				continue
			}
			row.Summary = clip(e.Text, 400)
		case run.EventToolUse:
			var e run.ToolUseEvent
			_ = json.Unmarshal(ev.Data, &e)
			in := c.scrubJSON(e.Input)
			row.Summary = e.Name + " " + clip(in, 200)
			tools[e.ID] = len(d.ToolCalls)
			d.ToolCalls = append(d.ToolCalls, toolCall{Step: e.Step, ID: e.ID, Name: e.Name, Input: in})
		case run.EventToolResult:
			var e run.ToolResultEvent
			_ = json.Unmarshal(ev.Data, &e)
			out := c.redact(e.Content)
			row.Summary = e.Name + " → " + clip(out, 200)
			if i, ok := tools[e.ToolUseID]; ok {
				tc := &d.ToolCalls[i]
				tc.Output, tc.IsError, tc.Duration, tc.Done = out, e.IsError, time.Duration(e.DurationMS)*time.Millisecond, true
			} else {
				d.ToolCalls = append(d.ToolCalls, toolCall{Step: e.Step, ID: e.ToolUseID, Name: e.Name, Output: out,
					IsError: e.IsError, Duration: time.Duration(e.DurationMS) * time.Millisecond, Done: true})
			}
			stepStart = ev.CreatedAt
		case run.EventUsage:
			var e run.UsageEvent
			_ = json.Unmarshal(ev.Data, &e)
			mc := modelCall{Step: e.Step, Model: e.Model, InputTokens: e.InputTokens, OutputTok: e.OutputTokens,
				CacheRead: e.CacheReadInputTokens, CacheCreate: e.CacheCreationInputTokens, Cost: e.CostUSD,
				StopReason: e.StopReason, RequestID: e.RequestID}
			if !stepStart.IsZero() {
				mc.Latency = ev.CreatedAt.Sub(stepStart)
			}
			stepStart = ev.CreatedAt
			d.ModelCalls = append(d.ModelCalls, mc)
			row.Summary = e.Model + ": " + groupDigits(e.InputTokens) + " in, " + groupDigits(e.OutputTokens) + " out, $" + e.CostUSD.String()
		case run.EventResumed:
			var e run.ResumedEvent
			_ = json.Unmarshal(ev.Data, &e)
			d.Resumes++
			row.Summary = "resumed at step " + itoa(e.Step)
			stepStart = ev.CreatedAt
		case run.EventDone:
			var e run.Answer
			_ = json.Unmarshal(ev.Data, &e)
			row.Summary = "stop_reason " + e.StopReason + ", " + itoa(e.Steps) + " steps"
		case run.EventError:
			var e run.ErrorInfo
			_ = json.Unmarshal(ev.Data, &e)
			msg := e.Type + ": " + c.redact(e.Message)
			row.Summary = msg
			d.Errors = append(d.Errors, msg)
		default:
			row.Summary = clip(c.redact(string(ev.Data)), 200)
		}
		d.Events = append(d.Events, row)
	}
}

func (c *Console) handleRunEvents(w http.ResponseWriter, r *http.Request, v viewer) {
	rn, err := c.getRun(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "run", err)
		return
	}
	if c.cfg.Events == nil {
		c.renderError(w, r, &v, http.StatusNotFound, "Live events are not offered here.")
		return
	}
	// The JSON API's stream, for the run's own tenant. console.js shows
	// text and the names of tools from it, never a tool's input or output
	// (those are shown redacted once the page reloads).
	c.cfg.Events(w, r, rn.Tenant, rn.ID)
}

func (c *Console) handleCancel(w http.ResponseWriter, r *http.Request, v viewer) {
	rn, err := c.getRun(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "run", err)
		return
	}
	if c.cfg.Runs == nil {
		c.renderError(w, r, &v, http.StatusNotFound, "Runs cannot be cancelled here.")
		return
	}
	if _, err := c.cfg.Runs.Cancel(r.Context(), rn.Tenant, rn.ID); err != nil {
		c.storeError(w, r, &v, "run", err)
		return
	}
	c.cfg.Log.InfoContext(r.Context(), "console: run cancel requested", "run_id", rn.ID, "tenant", rn.Tenant, "key_prefix", v.Prefix)
	setFlash(w, r, "Cancellation requested.")
	http.Redirect(w, r, "/console/runs/"+rn.ID, http.StatusSeeOther)
}

// handleDecide approves or denies one tool call a paused run waits for,
// as POST /v1/runs/{id}/approvals does (the same run.Runs.Decide: audit,
// metrics, the run resumed once every call is decided).
func (c *Console) handleDecide(w http.ResponseWriter, r *http.Request, v viewer) {
	rn, err := c.getRun(r, v, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "run", err)
		return
	}
	back := "/console/runs/" + rn.ID
	if r.PostFormValue("back") == "approvals" {
		back = "/console/approvals"
	}
	c.decide(w, r, v, rn, back)
}

// decide records the form's decision on a call run rn waits for and sends
// the browser to back. The one place the console decides: the run page,
// the session page (a user.tool_confirmation's allow and deny) and the
// approvals page come here.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, v viewer, rn store.Run, back string) {
	if c.cfg.Approvals == nil || !v.Approve {
		c.renderError(w, r, &v, http.StatusForbidden, "This key cannot decide on tool calls (it needs the approve or admin scope).")
		return
	}
	decision := store.Decision(r.PostFormValue("decision"))
	toolUse, reason := r.PostFormValue("tool_use_id"), r.PostFormValue("reason")
	switch {
	case decision != store.DecisionApprove && decision != store.DecisionDeny:
		c.renderError(w, r, &v, http.StatusBadRequest, "decision: approve or deny.")
		return
	case toolUse == "" || len(toolUse) > 256 || len(reason) > 4096:
		c.renderError(w, r, &v, http.StatusBadRequest, "tool_use_id: required; reason: at most 4096 bytes.")
		return
	}
	_, _, err := c.cfg.Approvals.Decide(r.Context(), run.DecideParams{Tenant: rn.Tenant, RunID: rn.ID, ToolUseID: toolUse,
		Decision: decision, Reason: reason, DecidedBy: v.KeyID})
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.renderError(w, r, &v, http.StatusNotFound, "This run has no such tool call waiting.")
		return
	case errors.Is(err, store.ErrConflict):
		c.renderError(w, r, &v, http.StatusConflict, "This tool call was decided already, or the run no longer waits.")
		return
	case err != nil:
		c.storeError(w, r, &v, "approval", err)
		return
	}
	c.cfg.Log.InfoContext(r.Context(), "console: tool call decided", "run_id", rn.ID, "tenant", rn.Tenant,
		"tool_use_id", toolUse, "decision", decision, "key_prefix", v.Prefix)
	setFlash(w, r, "Decision recorded: "+string(decision)+".")
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func (c *Console) redact(s string) string { return c.cfg.Redactor.Scrub(s) }

// scrubJSON indents a JSON value and scrubs secrets from it.
func (c *Console) scrubJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return c.redact(string(raw))
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return c.redact(string(b))
}

// outputText is the text blocks of a run's output.
func outputText(raw json.RawMessage) string {
	var blocks []struct {
		Type, Text string
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var b strings.Builder
	for _, bl := range blocks {
		if bl.Type == "text" {
			b.WriteString(bl.Text)
		}
	}
	return b.String()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func itoa(n int) string { return groupDigits(int64(n)) }
