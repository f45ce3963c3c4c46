package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/store"
)

// DefaultUsageWindow is the span GET /v1/usage covers without from.
const DefaultUsageWindow = 30 * 24 * time.Hour

// usageTotals is the JSON of a group's or the whole range's totals.
type usageTotals struct {
	Requests                 int64       `json:"requests"`
	InputTokens              int64       `json:"input_tokens"`
	OutputTokens             int64       `json:"output_tokens"`
	CacheCreationInputTokens int64       `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64       `json:"cache_read_input_tokens"`
	CostUSD                  money.Nanos `json:"cost_usd"`
}

type usageRow struct {
	Group string `json:"group"`
	usageTotals
}

type usageBody struct {
	GroupBy string      `json:"group_by"`
	From    time.Time   `json:"from"`
	To      time.Time   `json:"to"`
	Rows    []usageRow  `json:"rows"`
	Total   usageTotals `json:"total"`
}

func newUsageTotals(t store.UsageTotals) usageTotals {
	return usageTotals{
		Requests: t.Requests, InputTokens: t.InputTokens, OutputTokens: t.OutputTokens,
		CacheCreationInputTokens: t.CacheCreationInputTokens, CacheReadInputTokens: t.CacheReadInputTokens,
		CostUSD: t.CostUSD,
	}
}

// handleUsage serves GET /v1/usage?group_by=agent|model|key|day&from=&to=:
// the tenant's model calls, tokens and cost summed per group over
// [from, to). from and to are RFC 3339 times or UTC dates (YYYY-MM-DD; a
// date as to includes that whole day); to defaults to now, from to 30 days
// before to; group_by to agent.
func (s *Server) handleUsage(u store.Usage) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		groupBy := q.Get("group_by")
		if groupBy == "" {
			groupBy = store.UsageByAgent
		}
		if !slices.Contains(store.UsageGroupings(), groupBy) {
			s.writeError(w, r, badRequest(fmt.Sprintf("query parameter group_by must be one of %s, not %q",
				strings.Join(store.UsageGroupings(), ", "), groupBy)))
			return
		}
		to := time.Now().UTC()
		if v := q.Get("to"); v != "" {
			t, dateOnly, err := parseUsageTime(v)
			if err != nil {
				s.writeError(w, r, badRequest("query parameter to: "+err.Error()))
				return
			}
			if dateOnly {
				t = t.AddDate(0, 0, 1) // the whole day
			}
			to = t
		}
		from := to.Add(-DefaultUsageWindow)
		if v := q.Get("from"); v != "" {
			t, _, err := parseUsageTime(v)
			if err != nil {
				s.writeError(w, r, badRequest("query parameter from: "+err.Error()))
				return
			}
			from = t
		}
		if !from.Before(to) {
			s.writeError(w, r, badRequest(fmt.Sprintf("query parameter from (%s) must be before to (%s)",
				from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))))
			return
		}
		groups, err := u.SumUsage(r.Context(), store.UsageQuery{Tenant: s.tenant(r), GroupBy: groupBy, From: from, To: to})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		body := usageBody{GroupBy: groupBy, From: from, To: to, Rows: make([]usageRow, 0, len(groups))}
		var total store.UsageTotals
		for _, g := range groups {
			body.Rows = append(body.Rows, usageRow{Group: g.Group, usageTotals: newUsageTotals(g.UsageTotals)})
			total = total.Add(g.UsageTotals)
		}
		body.Total = newUsageTotals(total)
		writeJSON(w, http.StatusOK, body)
	}
}

// parseUsageTime parses an RFC 3339 time or a YYYY-MM-DD date (midnight
// UTC; dateOnly reports it), returned in UTC.
func parseUsageTime(v string) (t time.Time, dateOnly bool, err error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t.UTC(), true, nil
	}
	t, err = time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%q is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a date (2006-01-02)", v)
	}
	return t.UTC(), false, nil
}
