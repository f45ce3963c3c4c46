package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
)

// Keys, conversations, usage and the audit log.

// keyView is what the keys page shows of a key: never its hash.
type keyView struct {
	ID, Prefix, Tenant, Name string
	Scopes                   []string
	CreatedAt, RevokedAt     time.Time
}

type keysData struct {
	Keys   []keyView
	Scopes []string
	// Created is the new key's secret, shown once right after creation
	// (rendered from the POST's answer, never stored or shown again).
	Created       string
	CreatedPrefix string
	Error         string
	Form          struct{ Tenant, Name string }
}

func (c *Console) handleKeys(w http.ResponseWriter, r *http.Request, v viewer) {
	c.keysPage(w, r, v, http.StatusOK, keysData{})
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, v viewer, status int, d keysData) {
	if !v.Admin {
		c.renderError(w, r, &v, http.StatusForbidden, "Managing API keys needs a key with the admin scope.")
		return
	}
	keys, err := c.cfg.Store.ListAPIKeys(r.Context(), "")
	if err != nil {
		c.storeError(w, r, &v, "API keys", err)
		return
	}
	for _, k := range keys {
		d.Keys = append(d.Keys, keyView{ID: k.ID, Prefix: k.Prefix, Tenant: k.Tenant, Scopes: k.Scopes,
			Name: k.Name, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt})
	}
	slices.Reverse(d.Keys) // newest first
	d.Scopes = auth.AllScopes
	c.render(w, r, &v, status, "keys", "API keys", d)
}

func (c *Console) handleCreateKey(w http.ResponseWriter, r *http.Request, v viewer) {
	if !v.Admin {
		c.renderError(w, r, &v, http.StatusForbidden, "Managing API keys needs a key with the admin scope.")
		return
	}
	var d keysData
	d.Form.Tenant, d.Form.Name = strings.TrimSpace(r.PostFormValue("tenant")), strings.TrimSpace(r.PostFormValue("name"))
	scopes := r.PostForm["scope"]
	switch {
	case !auth.ValidTenant(d.Form.Tenant):
		d.Error = "Tenant: 1-64 letters, digits, '.', '_' or '-' (not first)."
	case len(d.Form.Name) > 200:
		d.Error = "Name: at most 200 characters."
	}
	var err error
	if d.Error == "" {
		if scopes, err = auth.ParseScopes(strings.Join(scopes, ",")); err != nil {
			d.Error = "Scopes: " + err.Error() + "."
		}
	}
	if d.Error != "" {
		c.keysPage(w, r, v, http.StatusBadRequest, d)
		return
	}
	k, err := auth.CreateKey(r.Context(), c.cfg.Store, auth.CreateParams{Tenant: d.Form.Tenant, Scopes: scopes, Name: d.Form.Name})
	if err != nil {
		c.storeError(w, r, &v, "API key", err)
		return
	}
	c.cfg.Log.InfoContext(r.Context(), "console: API key created", "key_id", k.ID, "new_key_prefix", k.Prefix,
		"tenant", d.Form.Tenant, "key_prefix", v.Prefix)
	d = keysData{Created: k.Token, CreatedPrefix: k.Prefix}
	c.keysPage(w, r, v, http.StatusCreated, d)
}

func (c *Console) handleRevokeKey(w http.ResponseWriter, r *http.Request, v viewer) {
	if !v.Admin {
		c.renderError(w, r, &v, http.StatusForbidden, "Managing API keys needs a key with the admin scope.")
		return
	}
	k, err := c.cfg.Store.RevokeAPIKey(r.Context(), r.PathValue("id"), c.cfg.Now())
	if err != nil {
		c.storeError(w, r, &v, "API key", err)
		return
	}
	if c.cfg.Auth != nil {
		c.cfg.Auth.ForgetKey(k.ID) // at once on this instance, within auth.cache_ttl elsewhere
	}
	c.cfg.Log.InfoContext(r.Context(), "console: API key revoked", "key_id", k.ID, "revoked_prefix", k.Prefix, "key_prefix", v.Prefix)
	setFlash(w, r, "Key "+k.Prefix+" revoked.")
	http.Redirect(w, r, "/console/keys", http.StatusSeeOther)
}

// Conversations.

type block struct {
	Type      string
	Text      string
	Name      string
	ID        string
	Input     string
	IsError   bool
	ToolUseID string
}

type message struct {
	Seq    int64
	Role   string
	Time   time.Time
	Tokens int64
	Blocks []block
}

type conversationData struct {
	Conv      store.Conversation
	Messages  []message
	TenantArg string
}

