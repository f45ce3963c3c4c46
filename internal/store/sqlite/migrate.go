package sqlite

import "github.com/agentd/agentd/internal/store/migrations"

// Migrations live in package migrations (migrations/sqlite/NNNN_name.sql),
// next to their PostgreSQL twins, and are applied in order of NNNN, each in
// its own BEGIN IMMEDIATE transaction (sqlstore.Store.Migrate).

// LatestSchemaVersion is the version Migrate brings a database to.
func LatestSchemaVersion() int {
	v, _ := migrations.Latest(migrations.SQLite)
	return v
}
