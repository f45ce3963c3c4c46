package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Feedback the suite pins down beyond its doc comments:
//   - every backend implements store.Feedback and Retention.DeleteFeedback;
//   - one entry per tenant, run and key: the same run rated by another
//     key, or the same run id in another tenant, is another entry;
//   - times round-trip in UTC with microsecond precision; Tags round-trip
//     in order (nil reads back as an empty slice);
//   - ListFeedback is tenant-scoped, newest UpdatedAt first (ties by ID,
//     descending), filters by agent, rating, From (inclusive) and To
//     (exclusive), and pages with After without skipping or repeating an
//     entry, also across equal UpdatedAt;
//   - a replaced entry moves to its new UpdatedAt in lists and summaries
//     and counts once there, with its new rating;
//   - SummarizeFeedback groups by agent and UTC day of UpdatedAt, whatever
//     the zone of the time written;
//   - DeleteFeedback deletes entries whose UpdatedAt is before the cutoff,
//     at most limit per call; a limit <= 0 is an error.

func exerciseFeedback[TTx any](t *testing.T, setup setupFunc[TTx]) {
	fb := func(t *testing.T, s Store[TTx]) store.Feedback {
		t.Helper()
		f, ok := s.(store.Feedback)
		require.True(t, ok, "%T does not implement store.Feedback", s)
		return f
	}
	entry := func(tenant, run, key, agent string, rating int, at time.Time) store.FeedbackEntry {
		return store.FeedbackEntry{ID: newID("fb"), Tenant: tenant, RunID: run, Key: key, Agent: agent,
			Rating: rating, UpdatedAt: at}
	}
	put := func(t *testing.T, f store.Feedback, e store.FeedbackEntry) store.FeedbackEntry {
		t.Helper()
		got, err := f.PutFeedback(t.Context(), e)
		require.NoError(t, err)
		return got
	}
	ids := func(es []store.FeedbackEntry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}

	t.Run("PutAndReplace", func(t *testing.T) {
		s, ctx := setup(t)
		f := fb(t, s)
		t1 := at("2025-06-01T10:00:00.000001Z")
		first := entry("t1", "run_1", "key_1", "a1", store.RatingNegative, t1)
		first.Comment, first.Tags = "wrong answer", []string{"accuracy", "tone, too"}
		got := put(t, f, first)
		require.Equal(t, first.ID, got.ID)
		require.Equal(t, "t1", got.Tenant)
		require.Equal(t, "run_1", got.RunID)
		require.Equal(t, "key_1", got.Key)
		require.Equal(t, "a1", got.Agent)
		require.Equal(t, store.RatingNegative, got.Rating)
		require.Equal(t, "wrong answer", got.Comment)
		require.Equal(t, []string{"accuracy", "tone, too"}, got.Tags)
		require.Equal(t, utc(t1), got.CreatedAt)
		require.Equal(t, utc(t1), got.UpdatedAt)
		require.Equal(t, time.UTC, got.UpdatedAt.Location())
		require.Equal(t, 1, got.Revision)
		require.Equal(t, 0, got.PreviousRating)

		// The same key again: replaced, id and created_at kept.
		t2 := t1.Add(time.Hour)
		again := entry("t1", "run_1", "key_1", "a1", store.RatingPositive, t2)
		got = put(t, f, again)
		require.Equal(t, first.ID, got.ID, "a replacement keeps the stored id")
		require.Equal(t, store.RatingPositive, got.Rating)
		require.Equal(t, "", got.Comment, "a replacement replaces the comment")
		require.Equal(t, []string{}, got.Tags)
		require.Equal(t, utc(t1), got.CreatedAt)
		require.Equal(t, utc(t2), got.UpdatedAt)
		require.Equal(t, 2, got.Revision)
		require.Equal(t, store.RatingNegative, got.PreviousRating)

		// Another key on the same run, and the same run id in another
		// tenant: entries of their own.
		other := put(t, f, entry("t1", "run_1", "key_2", "a1", store.RatingNegative, t2))
		require.NotEqual(t, first.ID, other.ID)
		require.Equal(t, 1, other.Revision)
		tenant2 := put(t, f, entry("t2", "run_1", "key_1", "a1", store.RatingNegative, t2))
		require.Equal(t, 1, tenant2.Revision)

		list, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t1"})
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.ElementsMatch(t, []string{first.ID, other.ID}, ids(list))

		// A zero UpdatedAt is now.
		before := time.Now()
		now := put(t, f, entry("t1", "run_2", "", "a1", store.RatingPositive, time.Time{}))
		requireRecent(t, before, time.Now(), now.UpdatedAt)
		require.Equal(t, now.UpdatedAt, now.CreatedAt)
		require.Equal(t, "", now.Key)
	})

	t.Run("BadInput", func(t *testing.T) {
		s, ctx := setup(t)
		f := fb(t, s)
		for _, r := range []int{0, 2, -2} {
			_, err := f.PutFeedback(ctx, entry("t1", "run_1", "", "a1", r, time.Time{}))
			require.Error(t, err, "rating %d", r)
		}
		e := entry("t1", "run_1", "", "a1", store.RatingPositive, time.Time{})
		e.ID = ""
		_, err := f.PutFeedback(ctx, e)
		require.Error(t, err)
		list, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t1"})
		require.NoError(t, err)
		require.NotNil(t, list)
		require.Empty(t, list, "nothing stored")
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		s, ctx := setup(t)
		f := fb(t, s)
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := store.RatingPositive
				if i%2 == 1 {
					r = store.RatingNegative
				}
				_, err := f.PutFeedback(ctx, entry("t1", "run_c", "key_c", "a1", r, time.Time{}))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		list, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t1"})
		require.NoError(t, err)
		require.Len(t, list, 1, "one entry per run and key")
		require.Equal(t, n, list[0].Revision, "every put counted")
	})

	t.Run("ListFiltersAndPages", func(t *testing.T) {
		s, ctx := setup(t)
		f := fb(t, s)
		base := at("2025-06-01T00:00:00Z")
		var want []store.FeedbackEntry
		for i := range 9 {
			r := store.RatingPositive
			if i%3 == 0 {
				r = store.RatingNegative
			}
			agent := "a1"
			if i%2 == 1 {
				agent = "a2"
			}
			// Pairs of entries share a time: the cursor must tell them
			// apart by id.
			e := put(t, f, entry("t1", newID("run"), "", agent, r, base.Add(time.Duration(i/2)*time.Minute)))
			want = append(want, e)
		}
		put(t, f, entry("t2", newID("run"), "", "a1", store.RatingPositive, base))
		// Newest first; ties (same UpdatedAt) by id, descending.
		slices.SortFunc(want, func(a, b store.FeedbackEntry) int {
			return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), cmp.Compare(b.ID, a.ID))
		})
		wantIDs := ids(want)

		all, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t1"})
		require.NoError(t, err)
		require.Equal(t, wantIDs, ids(all))

		// Pages of 2 cover the list exactly once.
		var paged []string
		var after store.FeedbackCursor
		for range 10 {
			page, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t1", Limit: 2, After: after})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			require.LessOrEqual(t, len(page), 2)
			paged = append(paged, ids(page)...)
			last := page[len(page)-1]
			after = store.FeedbackCursor{UpdatedAt: last.UpdatedAt, ID: last.ID}
		}
		require.Equal(t, wantIDs, paged)

		count := func(p store.ListFeedbackParams) int {
			t.Helper()
			p.Tenant = "t1"
			es, err := f.ListFeedback(ctx, p)
			require.NoError(t, err)
			for _, e := range es {
				require.Equal(t, "t1", e.Tenant)
				if p.Agent != "" {
					require.Equal(t, p.Agent, e.Agent)
				}
				if p.Rating != 0 {
					require.Equal(t, p.Rating, e.Rating)
				}
				if p.RunID != "" {
					require.Equal(t, p.RunID, e.RunID)
				}
				if !p.From.IsZero() {
					require.False(t, e.UpdatedAt.Before(p.From))
				}
				if !p.To.IsZero() {
					require.True(t, e.UpdatedAt.Before(p.To))
				}
			}
			return len(es)
		}
		require.Equal(t, 5, count(store.ListFeedbackParams{Agent: "a1"}))
		require.Equal(t, 4, count(store.ListFeedbackParams{Agent: "a2"}))
		require.Equal(t, 3, count(store.ListFeedbackParams{Rating: store.RatingNegative}))
		require.Equal(t, 6, count(store.ListFeedbackParams{Rating: store.RatingPositive}))
		require.Equal(t, 2, count(store.ListFeedbackParams{Agent: "a1", Rating: store.RatingNegative}))
		// Minutes 1 and 2: entries 2..5; To is exclusive, From inclusive.
		require.Equal(t, 4, count(store.ListFeedbackParams{From: base.Add(time.Minute), To: base.Add(3 * time.Minute)}))
		require.Equal(t, 0, count(store.ListFeedbackParams{Agent: "nobody"}))
		require.Equal(t, 1, count(store.ListFeedbackParams{RunID: want[3].RunID}))
		require.Equal(t, 0, count(store.ListFeedbackParams{RunID: want[3].RunID, Rating: -want[3].Rating}))
		require.Equal(t, 3, count(store.ListFeedbackParams{Limit: 3}))
	})

	t.Run("Summary", func(t *testing.T) {
		s, ctx := setup(t)
		f := fb(t, s)
		// 23:30 CEST on June 1st is 21:30 UTC: still June 1st in UTC.
		d1 := at("2025-06-01T21:30:00Z")
		d2 := at("2025-06-02T22:30:00Z") // June 3rd 00:30 CEST, June 2nd UTC
		put(t, f, entry("t1", "r1", "", "a1", store.RatingPositive, d1))
		put(t, f, entry("t1", "r2", "", "a1", store.RatingPositive, d1))
		put(t, f, entry("t1", "r3", "", "a1", store.RatingNegative, d1))
		put(t, f, entry("t1", "r4", "", "a1", store.RatingNegative, d2))
		put(t, f, entry("t1", "r5", "", "a2", store.RatingNegative, d2))
		put(t, f, entry("t2", "r9", "", "a1", store.RatingNegative, d1)) // another tenant
		// r2 replaced on day 2 with a negative rating: it leaves day 1.
		put(t, f, entry("t1", "r2", "", "a1", store.RatingNegative, d2))

		got, err := f.SummarizeFeedback(ctx, store.FeedbackSummaryParams{Tenant: "t1"})
		require.NoError(t, err)
		require.Equal(t, []store.FeedbackDay{
			{Agent: "a1", Day: "2025-06-01", Count: 2, Positive: 1, Negative: 1},
			{Agent: "a1", Day: "2025-06-02", Count: 2, Positive: 0, Negative: 2},
			{Agent: "a2", Day: "2025-06-02", Count: 1, Positive: 0, Negative: 1},
		}, got)

		got, err = f.SummarizeFeedback(ctx, store.FeedbackSummaryParams{Tenant: "t1", Agent: "a2"})
		require.NoError(t, err)
		require.Equal(t, []store.FeedbackDay{{Agent: "a2", Day: "2025-06-02", Count: 1, Negative: 1}}, got)

		// From inclusive, To exclusive.
		got, err = f.SummarizeFeedback(ctx, store.FeedbackSummaryParams{Tenant: "t1", From: d2, To: d2.Add(time.Microsecond)})
		require.NoError(t, err)
		require.Len(t, got, 2)
		got, err = f.SummarizeFeedback(ctx, store.FeedbackSummaryParams{Tenant: "t1", To: d2})
		require.NoError(t, err)
		require.Equal(t, []store.FeedbackDay{{Agent: "a1", Day: "2025-06-01", Count: 2, Positive: 1, Negative: 1}}, got)

		got, err = f.SummarizeFeedback(ctx, store.FeedbackSummaryParams{Tenant: "nobody"})
		require.NoError(t, err)
		require.NotNil(t, got)
		require.Empty(t, got)
	})

	t.Run("Retention", func(t *testing.T) {
		s, ctx := setup(t)
		f := fb(t, s)
		r, ok := s.(store.Retention)
		require.True(t, ok, "%T does not implement store.Retention", s)
		now := time.Now().UTC().Truncate(time.Microsecond)
		cutoff := now.Add(-90 * 24 * time.Hour)
		for range 3 {
			put(t, f, entry("t1", newID("run"), "", "a1", store.RatingPositive, cutoff.Add(-time.Hour)))
		}
		kept := put(t, f, entry("t1", newID("run"), "", "a1", store.RatingPositive, cutoff))
		// An old entry replaced recently is young again.
		old := put(t, f, entry("t1", "run_old", "", "a1", store.RatingPositive, cutoff.Add(-time.Hour)))
		replaced := put(t, f, entry("t1", "run_old", "", "a1", store.RatingNegative, now))
		require.Equal(t, old.ID, replaced.ID)

		_, err := r.DeleteFeedback(ctx, cutoff, 0)
		require.Error(t, err)
		n, err := r.DeleteFeedback(ctx, cutoff, 2)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		n, err = r.DeleteFeedback(ctx, cutoff, 2)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = r.DeleteFeedback(ctx, cutoff, 2)
		require.NoError(t, err)
		require.Equal(t, 0, n)
		list, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t1"})
		require.NoError(t, err)
		require.ElementsMatch(t, []string{kept.ID, replaced.ID}, ids(list))
	})
}

