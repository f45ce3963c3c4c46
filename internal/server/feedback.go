package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// Limits of a feedback body.
const (
	// MaxFeedbackComment is the longest comment, in bytes (UTF-8).
	MaxFeedbackComment = 4096
	// MaxFeedbackTags is the most tags one feedback may carry.
	MaxFeedbackTags = 16
	// MaxFeedbackTag is the longest tag, in bytes.
	MaxFeedbackTag = 64
	// DefaultFeedbackWindow is the span GET /v1/feedback/summary covers
	// without from.
	DefaultFeedbackWindow = 30 * 24 * time.Hour
)

// FeedbackStore is what the feedback endpoints need: the run a feedback
// rates (to check its tenant and learn its agent) and the feedback ledger.
type FeedbackStore interface {
	GetRun(ctx context.Context, tenant, id string) (store.Run, error)
	store.Feedback
}

// FeedbackRequest is the body of POST /v1/runs/{id}/feedback.
type FeedbackRequest struct {
	// Rating is 1 (the answer helped) or -1 (it did not); required.
	Rating *int `json:"rating"`
	// Comment is free text, at most MaxFeedbackComment bytes.
	Comment string `json:"comment,omitempty"`
	// Tags are free labels: at most MaxFeedbackTags, each 1 to
	// MaxFeedbackTag bytes without control characters, no duplicates.
	Tags []string `json:"tags,omitempty"`
}

