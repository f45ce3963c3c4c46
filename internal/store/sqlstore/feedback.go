package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Page sizes of ListFeedback.
const (
	DefaultListFeedback = 50
	MaxListFeedback     = 1000
)

const (
	feedbackColumns = `id, tenant, run_id, key, agent, rating, previous_rating, revision, comment, tags,
		created_at, updated_at`

	// qPutFeedback inserts an entry or replaces the one of the same
	// tenant, run and key in one statement, so concurrent puts cannot both
	// insert. In DO UPDATE SET, feedback.* is the row before the update
	// (in both dialects every right-hand side sees the old row), so
	// previous_rating takes the rating being replaced.
	qPutFeedback = `INSERT INTO feedback (id, tenant, run_id, key, agent, rating, previous_rating, revision,
		comment, tags, day, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, 0, 1, $7, $8, $9, $10, $10)
		ON CONFLICT (tenant, run_id, key) DO UPDATE SET
			previous_rating = feedback.rating,
			rating = excluded.rating,
			revision = feedback.revision + 1,
			agent = excluded.agent,
			comment = excluded.comment,
			tags = excluded.tags,
			day = excluded.day,
			updated_at = excluded.updated_at
		RETURNING ` + feedbackColumns

	qDeleteFeedback = `DELETE FROM feedback WHERE id IN (
		SELECT id FROM feedback WHERE updated_at < $1 ORDER BY updated_at LIMIT $2)`
)

// PutFeedback stores or replaces the feedback of a run and key (see
// store.Feedback).
func (s *Store) PutFeedback(ctx context.Context, f store.FeedbackEntry) (store.FeedbackEntry, error) {
	if f.Rating != store.RatingPositive && f.Rating != store.RatingNegative {
		return store.FeedbackEntry{}, fmt.Errorf("%s: put feedback of run %s: rating %d is not 1 or -1", s.d.Name, f.RunID, f.Rating)
	}
	if f.ID == "" {
		return store.FeedbackEntry{}, fmt.Errorf("%s: put feedback of run %s: no id", s.d.Name, f.RunID)
	}
	if f.UpdatedAt.IsZero() {
		f.UpdatedAt = Now()
	}
	tags := f.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return store.FeedbackEntry{}, fmt.Errorf("%s: put feedback of run %s: tags: %w", s.d.Name, f.RunID, err)
	}
	day := f.UpdatedAt.UTC().Format(DayLayout)
	out, err := s.scanFeedback(s.db.Write.QueryRow(ctx, qPutFeedback, f.ID, f.Tenant, f.RunID, f.Key, f.Agent, f.Rating,
		f.Comment, string(tagsJSON), day, s.d.Time(f.UpdatedAt)))
	if err != nil {
		return store.FeedbackEntry{}, fmt.Errorf("%s: put feedback of run %s: %w", s.d.Name, f.RunID, s.d.MapErr(err))
	}
	return out, nil
}