// benchmarkFeedback measures a feedback write (a new run's, and a
// replacement), a page of the list and a 30-day summary over 10,000
// entries of 5 agents.
func benchmarkFeedback(b *testing.B, newStore func(tb testing.TB) store.Store) {
	ctx := context.Background()
	s := newStore(b)
	f, ok := s.(store.Feedback)
	require.True(b, ok, "%T does not implement store.Feedback", s)
	start := time.Now().UTC().Add(-30 * 24 * time.Hour)
	for i := range 10000 {
		r := store.RatingPositive
		if i%4 == 0 {
			r = store.RatingNegative
		}
		_, err := f.PutFeedback(ctx, store.FeedbackEntry{ID: fmt.Sprintf("fb_seed_%05d", i), Tenant: "t",
			RunID: fmt.Sprintf("run_seed_%05d", i), Agent: fmt.Sprintf("agent-%d", i%5), Rating: r,
			UpdatedAt: start.Add(time.Duration(i) * 4 * time.Minute)})
		require.NoError(b, err)
	}
	b.Run("PutNew", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			if _, err := f.PutFeedback(ctx, store.FeedbackEntry{ID: fmt.Sprintf("fb_new_%d", i), Tenant: "t",
				RunID: fmt.Sprintf("run_new_%d", i), Agent: "agent-0", Rating: store.RatingPositive,
				Comment: "helpful", Tags: []string{"fast"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PutReplace", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			if _, err := f.PutFeedback(ctx, store.FeedbackEntry{ID: "fb_x", Tenant: "t", RunID: "run_seed_00001",
				Agent: "agent-1", Rating: 1 - 2*(i%2)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListPage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			es, err := f.ListFeedback(ctx, store.ListFeedbackParams{Tenant: "t", Agent: "agent-2", Limit: 50})
			if err != nil || len(es) != 50 {
				b.Fatal(err, len(es))
			}
		}
	})
	b.Run("Summary30Days", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			days, err := f.SummarizeFeedback(ctx, store.FeedbackSummaryParams{Tenant: "t", From: start, To: start.Add(31 * 24 * time.Hour)})
			if err != nil || len(days) < 5 {
				b.Fatal(err, len(days))
			}
		}
	})
}
