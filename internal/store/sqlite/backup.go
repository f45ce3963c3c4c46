package sqlite

// Backup, Restore and Verify: an online, consistent copy of the store
// (VACUUM INTO) and its way back (agentd backup / agentd restore).
// PostgreSQL stores use pg_dump / pg_restore instead
// (docs/runbooks/restore-from-backup.md).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrInUse: Restore found the store open by another process.
var ErrInUse = errors.New("store in use")

// backupDSN is a file: URI for path with params.
func backupDSN(path string, params ...string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + strings.Join(params, "&")
}

// Backup writes a consistent copy of the live store at src to dst while
// agentd keeps reading and writing it, verifies the copy and returns a
// one-line summary of it. An existing dst is replaced only with force.
func Backup(ctx context.Context, src, dst string, force bool) (string, error) {
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("backup: store %s: %w", src, err)
	}
	if _, err := os.Stat(dst); err == nil && !force {
		return "", fmt.Errorf("backup: %s exists (use -force to replace it)", dst)
	}
	if abs, _ := filepath.Abs(dst); backupSameFile(abs, src) {
		return "", fmt.Errorf("backup: %s is the store itself", dst)
	}
	// mode=rw: never create an empty database where the store should be.
	db, err := sql.Open("sqlite", backupDSN(src, "mode=rw", "_pragma=busy_timeout(10000)"))
	if err != nil {
		return "", fmt.Errorf("backup: open %s: %w", src, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	// VACUUM INTO writes a consistent snapshot (one read transaction) of the
	// live database, WAL included. It refuses an existing non-empty file,
	// so it writes to a temporary name beside dst, which is then fsynced
	// and renamed over dst.
	tmp := dst + ".tmp-" + fmt.Sprint(os.Getpid())
	_ = os.Remove(tmp)
	defer os.Remove(tmp) // no-op after the rename
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return "", fmt.Errorf("backup: VACUUM INTO %s: %w", tmp, err)
	}
	info, err := Verify(ctx, tmp)
	if err != nil {
		return "", fmt.Errorf("backup: the copy does not verify: %w", err)
	}
	if err := backupSyncFile(tmp); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	backupSyncDir(filepath.Dir(dst))
	return info, nil
}

// Restored is what Restore did.
type Restored struct {
	// Info summarises the restored database (as Verify).
	Info string
	// Kept is where the replaced store was kept ("" if none).
	Kept string
}

// Restore replaces the store file at path with the backup at from. agentd
// must be stopped: Restore fails with ErrInUse while another process has
// the store open. With keepOld the replaced store is kept as
// PATH.before-restore-TIMESTAMP.
func Restore(ctx context.Context, path, from string, keepOld bool) (Restored, error) {
	if abs, _ := filepath.Abs(from); backupSameFile(abs, path) {
		return Restored{}, fmt.Errorf("restore: %s is the store itself", from)
	}
	info, err := Verify(ctx, from)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %s is not a usable agentd backup: %w", from, err)
	}
	res := Restored{Info: info}
	exists := false
	if _, err := os.Stat(path); err == nil {
		// Refuse while anyone has the store open, then fold its WAL into
		// it (a checkpoint on close) so the kept copy is one whole file.
		if err := checkpointIdle(ctx, path); err != nil {
			return Restored{}, err
		}
		exists = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return Restored{}, fmt.Errorf("restore: store %s: %w", path, err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return Restored{}, fmt.Errorf("restore: %w", err)
		}
	}
	// Copy to a temporary file beside the store, fsync, rename over the
	// store: a crash leaves either the old or the new file, never half.
	// The copy comes first: a copy that fails (a full disk) leaves the
	// store where it was, untouched (found by agentd chaos disk: the store
	// used to be moved aside first, and a failed copy left no store, so
	// the next start began an empty one).
	tmp := path + ".restore-tmp"
	if err := backupCopyFile(from, tmp); err != nil {
		_ = os.Remove(tmp)
		return Restored{}, fmt.Errorf("restore: %w (the store is unchanged)", err)
	}
	if exists && keepOld {
		// A second name for the old store (no copy, no space): the
		// rename below replaces only the store's name.
		res.Kept = path + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Link(path, res.Kept); err != nil {
			_ = os.Remove(tmp)
			return Restored{}, fmt.Errorf("restore: keep the old store: %w (the store is unchanged)", err)
		}
	}
	// WAL and shared-memory files belong to the replaced database: a stale
	// WAL applied to the restored file would corrupt it.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(tmp)
			return Restored{}, fmt.Errorf("restore: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	backupSyncDir(filepath.Dir(path))
	return res, nil
}

// checkpointIdle fails with ErrInUse if another connection has the
// store open. In WAL mode every open connection holds a shared lock on the
// database file for as long as it is open, so an exclusive lock can only
// be had while no agentd (nor sqlite3 shell) has the file open. Closing
// the connection then checkpoints the WAL into the file and removes it.
func checkpointIdle(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", backupDSN(path, "mode=rw", "_pragma=busy_timeout(2000)",
		"_pragma=locking_mode(EXCLUSIVE)"))
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN EXCLUSIVE`); err != nil {
		if backupBusy(err) {
			return fmt.Errorf("restore: %w: %s is open in another process; stop agentd (every serve, migrate and backup on this store) first",
				ErrInUse, path)
		}
		return fmt.Errorf("restore: lock %s: %w", path, err)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("restore: lock %s: %w", path, err)
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("restore: checkpoint %s: %w", path, err)
	}
	return nil
}

func backupBusy(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked") ||
		strings.Contains(s, "(5)") || strings.Contains(s, "(517)")
}

// Verify opens the SQLite database at path read-only, runs quick_check and reads what an
// agentd store has; it returns a one-line summary.
func Verify(ctx context.Context, path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	db, err := sql.Open("sqlite", backupDSN(path, "mode=ro", "_pragma=busy_timeout(5000)"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil {
		return "", fmt.Errorf("quick_check: %w", err)
	}
	if check != "ok" {
		return "", fmt.Errorf("quick_check: %s", check)
	}
	var version int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return "", fmt.Errorf("not an agentd store (schema_migrations: %w)", err)
	}
	if latest := LatestSchemaVersion(); version > latest {
		return "", fmt.Errorf("schema version %d is newer than this agentd knows (%d): restore with the agentd version that wrote it", version, latest)
	}
	var convs, runs int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM runs)`).Scan(&convs, &runs); err != nil {
		return "", fmt.Errorf("count rows: %w", err)
	}
	return fmt.Sprintf("schema version %d, %d conversations, %d runs, %d bytes", version, convs, runs, st.Size()), nil
}

func backupCopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

func backupSyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename durable; best effort (not every OS allows it).
func backupSyncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
}

// sameFile reports whether a and b name the same existing file.
func backupSameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(sa, sb)
}