// conversationTenant is the tenant a conversation page acts for: an
// admin names it with ?tenant= (links from a run carry it).
func conversationTenant(r *http.Request, v viewer) string {
	if t := r.FormValue("tenant"); v.Admin && t != "" {
		return t
	}
	return v.Tenant
}

func (c *Console) handleConversation(w http.ResponseWriter, r *http.Request, v viewer) {
	tenant := conversationTenant(r, v)
	conv, err := c.cfg.Store.GetConversation(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		c.storeError(w, r, &v, "conversation", err)
		return
	}
	d := conversationData{Conv: conv, TenantArg: tenant}
	for _, m := range conv.Messages {
		msg := message{Seq: m.Seq, Role: m.Role, Time: m.CreatedAt, Tokens: m.Tokens}
		var raw []struct {
			Type      string          `json:"type"`
			Text      string          `json:"text"`
			Name      string          `json:"name"`
			ID        string          `json:"id"`
			Input     json.RawMessage `json:"input"`
			ToolUseID string          `json:"tool_use_id"`
			IsError   bool            `json:"is_error"`
			Content   json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(m.Content, &raw); err != nil {
			msg.Blocks = []block{{Type: "raw", Text: c.redact(string(m.Content))}}
		}
		for _, b := range raw {
			bl := block{Type: b.Type, Name: b.Name, ID: b.ID, ToolUseID: b.ToolUseID, IsError: b.IsError}
			switch b.Type {
			case "text":
				bl.Text = b.Text
			case "tool_use":
				bl.Input = c.scrubJSON(b.Input)
			case "tool_result":
				bl.Text = c.redact(resultText(b.Content))
			default:
				bl.Text = c.redact(clip(string(b.Content), 2000))
			}
			msg.Blocks = append(msg.Blocks, bl)
		}
		d.Messages = append(d.Messages, msg)
	}
	c.render(w, r, &v, http.StatusOK, "conversation", "Conversation "+conv.ID, d)
}

// resultText is a tool_result's content: a string, or its text blocks.
func resultText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct{ Type, Text string }
	if json.Unmarshal(raw, &blocks) == nil {
		var b strings.Builder
		for _, bl := range blocks {
			b.WriteString(bl.Text)
		}
		return b.String()
	}
	return string(raw)
}

func (c *Console) handleDeleteConversation(w http.ResponseWriter, r *http.Request, v viewer) {
	tenant, id := conversationTenant(r, v), r.PathValue("id")
	if err := c.cfg.Store.DeleteConversation(r.Context(), tenant, id); err != nil {
		c.storeError(w, r, &v, "conversation", err)
		return
	}
	c.cfg.Log.InfoContext(r.Context(), "console: conversation deleted", "conversation_id", id, "tenant", tenant, "key_prefix", v.Prefix)
	setFlash(w, r, "Conversation "+id+" deleted.")
	http.Redirect(w, r, "/console/runs", http.StatusSeeOther)
}

// Usage.

type usageRow struct {
	Group string
	store.UsageTotals
	Share float64 // of the largest row's cost, for the bar
}

type budgetRow struct {
	Tenant, Period string
	Limit, Spent   float64
	Share          float64
}

type usageData struct {
	Tenant, By string
	Days       int
	Bys        []string
	Tenants    []string
	Rows       []usageRow
	ByTenant   []usageRow
	Total      store.UsageTotals
	Budgets    []budgetRow
	From, To   time.Time
}

func (c *Console) handleUsage(w http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	d := usageData{By: q.Get("by"), Days: 7, Bys: []string{"tenant", store.UsageByAgent, store.UsageByModel, store.UsageByDay, store.UsageByKey}}
	if d.By == "" {
		d.By = store.UsageByDay
	}
	if !slices.Contains(d.Bys, d.By) {
		c.renderError(w, r, &v, http.StatusBadRequest, "by: must be one of "+strings.Join(d.Bys, ", ")+".")
		return
	}
	if s := q.Get("days"); s != "" {
		if _, err := fmt.Sscan(s, &d.Days); err != nil || d.Days < 1 || d.Days > 366 {
			c.renderError(w, r, &v, http.StatusBadRequest, "days: a whole number from 1 to 366.")
			return
		}
	}
	now := c.cfg.Now().UTC()
	d.To = now.Add(time.Minute)
	d.From = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1-d.Days)
	if v.Admin {
		ts, err := c.tenants(r, v)
		if err != nil {
			c.storeError(w, r, &v, "tenants", err)
			return
		}
		d.Tenants = ts
		d.Tenant = q.Get("tenant")
	} else {
		d.Tenants = []string{v.Tenant}
		d.Tenant = v.Tenant
	}
	scope := d.Tenants
	if d.Tenant != "" {
		scope = []string{d.Tenant}
	}
	groups := map[string]store.UsageTotals{}
	for _, t := range scope {
		by := d.By
		if by == "tenant" {
			by = store.UsageByAgent
		}
		gs, err := c.cfg.Store.SumUsage(r.Context(), store.UsageQuery{Tenant: t, GroupBy: by, From: d.From, To: d.To})
		if err != nil {
			c.storeError(w, r, &v, "usage", err)
			return
		}
		for _, g := range gs {
			key := g.Group
			if d.By == "tenant" {
				key = t
			}
			groups[key] = groups[key].Add(g.UsageTotals)
			d.Total = d.Total.Add(g.UsageTotals)
		}
	}
	var top money.Nanos
	for _, k := range sortedKeys(groups) {
		d.Rows = append(d.Rows, usageRow{Group: k, UsageTotals: groups[k]})
		top = max(top, groups[k].CostUSD)
	}
	for i := range d.Rows {
		if top > 0 {
			d.Rows[i].Share = float64(d.Rows[i].CostUSD) / float64(top)
		}
	}
	if c.cfg.Budgets != nil {
		if err := c.budgetRows(r, scope, &d); err != nil {
			c.storeError(w, r, &v, "usage", err)
			return
		}
	}
	c.render(w, r, &v, http.StatusOK, "usage", "Usage", d)
}

