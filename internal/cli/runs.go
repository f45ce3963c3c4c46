package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// runBody is the run object of the API (docs/api.md, "The run object").
type runBody struct {
	ID             string          `json:"id"`
	Agent          string          `json:"agent"`
	ConversationID string          `json:"conversation_id"`
	Status         string          `json:"status"`
	Input          json.RawMessage `json:"input"`
	Output         json.RawMessage `json:"output"`
	Error          string          `json:"error"`
	Attempt        int             `json:"attempt"`
	Steps          int             `json:"steps"`
	Usage          tokenUsage      `json:"usage"`
	CostUSD        json.Number     `json:"cost_usd"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
}

// terminalStatus reports a status a run never leaves.
func terminalStatus(s string) bool { return s == "succeeded" || s == "failed" || s == "canceled" }

func cmdRuns(ctx context.Context, args []string, stdio IO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		fmt.Fprintln(stdio.Stderr, runsUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: agentd runs needs a command", ErrUsage)
		}
		return nil
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "submit":
		return runsSubmit(ctx, args, stdio)
	case "get", "cancel":
		return runsGetOrCancel(ctx, sub, args, stdio)
	case "list":
		return runsList(ctx, args, stdio)
	case "tail":
		return runsTail(ctx, args, stdio)
	default:
		return fmt.Errorf("%w: unknown runs command %q\n%s", ErrUsage, sub, runsUsage)
	}
}

func runsSubmit(ctx context.Context, args []string, stdio IO) error {
	fs := newFlagSet("runs submit", stdio.Stderr)
	c := addCommon(fs, stdio.Environ)
	conv := fs.String("c", "", "continue this conversation (its id)")
	key := fs.String("idempotency-key", "", "Idempotency-Key: the same key returns the same run")
	webhook := fs.String("webhook", "", "POST the finished run to this URL")
	maxCost := fs.Float64("max-cost", 0, "cap the run's cost in USD (0: the agent's cap only)")
	tail := fs.Bool("tail", false, "follow the run's events until it ends (as runs tail)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if len(pos) < 1 {
		return fmt.Errorf("%w: agentd runs submit AGENT MESSAGE... (without MESSAGE it is read from stdin)", ErrUsage)
	}
	msg := strings.Join(pos[1:], " ")
	if len(pos) == 1 {
		b, err := io.ReadAll(io.LimitReader(stdio.Stdin, maxLine))
		if err != nil {
			return fmt.Errorf("read the message from stdin: %w", err)
		}
		msg = strings.TrimSpace(string(b))
	}
	body := struct {
		Agent          string  `json:"agent"`
		Message        string  `json:"message"`
		ConversationID string  `json:"conversation_id,omitempty"`
		Webhook        string  `json:"webhook,omitempty"`
		MaxCostUSD     float64 `json:"max_cost_usd,omitempty"`
	}{pos[0], msg, *conv, *webhook, *maxCost}
	h := http.Header{}
	if *key != "" {
		h.Set("Idempotency-Key", *key)
	}
	cl := c.client()
	raw, resp, err := cl.do(ctx, http.MethodPost, "/v1/runs", body, h)
	if err != nil {
		return err
	}
	if err := printRun(stdio.Stdout, c, raw); err != nil {
		return err
	}
	var rb runBody
	if err := json.Unmarshal(raw, &rb); err != nil {
		return fmt.Errorf("decode run: %w", err)
	}
	if !c.json() {
		if resp.Header.Get("Idempotent-Replayed") == "true" {
			fmt.Fprintf(stdio.Stderr, "the run of Idempotency-Key %q already existed: this is it\n", *key)
		}
		if !*tail {
			fmt.Fprintf(stdio.Stderr, "follow it: agentd runs tail %s\n", rb.ID)
		}
	}
	if !*tail {
		return nil
	}
	return (&tailer{client: cl, id: rb.ID, json: c.json(), out: stdio.Stdout, errOut: stdio.Stderr,
		render: &renderer{w: stdio.Stdout, header: true}}).run(ctx)
}

func runsGetOrCancel(ctx context.Context, sub string, args []string, stdio IO) error {
	fs := newFlagSet("runs "+sub, stdio.Stderr)
	c := addCommon(fs, stdio.Environ)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: agentd runs %s ID", ErrUsage, sub)
	}
	path := "/v1/runs/" + url.PathEscape(pos[0])
	method := http.MethodGet
	if sub == "cancel" {
		path, method = path+"/cancel", http.MethodPost
	}
	raw, resp, err := c.client().do(ctx, method, path, nil, nil)
	if err != nil {
		return err
	}
	if err := printRun(stdio.Stdout, c, raw); err != nil {
		return err
	}
	if sub == "cancel" && resp.StatusCode == http.StatusAccepted && !c.json() {
		fmt.Fprintln(stdio.Stderr, "the run is being stopped on its worker; it ends canceled shortly (agentd runs get to see it)")
	}
	return nil
}

// printRun prints a run: as received with -o json, else as a two-column
// table.
func printRun(w io.Writer, c *common, raw []byte) error {
	if c.json() {
		return writeRaw(w, raw)
	}
	var r runBody
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode run: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("ID", r.ID)
	row("STATUS", r.Status)
	row("AGENT", r.Agent)
	row("CONVERSATION", r.ConversationID)
	var in struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(r.Input, &in)
	row("MESSAGE", shorten(in.Message, 200))
	row("ATTEMPT", strconv.Itoa(r.Attempt))
	row("STEPS", strconv.Itoa(r.Steps))
	row("TOKENS", fmt.Sprintf("%d input / %d output", r.Usage.InputTokens, r.Usage.OutputTokens))
	row("COST_USD", r.CostUSD.String())
	row("CREATED", formatTime(&r.CreatedAt))
	row("STARTED", formatTime(r.StartedAt))
	row("FINISHED", formatTime(r.FinishedAt))
	row("ERROR", r.Error)
	row("OUTPUT", shorten(outputText(r.Output), 500))
	return tw.Flush()
}

// outputText is the text blocks of a run's output, joined.
func outputText(raw json.RawMessage) string {
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &blocks)
	var parts []string
	for _, b := range blocks {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

func writeRaw(w io.Writer, raw []byte) error {
	_, err := fmt.Fprintf(w, "%s\n", strings.TrimRight(string(raw), "\n"))
	return err
}

func runsList(ctx context.Context, args []string, stdio IO) error {
	fs := newFlagSet("runs list", stdio.Stderr)
	c := addCommon(fs, stdio.Environ)
	status := fs.String("status", "", "only runs in this status (queued, running, succeeded, failed, canceled)")
	agent := fs.String("agent", "", "only this agent's runs")
	limit := fs.Int("limit", 0, "runs per page, 1-1000 (default: the server's, 50)")
	cursor := fs.String("cursor", "", "the next_cursor of the previous page")
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
	q := queryOf(map[string]string{"status": *status, "agent": *agent, "cursor": *cursor})
	if *limit != 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	path := "/v1/runs"
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
	var page struct {
		Runs       []runBody `json:"runs"`
		NextCursor string    `json:"next_cursor"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return fmt.Errorf("decode runs: %w", err)
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tAGENT\tSTEPS\tTOKENS IN/OUT\tCOST_USD\tCREATED")
	for _, r := range page.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d/%d\t%s\t%s\n", r.ID, r.Status, r.Agent, r.Steps,
			r.Usage.InputTokens, r.Usage.OutputTokens, r.CostUSD, formatTime(&r.CreatedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		fmt.Fprintf(stdio.Stderr, "more: agentd runs list -cursor %s\n", page.NextCursor)
	}
	return nil
}

