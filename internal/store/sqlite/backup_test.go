package sqlite

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBackupVerifyRestore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "agentd.db")
	st, err := Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, st.Migrate(ctx))

	// An online backup of the open store verifies.
	dst := filepath.Join(dir, "backup.db")
	info, err := Backup(ctx, path, dst, false)
	require.NoError(t, err)
	require.Regexp(t, fmt.Sprintf(`^schema version %d, 0 conversations, 0 runs, \d+ bytes$`, LatestSchemaVersion()), info)
	_, err = Backup(ctx, path, dst, false)
	require.ErrorContains(t, err, "exists (use -force")
	_, err = Backup(ctx, path, dst, true)
	require.NoError(t, err)
	_, err = Backup(ctx, path, path, true)
	require.ErrorContains(t, err, "is the store itself")

	// Restore refuses a store another connection has open.
	_, err = Restore(ctx, path, dst, true)
	require.ErrorIs(t, err, ErrInUse)
	require.NoError(t, st.Close())

	res, err := Restore(ctx, path, dst, true)
	require.NoError(t, err)
	require.Equal(t, info, res.Info)
	require.FileExists(t, res.Kept)
	require.FileExists(t, path)
	_, err = Verify(ctx, path)
	require.NoError(t, err)
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()

	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, []byte("not a database at all, not even close"), 0o600))
	_, err := Verify(ctx, junk)
	require.Error(t, err)

	_, err = Verify(ctx, dir)
	require.ErrorContains(t, err, "not a regular file")

	// A SQLite file that is not an agentd store.
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", backupDSN(other, "mode=rwc"))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `CREATE TABLE t (x)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = Verify(ctx, other)
	require.ErrorContains(t, err, "not an agentd store")

	// A store from a newer agentd.
	newer := filepath.Join(dir, "newer.db")
	st, err := Open(ctx, newer)
	require.NoError(t, err)
	require.NoError(t, st.Migrate(ctx))
	require.NoError(t, st.Close())
	db, err = sql.Open("sqlite", backupDSN(newer, "mode=rw"))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE schema_migrations SET version = ? WHERE version = ?`, LatestSchemaVersion()+1, LatestSchemaVersion())
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = Verify(ctx, newer)
	require.ErrorContains(t, err, "is newer than this agentd knows")
}