// ListFeedback returns a page of the tenant's feedback, newest first (see
// store.ListFeedbackParams). Limit <= 0 is DefaultListFeedback, more than
// MaxListFeedback is MaxListFeedback.
func (s *Store) ListFeedback(ctx context.Context, p store.ListFeedbackParams) ([]store.FeedbackEntry, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultListFeedback
	}
	limit = min(limit, MaxListFeedback)

	// Only the filters given are in the query text (at most 32 texts, each
	// prepared once per connection), so each gets a plan on the (tenant,
	// updated_at, id) index, or the (tenant, run_id, key) one for a run.
	var q strings.Builder
	q.WriteString(`SELECT ` + feedbackColumns + ` FROM feedback WHERE tenant = $1`)
	args := []any{p.Tenant}
	next := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if p.Agent != "" {
		q.WriteString(" AND agent = " + next(p.Agent))
	}
	if p.RunID != "" {
		q.WriteString(" AND run_id = " + next(p.RunID))
	}
	if p.Rating != 0 {
		q.WriteString(" AND rating = " + next(p.Rating))
	}
	if !p.From.IsZero() {
		q.WriteString(" AND updated_at >= " + next(s.d.Time(p.From)))
	}
	if !p.To.IsZero() {
		q.WriteString(" AND updated_at < " + next(s.d.Time(p.To)))
	}
	if p.After.ID != "" {
		// (updated_at, id) < (t, id), spelt out: both dialects plan it on
		// the index.
		t, id := next(s.d.Time(p.After.UpdatedAt)), next(p.After.ID)
		q.WriteString(" AND (updated_at < " + t + " OR (updated_at = " + t + " AND id < " + id + "))")
	}
	q.WriteString(" ORDER BY updated_at DESC, id DESC LIMIT " + next(limit))

	rows, err := s.db.Read.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("%s: list feedback: %w", s.d.Name, err)
	}
	defer rows.Close()
	out := []store.FeedbackEntry{}
	for rows.Next() {
		f, err := s.scanFeedback(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: list feedback: %w", s.d.Name, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list feedback: %w", s.d.Name, err)
	}
	return out, nil
}

// qSummarizeFeedback sums a tenant's feedback per agent and day; $2 is
// the agent (empty: all), $3 and $4 the bounds of updated_at (NULL: open).
func qSummarizeFeedback(timeType string) string {
	return `SELECT agent, day, COUNT(*), CAST(COALESCE(SUM(CASE WHEN rating > 0 THEN 1 ELSE 0 END), 0) AS bigint)
		FROM feedback
		WHERE tenant = $1 AND ($2 = '' OR agent = $2)
			AND (CAST($3 AS ` + timeType + `) IS NULL OR updated_at >= $3)
			AND (CAST($4 AS ` + timeType + `) IS NULL OR updated_at < $4)
		GROUP BY agent, day ORDER BY agent, day`
}

// SummarizeFeedback sums the tenant's feedback per agent and UTC day (see
// store.Feedback).
func (s *Store) SummarizeFeedback(ctx context.Context, p store.FeedbackSummaryParams) ([]store.FeedbackDay, error) {
	rows, err := s.db.Read.Query(ctx, qSummarizeFeedback(s.d.TimeType), p.Tenant, p.Agent, s.d.Time(p.From), s.d.Time(p.To))
	if err != nil {
		return nil, fmt.Errorf("%s: summarize feedback: %w", s.d.Name, err)
	}
	defer rows.Close()
	out := []store.FeedbackDay{}
	for rows.Next() {
		var d store.FeedbackDay
		if err := rows.Scan(&d.Agent, &d.Day, &d.Count, &d.Positive); err != nil {
			return nil, fmt.Errorf("%s: summarize feedback: %w", s.d.Name, err)
		}
		d.Negative = d.Count - d.Positive
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: summarize feedback: %w", s.d.Name, err)
	}
	return out, nil
}

// DeleteFeedback deletes up to limit feedback entries whose updated_at is
// before updatedBefore (see store.Retention).
func (s *Store) DeleteFeedback(ctx context.Context, updatedBefore time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "feedback", qDeleteFeedback, updatedBefore, limit)
}

func (s *Store) scanFeedback(row Row) (store.FeedbackEntry, error) {
	var (
		f    store.FeedbackEntry
		tags string
	)
	if err := row.Scan(&f.ID, &f.Tenant, &f.RunID, &f.Key, &f.Agent, &f.Rating, &f.PreviousRating, &f.Revision,
		&f.Comment, &tags, s.d.ScanTime(&f.CreatedAt), s.d.ScanTime(&f.UpdatedAt)); err != nil {
		return store.FeedbackEntry{}, err
	}
	f.Tags = []string{}
	if tags != "" {
		if err := json.Unmarshal([]byte(tags), &f.Tags); err != nil {
			return store.FeedbackEntry{}, fmt.Errorf("feedback %s: tags: %w", f.ID, err)
		}
	}
	return f, nil
}
