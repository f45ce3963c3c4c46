package store

import (
	"context"
	"time"
)

// Ratings of a FeedbackEntry.
const (
	RatingPositive = 1
	RatingNegative = -1
)

// FeedbackEntry is a person's rating of a run's answer: one per run and API
// key, a later one by the same key replaces it.
type FeedbackEntry struct {
	// ID is "fb_" and a UUIDv7, assigned by the caller of the first
	// PutFeedback; a replacement keeps the stored one.
	ID     string
	Tenant string
	RunID  string
	// Key is the id of the API key that gave it; "" with authentication
	// off.
	Key string
	// Agent is the run's agent.
	Agent string
	// Rating is RatingPositive or RatingNegative.
	Rating  int
	Comment string
	// Tags are free labels; never nil after a read.
	Tags []string
	// CreatedAt is when the first feedback of the run and key was given;
	// UpdatedAt when the current rating was (CreatedAt for a first one).
	// Zero UpdatedAt: PutFeedback sets now.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Revision is 1 for a first feedback and grows by one with every
	// replacement (set by the store).
	Revision int
	// PreviousRating is the rating the last replacement overwrote; 0 for
	// a first feedback (set by the store).
	PreviousRating int
}

// ListFeedbackParams filter and page ListFeedback. Entries come newest
// first: by UpdatedAt, then ID, both descending.
type ListFeedbackParams struct {
	Tenant string
	// Agent, RunID and Rating filter when not empty / not 0.
	Agent  string
	RunID  string
	Rating int
	// From (inclusive) and To (exclusive) bound UpdatedAt; zero: open.
	From, To time.Time
	// Limit caps the page; <= 0 means 50. Backends cap it at 1000.
	Limit int
	// After, when its ID is not empty, returns only entries that sort
	// after it: (UpdatedAt, ID) below the last entry of the previous page.
	After FeedbackCursor
}

// FeedbackCursor is where a page of ListFeedback ended: the UpdatedAt and
// ID of its last entry.
type FeedbackCursor struct {
	UpdatedAt time.Time
	ID        string
}

// FeedbackSummaryParams select the entries SummarizeFeedback sums.
type FeedbackSummaryParams struct {
	Tenant string
	// Agent filters when not empty.
	Agent string
	// From (inclusive) and To (exclusive) bound UpdatedAt; zero: open.
	From, To time.Time
}

// FeedbackDay sums one agent's feedback of one UTC day (of UpdatedAt,
// "2006-01-02"): every run and key counts once, with its current rating.
type FeedbackDay struct {
	Agent    string
	Day      string
	Count    int64
	Positive int64
	Negative int64
}

// Feedback stores people's ratings of runs. Every backend implements it
// (storetest checks it). Old entries go with Retention.DeleteFeedback.
type Feedback interface {
	// PutFeedback stores f, or replaces the entry of the same tenant, run
	// and key: the stored entry keeps its ID and CreatedAt and takes f's
	// rating, comment, tags, agent and UpdatedAt (zero: now), its Revision
	// grows by one and PreviousRating is the rating it replaced. It is
	// atomic: concurrent puts of one run and key leave one entry whose
	// Revision counts them all. It returns the stored entry. A rating other
	// than RatingPositive or RatingNegative, or an empty ID, is an error.
	PutFeedback(ctx context.Context, f FeedbackEntry) (FeedbackEntry, error)
	// ListFeedback returns a page of the tenant's entries (see
	// ListFeedbackParams); an empty (non-nil) slice when there are none.
	ListFeedback(ctx context.Context, p ListFeedbackParams) ([]FeedbackEntry, error)
	// SummarizeFeedback sums the tenant's entries per agent and UTC day,
	// ordered by agent, then day; an empty (non-nil) slice when there are
	// none.
	SummarizeFeedback(ctx context.Context, p FeedbackSummaryParams) ([]FeedbackDay, error)
}
