package console

import (
	"net/http"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// maxApprovalsPage caps the approvals page (pending calls are few: they
// are decided or time out).
const maxApprovalsPage = 200

type approvalRow struct {
	pendingCall
	RunID, Tenant, Agent, SessionID string
	RequestedAt                     time.Time
}

type approvalsData struct {
	Rows      []approvalRow
	Truncated bool
	CanDecide bool
}

// handleApprovals lists the calls paused runs of the visible tenants wait
// for, oldest first, with approve and deny buttons (they post to the run's
// decision route, the one place the console decides).
func (c *Console) handleApprovals(w http.ResponseWriter, r *http.Request, v viewer) {
	p := store.PendingApprovalsParams{Tenant: v.Tenant, AllTenants: v.Admin, Limit: maxApprovalsPage + 1}
	rows, err := c.cfg.Store.ListPendingApprovals(r.Context(), p)
	if err != nil {
		c.storeError(w, r, &v, "approvals", err)
		return
	}
	d := approvalsData{CanDecide: c.cfg.Approvals != nil && v.Approve}
	if len(rows) > maxApprovalsPage {
		rows, d.Truncated = rows[:maxApprovalsPage], true
	}
	for _, a := range rows {
		d.Rows = append(d.Rows, approvalRow{
			pendingCall: pendingCall{ToolUseID: a.ToolUseID, Name: a.Name, Input: c.scrubJSON(a.Input), Kind: a.Kind, ExpiresAt: a.ExpiresAt},
			RunID:       a.RunID, Tenant: a.Tenant, Agent: a.Agent, SessionID: a.SessionID, RequestedAt: a.RequestedAt,
		})
	}
	c.render(w, r, &v, http.StatusOK, "approvals", "Approvals", d)
}