func runsTail(ctx context.Context, args []string, stdio IO) error {
	fs := newFlagSet("runs tail", stdio.Stderr)
	c := addCommon(fs, stdio.Environ)
	after := fs.Int64("after", 0, "start after this event id (events up to it are not shown)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: agentd runs tail ID", ErrUsage)
	}
	return (&tailer{client: c.client(), id: pos[0], last: *after, json: c.json(), out: stdio.Stdout,
		errOut: stdio.Stderr, render: &renderer{w: stdio.Stdout, header: true}}).run(ctx)
}

// Reconnection of runs tail: after a connection ends without the run's
// last event, the next attempt waits reconnectMin, doubling up to
// reconnectMax; maxReconnects attempts in a row without a new event end
// the tail with the last error.
const (
	reconnectMin  = 100 * time.Millisecond
	reconnectMax  = 5 * time.Second
	maxReconnects = 10
)

// tailer follows a run's events (GET /v1/runs/{id}/events) until done or
// error. A connection that ends early is resumed with Last-Event-ID: the
// last complete event seen, so nothing is shown twice or skipped; an
// event with an id at or below it is dropped should a server send one.
type tailer struct {
	client      *Client
	id          string
	last        int64
	json        bool
	out, errOut io.Writer
	render      *renderer
}

