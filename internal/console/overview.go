package console

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/agentd/agentd/internal/server"
	template "github.com/agentd/agentd/internal/third_party/gotemplate/html"
)

type chart struct {
	Title  string
	Last   string
	SVG    template.HTML
	Points int
}

type overviewData struct {
	Health server.HealthReport
	Charts []chart
	// InFlight keys sorted.
	InFlight []kv
	// Pending is how many tool calls paused runs of the visible tenants
	// wait for (the approvals page).
	Pending int
}

type kv struct {
	K string
	V int
}

func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request, v viewer) {
	d := overviewData{}
	n, err := c.cfg.Store.CountPendingApprovals(r.Context(), v.Tenant, v.Admin)
	if err != nil {
		c.storeError(w, r, &v, "approvals", err)
		return
	}
	d.Pending = n
	if c.cfg.Health != nil {
		d.Health = c.cfg.Health()
		for _, k := range sortedKeys(d.Health.InFlight) {
			d.InFlight = append(d.InFlight, kv{k, d.Health.InFlight[k]})
		}
	}
	if c.cfg.Sampler != nil {
		s := c.cfg.Sampler.Series()
		d.Charts = []chart{
			lineChart("Requests per second", s.RateRPS, func(f float64) string { return fmt.Sprintf("%.2f/s", f) }),
			lineChart("Error rate (5xx)", s.ErrorRate, func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }),
			lineChart("Latency p50", s.P50, func(f float64) string { return fmt.Sprintf("%.0f ms", f*1000) }),
			lineChart("Latency p95", s.P95, func(f float64) string { return fmt.Sprintf("%.0f ms", f*1000) }),
			lineChart("Tokens per interval", s.Tokens, func(f float64) string { return fmt.Sprintf("%.0f", f) }),
			lineChart("Cost per interval", s.CostUSD, func(f float64) string { return fmt.Sprintf("$%.4f", f) }),
		}
	}
	c.render(w, r, &v, http.StatusOK, "overview", "Overview", d)
}

// lineChart draws ys as an inline SVG polyline (no script, no external
// library), scaled to its own maximum.
func lineChart(title string, ys []float64, format func(float64) string) chart {
	const wd, ht = 300.0, 60.0
	ch := chart{Title: title, Points: len(ys), Last: "no data yet"}
	maxY := 0.0
	for _, y := range ys {
		maxY = max(maxY, y)
	}
	var pts strings.Builder
	for i, y := range ys {
		x := 0.0
		if len(ys) > 1 {
			x = wd * float64(i) / float64(len(ys)-1)
		}
		yy := ht
		if maxY > 0 {
			yy = ht - (ht-4)*y/maxY
		}
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, yy)
	}
	if len(ys) > 0 {
		ch.Last = format(ys[len(ys)-1]) + " (max " + format(maxY) + ")"
	}
	svg := fmt.Sprintf(`<svg class="chart" viewBox="0 0 %.0f %.0f" preserveAspectRatio="none" role="img" aria-label="%s: %s">`+
		`<line x1="0" y1="%.0f" x2="%.0f" y2="%.0f" class="axis"/>`+
		`<polyline points="%s" class="line" fill="none"/></svg>`,
		wd, ht, template.HTMLEscapeString(title), template.HTMLEscapeString(ch.Last), ht, wd, ht, strings.TrimSpace(pts.String()))
	ch.SVG = template.HTML(svg) //nolint:gosec // numbers and escaped text only
	return ch
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
