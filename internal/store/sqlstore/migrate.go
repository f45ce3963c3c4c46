package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store/migrations"
)

// Migrate applies the migrations the database lacks (package migrations,
// the dialect's directory), in order, each together with its
// schema_migrations row. It is idempotent and safe to run concurrently from
// several Stores or processes: a migrating transaction holds the dialect's
// lock (Dialect.MigrateLock; SQLite's BEGIN IMMEDIATE), so one of them
// applies a migration and the others, once they get the lock, find it
// applied. Dialect.MigrateAtomic says whether all of them are applied in
// one transaction (all or none) or each in its own.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations.For(s.d.Name) // the dialects are named alike
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", s.d.Name, err)
	}
	if s.d.MigrateAtomic {
		err = s.migrateRetrying(ctx, ms)
	} else {
		for _, m := range ms {
			if err = s.migrateRetrying(ctx, []migrations.Migration{m}); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", s.d.Name, err)
	}
	return nil
}

// migrateBusyFor bounds how long Migrate waits out a lock another migrator
// (or writer) holds, beyond the backend's own wait.
const migrateBusyFor = 2 * time.Minute

// migrateRetrying is migrate, tried again while the database is busy
// (Dialect.Busy) for up to migrateBusyFor: several processes starting on
// one SQLite file on a loaded machine may each wait longer than
// busy_timeout for the others' migrations.
func (s *Store) migrateRetrying(ctx context.Context, ms []migrations.Migration) error {
	deadline := time.Now().Add(migrateBusyFor)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := s.migrate(ctx, ms)
		if err == nil || s.d.Busy == nil || !s.d.Busy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// migrate applies those of ms not applied yet in one transaction.
func (s *Store) migrate(ctx context.Context, ms []migrations.Migration) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	if s.d.MigrateLock != "" {
		if err := tx.Script(ctx, s.d.MigrateLock); err != nil {
			return err
		}
	}
	if err := tx.Script(ctx, s.d.CreateSchemaMigrations); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return err
	}
	done := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		done[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if err := tx.Script(ctx, m.SQL); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
			m.Version, s.d.Time(Now())); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return tx.Commit(ctx)
}

// SchemaVersion returns the highest applied migration version, 0 for a
// database that was never migrated.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.db.Read.QueryRow(ctx, s.d.HasSchemaMigrations).Scan(&exists); err != nil {
		return 0, fmt.Errorf("%s: schema version: %w", s.d.Name, err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := s.db.Read.QueryRow(ctx,
		`SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("%s: schema version: %w", s.d.Name, err)
	}
	return v, nil
}
