package sqlite

import "database/sql"

// WriteDB returns the single-connection write pool, for River's SQLite
// driver: River wants one connection on SQLite (to avoid SQLITE_BUSY), and
// sharing the store's lets a run row and its queue job be inserted in one
// transaction (CreateRunTx hands fn a *sql.Tx of this pool).
func (s *Store) WriteDB() *sql.DB { return s.write }