func (t *tailer) run(ctx context.Context) error {
	wait := reconnectMin
	failures := 0
	for attempt := 0; ; attempt++ {
		progressed, err := t.follow(ctx)
		if err == nil {
			return nil // the run's last event was shown
		}
		var (
			re *RunError
			ue *UnreachableError
			oe *outputError
			ae *APIError
		)
		switch {
		case errors.As(err, &re), errors.As(err, &oe), ctx.Err() != nil:
			return err
		case attempt == 0 && errors.As(err, &ue):
			return err // a server that was never reached is not waited for
		case errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusTooManyRequests:
			return err // 404, 401, ...: retrying does not help
		}
		if errors.Is(err, errStreamEnded) {
			// The server closed the stream without the last event:
			// a drain cut it, or the run's events are gone (retention).
			if status, derr := t.status(ctx); derr == nil && terminalStatus(status) {
				fmt.Fprintf(t.errOut, "run %s is %s; the server has no further events of it\n", t.id, status)
				if status != "succeeded" {
					return fmt.Errorf("run %s is %s", t.id, status)
				}
				return nil
			}
		}
		if progressed {
			failures, wait = 0, reconnectMin
		}
		failures++
		if failures > maxReconnects {
			return fmt.Errorf("follow run %s: gave up after %d reconnects: %w", t.id, maxReconnects, err)
		}
		t.render.newline()
		fmt.Fprintf(t.errOut, "connection lost (%v); resuming after event %d in %v\n", err, t.last, wait)
		if err := t.pause(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, reconnectMax)
	}
}

// outputError is a failed write to the output (a closed pipe): the end,
// not a reason to reconnect.
type outputError struct{ err error }

func (e *outputError) Error() string { return "write output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// errStreamEnded is a stream the server ended cleanly before the run's
// last event.
var errStreamEnded = errors.New("the event stream ended before the run did")

// follow reads one connection's events; progressed says whether any new
// event came.
func (t *tailer) follow(ctx context.Context) (progressed bool, err error) {
	req, err := t.client.newRequest(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(t.id)+"/events", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if t.last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(t.last, 10))
	}
	resp, err := t.client.send(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	rd := newSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return progressed, errStreamEnded
		}
		if err != nil {
			return progressed, err
		}
		if ev.ID <= t.last {
			continue
		}
		t.last, progressed = ev.ID, true
		if t.json {
			if err := writeJSONEvent(t.out, ev); err != nil {
				return progressed, &outputError{err}
			}
		} else {
			t.render.render(ev)
		}
		switch ev.Name {
		case "done":
			return progressed, nil
		case "error":
			return progressed, eventError(ev)
		}
	}
}

// status returns the run's status.
func (t *tailer) status(ctx context.Context) (string, error) {
	raw, _, err := t.client.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(t.id), nil, nil)
	if err != nil {
		return "", err
	}
	var r runBody
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", fmt.Errorf("decode run: %w", err)
	}
	return r.Status, nil
}

func (t *tailer) pause(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
