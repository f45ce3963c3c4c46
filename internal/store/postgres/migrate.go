package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentd/agentd/internal/store/migrations"
)

// Migrations live in package migrations (migrations/postgres/NNNN_name.sql),
// next to their SQLite twins, with the same versions.

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint      NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// lockMigrate is the transaction-level advisory lock Migrate holds: the
// two-key form, with the current schema as the second key, so that stores
// in different schemas of one database do not wait for each other.
const lockMigrate = `SELECT pg_advisory_xact_lock(hashtext('agentd.store.migrate'), hashtext(current_schema()))`

// Migrate applies the migrations the schema lacks, in order, all in one
// transaction together with their schema_migrations rows: either all of
// them are applied or none. It is idempotent and safe to run concurrently
// from several Stores or processes: the transaction first takes an advisory
// lock (pg_advisory_xact_lock, released at commit), so one of them applies
// the migrations and the others, once they get the lock, find them applied.
//
// The tables go into the first schema of the search_path (current_schema()),
// which must exist.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations.For(migrations.Postgres)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var schema *string
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return err
		}
		if schema == nil {
			return fmt.Errorf("no schema of the search_path exists")
		}
		if _, err := tx.Exec(ctx, lockMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, createSchemaMigrations); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		done := map[int64]bool{}
		for _, v := range applied {
			done[v] = true
		}
		for _, m := range ms {
			if done[int64(m.Version)] {
				continue
			}
			// No arguments: pgx sends it with the simple protocol, which
			// allows several statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.Version); err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// SchemaVersion returns the highest applied migration version, 0 for a
// schema that was never migrated.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx,
		`SELECT to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := s.pool.QueryRow(ctx,
		`SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	return v, nil
}

// LatestSchemaVersion is the version Migrate brings a database to.
func LatestSchemaVersion() int {
	v, _ := migrations.Latest(migrations.Postgres)
	return v
}