// FeedbackBody is a stored feedback as the API shows it.
type FeedbackBody struct {
	ID    string `json:"id"`
	RunID string `json:"run_id"`
	Agent string `json:"agent"`
	// KeyID is the id of the API key that gave it; "" with
	// authentication off.
	KeyID   string   `json:"key_id"`
	Rating  int      `json:"rating"`
	Comment string   `json:"comment"`
	Tags    []string `json:"tags"`
	// Revision is 1 for a first feedback, +1 per replacement.
	Revision  int       `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func newFeedbackBody(f store.FeedbackEntry) FeedbackBody {
	tags := f.Tags
	if tags == nil {
		tags = []string{}
	}
	return FeedbackBody{ID: f.ID, RunID: f.RunID, Agent: f.Agent, KeyID: f.Key, Rating: f.Rating, Comment: f.Comment,
		Tags: tags, Revision: f.Revision, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt}
}

func decodeFeedbackRequest(r *http.Request) (FeedbackRequest, error) {
	var req FeedbackRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return req, err
	}
	switch {
	case req.Rating == nil:
		return req, badRequest("rating: required (1 or -1)")
	case *req.Rating != store.RatingPositive && *req.Rating != store.RatingNegative:
		return req, badRequest(fmt.Sprintf("rating: must be 1 or -1, not %d", *req.Rating))
	case len(req.Comment) > MaxFeedbackComment:
		return req, badRequest(fmt.Sprintf("comment: %d bytes, at most %d", len(req.Comment), MaxFeedbackComment))
	case !utf8.ValidString(req.Comment):
		return req, badRequest("comment: must be valid UTF-8")
	case len(req.Tags) > MaxFeedbackTags:
		return req, badRequest(fmt.Sprintf("tags: %d tags, at most %d", len(req.Tags), MaxFeedbackTags))
	}
	seen := make(map[string]bool, len(req.Tags))
	for i, tag := range req.Tags {
		switch {
		case strings.TrimSpace(tag) == "":
			return req, badRequest(fmt.Sprintf("tags[%d]: must not be blank", i))
		case len(tag) > MaxFeedbackTag:
			return req, badRequest(fmt.Sprintf("tags[%d]: %d bytes, at most %d", i, len(tag), MaxFeedbackTag))
		case !utf8.ValidString(tag) || strings.ContainsFunc(tag, unicode.IsControl):
			return req, badRequest(fmt.Sprintf("tags[%d]: must be valid UTF-8 without control characters", i))
		case seen[tag]:
			return req, badRequest(fmt.Sprintf("tags[%d]: %q is given twice", i, tag))
		}
		seen[tag] = true
	}
	return req, nil
}

// handlePostFeedback serves POST /v1/runs/{id}/feedback: the caller's
// rating of a run of its tenant, stored once per run and API key (a later
// one replaces it). 201 for a first feedback, 200 for a replacement; 404
// for an unknown run or another tenant's; 409 for a run that has not
// finished (it has no answer to rate yet).
func (s *Server) handlePostFeedback(fs FeedbackStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.checkJSON(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		req, err := decodeFeedbackRequest(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		tenant, runID := s.tenant(r), r.PathValue("id")
		rn, err := fs.GetRun(r.Context(), tenant, runID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !rn.Status.Terminal() {
			s.writeError(w, r, &Error{Status: http.StatusConflict, Type: "run_not_finished",
				Message: fmt.Sprintf("run %s is %s: feedback rates a finished run's answer", rn.ID, rn.Status)})
			return
		}
		p, _ := auth.FromContext(r.Context())
		stored, err := fs.PutFeedback(r.Context(), store.FeedbackEntry{
			ID: newFeedbackID(), Tenant: tenant, RunID: rn.ID, Key: p.KeyID, Agent: rn.Agent,
			Rating: *req.Rating, Comment: req.Comment, Tags: req.Tags,
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// A first feedback counts; a replacement only when it changed
		// the rating (a retried POST or an edited comment does not).
		if stored.Revision == 1 || stored.Rating != stored.PreviousRating {
			s.metrics.ObserveFeedback(stored.Agent, stored.Rating)
		}
		recordFeedbackSpan(r.Context(), observe.Tracer(), stored)
		status := http.StatusCreated
		if stored.Revision > 1 {
			status = http.StatusOK
		}
		writeJSON(w, status, newFeedbackBody(stored))
	}
}

// recordFeedbackSpan records the feedback as a span "feedback" with an
// event "feedback", a child of the request's span. A run row keeps no
// trace context (a queued run's traceparent lives only in its queue job),
// so the span cannot join the run's trace: it carries agentd.run_id, the
// attribute of the run's invoke_agent span, for a trace backend to find
// both by.
func recordFeedbackSpan(ctx context.Context, tracer trace.Tracer, f store.FeedbackEntry) {
	_, span := tracer.Start(ctx, "feedback", trace.WithAttributes(
		attribute.String("agentd.run_id", f.RunID),
		attribute.String("agentd.tenant", f.Tenant),
		attribute.String("gen_ai.agent.name", f.Agent),
	))
	defer span.End()
	if !span.IsRecording() {
		return
	}
	span.AddEvent("feedback", trace.WithAttributes(
		attribute.Int("agentd.feedback.rating", f.Rating),
		attribute.Int("agentd.feedback.revision", f.Revision),
		attribute.Int("agentd.feedback.previous_rating", f.PreviousRating),
		attribute.Int("agentd.feedback.tags", len(f.Tags)),
		attribute.Bool("agentd.feedback.comment", f.Comment != ""),
	))
}

func newFeedbackID() string {
	// UUIDv7: time-ordered like run ids.
	id, err := uuid.NewV7()
	if err != nil {
		return "fb_" + uuid.NewString()
	}
	return "fb_" + id.String()
}

// encodeFeedbackCursor makes the opaque cursor of GET /v1/feedback:
// where a page ended, "<unix microseconds>.<id>" in base64url.
func encodeFeedbackCursor(f store.FeedbackEntry) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(f.UpdatedAt.UnixMicro(), 10) + "." + f.ID))
}

func decodeFeedbackCursor(c string) (store.FeedbackCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if micros, id, ok := strings.Cut(string(b), "."); ok && id != "" {
			if n, err := strconv.ParseInt(micros, 10, 64); err == nil {
				return store.FeedbackCursor{UpdatedAt: time.UnixMicro(n).UTC(), ID: id}, nil
			}
		}
	}
	return store.FeedbackCursor{}, badRequest("query parameter cursor: not a cursor of GET /v1/feedback (use next_cursor as given)")
}

// parseRating parses the rating filter: 1, -1, positive or negative.
func parseRating(v string) (int, error) {
	switch v {
	case "1", "+1", observe.FeedbackPositive:
		return store.RatingPositive, nil
	case "-1", observe.FeedbackNegative:
		return store.RatingNegative, nil
	}
	return 0, badRequest(fmt.Sprintf("query parameter rating must be 1, -1, positive or negative, not %q", v))
}

// parseTimeRange reads from and to (RFC 3339 times or UTC dates; a date as
// to includes that whole day). Absent bounds are zero.
func parseTimeRange(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	if v := q.Get("to"); v != "" {
		t, dateOnly, err := parseUsageTime(v)
		if err != nil {
			return from, to, badRequest("query parameter to: " + err.Error())
		}
		if dateOnly {
			t = t.AddDate(0, 0, 1) // the whole day
		}
		to = t
	}
	if v := q.Get("from"); v != "" {
		t, _, err := parseUsageTime(v)
		if err != nil {
			return from, to, badRequest("query parameter from: " + err.Error())
		}
		from = t
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, badRequest(fmt.Sprintf("query parameter from (%s) must be before to (%s)",
			from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)))
	}
	return from, to, nil
}

// handleListFeedback serves GET /v1/feedback?agent=&run_id=&rating=&from=
// &to=&limit=&cursor=: the tenant's feedback, newest first, in pages.
func (s *Server) handleListFeedback(fs FeedbackStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		p := store.ListFeedbackParams{Tenant: s.tenant(r), Agent: q.Get("agent"), RunID: q.Get("run_id"), Limit: 50}
		var err error
		if v := q.Get("rating"); v != "" {
			if p.Rating, err = parseRating(v); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if p.From, p.To, err = parseTimeRange(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxListLimit {
				s.writeError(w, r, badRequest("query parameter limit: must be an integer from 1 to 1000"))
				return
			}
			p.Limit = n
		}
		if v := q.Get("cursor"); v != "" {
			if p.After, err = decodeFeedbackCursor(v); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		limit := p.Limit
		if limit < maxListLimit {
			p.Limit++ // one more tells whether there is a next page
		}
		entries, err := fs.ListFeedback(r.Context(), p)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// At the store's cap a full page always offers a cursor (as
		// GET /v1/runs does).
		more := len(entries) > limit || (limit == maxListLimit && len(entries) == limit)
		if len(entries) > limit {
			entries = entries[:limit]
		}
		body := struct {
			Feedback   []FeedbackBody `json:"feedback"`
			NextCursor string         `json:"next_cursor,omitempty"`
		}{Feedback: make([]FeedbackBody, len(entries))}
		for i, e := range entries {
			body.Feedback[i] = newFeedbackBody(e)
		}
		if more {
			body.NextCursor = encodeFeedbackCursor(entries[len(entries)-1])
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// FeedbackTotals are the counts of a day or a whole range.
type FeedbackTotals struct {
	Count    int64 `json:"count"`
	Positive int64 `json:"positive"`
	Negative int64 `json:"negative"`
	// PositiveShare is Positive / Count (0 when Count is 0).
	PositiveShare float64 `json:"positive_share"`
}

func newFeedbackTotals(count, positive int64) FeedbackTotals {
	t := FeedbackTotals{Count: count, Positive: positive, Negative: count - positive}
	if count > 0 {
		t.PositiveShare = float64(positive) / float64(count)
	}
	return t
}

// FeedbackSummaryBody is the answer of GET /v1/feedback/summary.
type FeedbackSummaryBody struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Days are per agent and UTC day, ordered by agent, then day.
	Days []FeedbackDayBody `json:"days"`
	// Agents are per agent over the whole range, ordered by agent.
	Agents []FeedbackAgentBody `json:"agents"`
}

// FeedbackDayBody is one agent's feedback of one UTC day.
type FeedbackDayBody struct {
	Agent string `json:"agent"`
	Day   string `json:"day"`
	FeedbackTotals
}

// FeedbackAgentBody is one agent's feedback over the range.
type FeedbackAgentBody struct {
	Agent string `json:"agent"`
	FeedbackTotals
}

// handleFeedbackSummary serves GET /v1/feedback/summary?agent=&from=&to=:
// the tenant's feedback per agent and UTC day over [from, to) (to defaults
// to now, from to 30 days before to), each run and key once with its
// current rating.
func (s *Server) handleFeedbackSummary(fs FeedbackStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		from, to, err := parseTimeRange(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if to.IsZero() {
			to = time.Now().UTC()
		}
		if from.IsZero() {
			from = to.Add(-DefaultFeedbackWindow)
		}
		if !from.Before(to) {
			s.writeError(w, r, badRequest(fmt.Sprintf("query parameter from (%s) must be before to (%s)",
				from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))))
			return
		}
		days, err := fs.SummarizeFeedback(r.Context(), store.FeedbackSummaryParams{
			Tenant: s.tenant(r), Agent: r.URL.Query().Get("agent"), From: from, To: to,
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		body := FeedbackSummaryBody{From: from, To: to, Days: make([]FeedbackDayBody, 0, len(days)), Agents: []FeedbackAgentBody{}}
		var count, positive int64
		for i, d := range days {
			body.Days = append(body.Days, FeedbackDayBody{Agent: d.Agent, Day: d.Day, FeedbackTotals: newFeedbackTotals(d.Count, d.Positive)})
			count, positive = count+d.Count, positive+d.Positive
			if i == len(days)-1 || days[i+1].Agent != d.Agent { // days come ordered by agent
				body.Agents = append(body.Agents, FeedbackAgentBody{Agent: d.Agent, FeedbackTotals: newFeedbackTotals(count, positive)})
				count, positive = 0, 0
			}
		}
		writeJSON(w, http.StatusOK, body)
	}
}
