package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"
)

// usageTotals is a row of GET /v1/usage.
type usageTotals struct {
	Group                    string      `json:"group"`
	Requests                 int64       `json:"requests"`
	InputTokens              int64       `json:"input_tokens"`
	OutputTokens             int64       `json:"output_tokens"`
	CacheCreationInputTokens int64       `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64       `json:"cache_read_input_tokens"`
	CostUSD                  json.Number `json:"cost_usd"`
}

// cmdUsage is `agentd usage`: the tenant's tokens and cost per group.
func cmdUsage(ctx context.Context, args []string, stdio IO) error {
	fs := newFlagSet("usage", stdio.Stderr)
	c := addCommon(fs, stdio.Environ)
	groupBy := fs.String("group-by", "", "agent (default), model, key or day")
	from := fs.String("from", "", "start: RFC 3339 time or YYYY-MM-DD (default: 30 days before -to)")
	to := fs.String("to", "", "end: RFC 3339 time or YYYY-MM-DD, a date includes its day (default: now)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, pos)
	}
	q := queryOf(map[string]string{"group_by": *groupBy, "from": *from, "to": *to})
	path := "/v1/usage"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	raw, _, err := c.client().do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if c.json() {
		return writeRaw(stdio.Stdout, raw)
	}
	var body struct {
		GroupBy string        `json:"group_by"`
		From    time.Time     `json:"from"`
		To      time.Time     `json:"to"`
		Rows    []usageTotals `json:"rows"`
		Total   usageTotals   `json:"total"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return fmt.Errorf("decode usage: %w", err)
	}
	fmt.Fprintf(stdio.Stdout, "usage by %s, %s to %s (UTC)\n", body.GroupBy,
		body.From.UTC().Format(time.DateTime), body.To.UTC().Format(time.DateTime))
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "GROUP\tREQUESTS\tINPUT\tOUTPUT\tCACHE_WRITE\tCACHE_READ\tCOST_USD\t")
	row := func(u usageTotals) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", u.Group, u.Requests, u.InputTokens, u.OutputTokens,
			u.CacheCreationInputTokens, u.CacheReadInputTokens, u.CostUSD)
	}
	for _, r := range body.Rows {
		row(r)
	}
	body.Total.Group = "TOTAL"
	row(body.Total)
	return tw.Flush()
}