// budgetRows adds each tenant's configured daily and monthly budgets with
// the spend of the current day and month from the usage ledger.
func (c *Console) budgetRows(r *http.Request, tenants []string, d *usageData) error {
	now := c.cfg.Now().UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	for _, t := range tenants {
		daily, monthly := c.cfg.Budgets(t)
		for _, p := range []struct {
			name  string
			limit float64
			from  time.Time
		}{{"day", daily, day}, {"month", monthly, month}} {
			if p.limit <= 0 {
				continue
			}
			gs, err := c.cfg.Store.SumUsage(r.Context(), store.UsageQuery{Tenant: t, GroupBy: store.UsageByDay, From: p.from, To: now.Add(time.Minute)})
			if err != nil {
				return err
			}
			var spent money.Nanos
			for _, g := range gs {
				spent += g.CostUSD
			}
			d.Budgets = append(d.Budgets, budgetRow{Tenant: t, Period: p.name, Limit: p.limit, Spent: spent.USD(), Share: spent.USD() / p.limit})
		}
	}
	return nil
}

// tenants are the tenants an admin can pick: those with API keys, and
// the default tenant.
func (c *Console) tenants(r *http.Request, v viewer) ([]string, error) {
	keys, err := c.cfg.Store.ListAPIKeys(r.Context(), "")
	if err != nil {
		return nil, err
	}
	set := map[string]bool{server.DefaultTenant: true, v.Tenant: true}
	for _, k := range keys {
		set[k.Tenant] = true
	}
	return sortedKeys(set), nil
}

// Audit.

type auditData struct {
	RunID   string
	Tenant  string
	Entries []store.AuditEntry
	Inputs  []string
	// Recent: no run asked for, the newest rows (of every tenant for an
	// admin) with a cursor to older ones.
	Recent     bool
	NextBefore int64
}

// auditPage is the page size of the recent audit log.
const auditPage = 50

func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	d := auditData{RunID: strings.TrimSpace(q.Get("run_id"))}
	var err error
	if d.RunID != "" {
		rn, err := c.getRun(r, v, d.RunID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			c.storeError(w, r, &v, "run", err)
			return
		}
		if err == nil {
			d.Tenant = rn.Tenant
			if d.Entries, err = c.cfg.Store.ListAudit(r.Context(), rn.Tenant, rn.ID); err != nil {
				c.storeError(w, r, &v, "audit log", err)
				return
			}
		}
	} else {
		d.Recent = true
		p := store.RecentAuditParams{Tenant: v.Tenant, AllTenants: v.Admin, Limit: auditPage + 1}
		if b := q.Get("before"); b != "" {
			if _, err := fmt.Sscan(b, &p.Before); err != nil || p.Before < 1 {
				c.renderError(w, r, &v, http.StatusBadRequest, "before: an audit row id.")
				return
			}
		}
		if d.Entries, err = c.cfg.Store.ListRecentAudit(r.Context(), p); err != nil {
			c.storeError(w, r, &v, "audit log", err)
			return
		}
		if len(d.Entries) > auditPage {
			d.Entries = d.Entries[:auditPage]
			d.NextBefore = d.Entries[auditPage-1].ID
		}
	}
	for _, e := range d.Entries {
		d.Inputs = append(d.Inputs, c.scrubJSON(e.Input))
	}
	c.render(w, r, &v, http.StatusOK, "audit", "Audit log", d)
}
