package sqlite

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A restore whose copy fails (here the temporary file cannot be created:
// a directory holds its name; a full disk does the same) leaves the store
// where it was, byte for byte, and keeps no second copy.
func TestRestoreCopyFailureLeavesTheStore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "agentd.db")
	st, err := Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, st.Migrate(ctx))
	dst := filepath.Join(dir, "backup.db")
	_, err = Backup(ctx, path, dst, false)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	require.NoError(t, os.MkdirAll(filepath.Join(path+".restore-tmp", "x"), 0o700))
	_, err = Restore(ctx, path, dst, true)
	require.ErrorContains(t, err, "the store is unchanged")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(before, after), "the store changed")
	kept, _ := filepath.Glob(path + ".before-restore-*")
	require.Empty(t, kept)
	_, err = Verify(ctx, path)
	require.NoError(t, err)
}
