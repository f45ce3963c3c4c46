package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentd/agentd/internal/store/migrations"
)

// Migrations live in package migrations (migrations/postgres/NNNN_name.sql),
// next to their SQLite twins, with the same versions.

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
	var schema *string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if schema == nil {
		return errors.New("postgres: migrate: no schema of the search_path exists")
	}
	return s.Store.Migrate(ctx)
}

// LatestSchemaVersion is the version Migrate brings a database to.
func LatestSchemaVersion() int {
	v, _ := migrations.Latest(migrations.Postgres)
	return v
}
