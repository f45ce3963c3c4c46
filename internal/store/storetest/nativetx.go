package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// NativeTx is how ExerciseNativeTx uses a backend's native transaction
// TTx. Queries use $n placeholders, which both backends take.
type NativeTx[TTx any] struct {
	// Exec runs a statement on tx.
	Exec func(ctx context.Context, tx TTx, query string, args ...any) error
	// QueryString reads one text column of one row on tx; NULL is "".
	QueryString func(ctx context.Context, tx TTx, query string, args ...any) (string, error)
}

// ExerciseNativeTx checks that CreateRunTx and ReclaimExpiredRuns hand fn
// the backend's own transaction (a queue inserts its jobs in it): fn sees
// the store's rows, its writes commit and roll back with the store's, and
// the store is usable afterwards (SQLite's single write connection is free
// again).
func ExerciseNativeTx[TTx any](t *testing.T, newStore func(t *testing.T) Store[TTx], ntx NativeTx[TTx]) {
	t.Helper()
	const mark = `UPDATE runs SET error = 'from fn' WHERE id = $1`
	errorOf := func(t *testing.T, s Store[TTx], id string) string {
		t.Helper()
		r, err := s.GetRun(t.Context(), "t", id)
		require.NoError(t, err)
		return r.Error
	}

	t.Run("CreateRunTx", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s := newStore(t)

		// fn sees the run, and its writes commit with it.
		r := store.Run{ID: "r1", Tenant: "t", Agent: "a", Status: store.RunQueued}
		err := s.CreateRunTx(ctx, r, func(ctx context.Context, tx TTx) error {
			status, err := ntx.QueryString(ctx, tx, `SELECT status FROM runs WHERE id = $1`, r.ID)
			if err != nil {
				return err
			}
			require.Equal(t, "queued", status)
			return ntx.Exec(ctx, tx, mark, r.ID)
		})
		require.NoError(t, err)
		require.Equal(t, "from fn", errorOf(t, s, r.ID))

		// fn's error rolls back the run and fn's writes.
		r2 := store.Run{ID: "r2", Tenant: "t", Agent: "a", Status: store.RunQueued}
		boom := errors.New("boom")
		err = s.CreateRunTx(ctx, r2, func(ctx context.Context, tx TTx) error {
			if err := ntx.Exec(ctx, tx, mark, r2.ID); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.ErrorContains(t, err, "create run r2: in transaction: boom")
		_, err = s.GetRun(ctx, "t", r2.ID)
		require.ErrorIs(t, err, store.ErrNotFound)

		// A failed statement inside fn: the run is not written either.
		r3 := store.Run{ID: "r3", Tenant: "t", Agent: "a", Status: store.RunQueued}
		err = s.CreateRunTx(ctx, r3, func(ctx context.Context, tx TTx) error {
			return ntx.Exec(ctx, tx, `SELECT * FROM no_such_table`)
		})
		require.Error(t, err)
		_, err = s.GetRun(ctx, "t", r3.ID)
		require.ErrorIs(t, err, store.ErrNotFound)

		require.NoError(t, s.CreateRun(ctx, r2))
	})

	t.Run("ReclaimExpiredRuns", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s := newStore(t)
		t0 := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
		for _, id := range []string{"r1", "r2"} {
			require.NoError(t, s.CreateRun(ctx, store.Run{ID: id, Tenant: "t", Agent: "a", Status: store.RunQueued}))
			_, err := s.ClaimRun(ctx, store.ClaimRunParams{ID: id, Owner: "w1", LeaseUntil: t0.Add(time.Second), Now: t0})
			require.NoError(t, err)
		}
		// fn sees the cleared lease, and its writes commit with it.
		markRun := func(ctx context.Context, tx TTx, r store.Run) error {
			owner, err := ntx.QueryString(ctx, tx, `SELECT lease_owner FROM runs WHERE id = $1`, r.ID)
			if err != nil {
				return err
			}
			require.Empty(t, owner, "fn sees the cleared lease")
			return ntx.Exec(ctx, tx, mark, r.ID)
		}

		// fn's writes roll back with the reclaim.
		boom := errors.New("boom")
		_, err := s.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), func(ctx context.Context, tx TTx, r store.Run) error {
			if err := markRun(ctx, tx, r); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.ErrorContains(t, err, "reclaim expired runs: run r")
		for _, id := range []string{"r1", "r2"} {
			require.Empty(t, errorOf(t, s, id), "fn's writes rolled back")
		}

		n, err := s.ReclaimExpiredRuns(ctx, t0.Add(time.Minute), markRun)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		for _, id := range []string{"r1", "r2"} {
			require.Equal(t, "from fn", errorOf(t, s, id))
		}
		_, err = s.ClaimRun(ctx, store.ClaimRunParams{ID: "r1", Owner: "w2", LeaseUntil: t0.Add(2 * time.Minute), Now: t0.Add(time.Minute)})
		require.NoError(t, err)
	})
}
