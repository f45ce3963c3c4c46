package main

// agentd backup / agentd restore: an online, consistent copy of the SQLite
// store (VACUUM INTO) and its way back. PostgreSQL stores are refused with a
// pointer to pg_dump / pg_restore (docs/runbooks/restore-from-backup.md).

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// errStoreInUse: restore found the store open by another process.
var errStoreInUse = errors.New("store in use")

// loadConfigArgs is loadConfigFlags for commands that take positional
// arguments: it returns them instead of refusing them.
func loadConfigArgs(name string, args []string, stderr io.Writer, environ []string, extra func(*flag.FlagSet)) (*config.Config, []string, error) {
	fs := flag.NewFlagSet("agentd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", getenv(environ, "AGENTD_CONFIG"), "config file (YAML)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg, err := config.Load(*path, environ)
	if err != nil {
		return nil, nil, err
	}
	return cfg, fs.Args(), nil
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// sqliteStorePath returns the file of a sqlite:// store URL, or an error
// that says what to do for PostgreSQL.
func sqliteStorePath(rawURL, verb string) (string, error) {
	if isPostgresURL(rawURL) {
		return "", fmt.Errorf("store %s is PostgreSQL: agentd %s handles the SQLite store only; use "+
			"pg_dump -Fc (backup) and pg_restore (restore) with your database's tooling, "+
			"see docs/runbooks/restore-from-backup.md", redactURL(rawURL), verb)
	}
	p, err := sqlite.ParseURL(rawURL)
	if err != nil {
		return "", fmt.Errorf("store.url: %w", err)
	}
	return p, nil
}

// sqliteDSN is a file: URI for path with params (escaping as the store does).
func sqliteDSN(path string, params ...string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + strings.Join(params, "&")
}

// cmdBackup is `agentd backup [-config FILE] [-force] PATH`.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	var force bool
	cfg, rest, err := loadConfigArgs("backup", args, stderr, environ, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "replace PATH if it exists")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: agentd backup [-config FILE] [-force] PATH", errUsage)
	}
	dst := rest[0]
	src, err := sqliteStorePath(cfg.Store.URL, "backup")
	if err != nil {
		return err
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: store %s: %w", src, err)
	}
	if _, err := os.Stat(dst); err == nil && !force {
		return fmt.Errorf("backup: %s exists (use -force to replace it)", dst)
	}
	if abs, _ := filepath.Abs(dst); sameFile(abs, src) {
		return fmt.Errorf("backup: %s is the store itself", dst)
	}

	started := time.Now()
	// mode=rw: never create an empty database where the store should be.
	db, err := sql.Open("sqlite", sqliteDSN(src, "mode=rw", "_pragma=busy_timeout(10000)"))
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", src, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	// VACUUM INTO writes a consistent snapshot (one read transaction) of the
	// live database, WAL included, while agentd keeps reading and writing.
	// It refuses an existing non-empty file, so it writes to a temporary
	// name beside PATH, which is then fsynced and renamed over PATH.
	tmp := dst + ".tmp-" + fmt.Sprint(os.Getpid())
	_ = os.Remove(tmp)
	defer os.Remove(tmp) // no-op after the rename
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return fmt.Errorf("backup: VACUUM INTO %s: %w", tmp, err)
	}
	info, err := verifySQLite(ctx, tmp)
	if err != nil {
		return fmt.Errorf("backup: the copy does not verify: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	syncDir(filepath.Dir(dst))
	fmt.Fprintf(stdout, "backed up %s to %s in %s: %s\n", src, dst,
		time.Since(started).Round(time.Millisecond), info)
	return nil
}

// cmdRestore is `agentd restore [-config FILE] PATH`: it replaces the store
// file with the backup at PATH. agentd must be stopped: restore refuses a
// store that another process has open. The replaced store is kept as
// STORE.before-restore-TIMESTAMP (unless -keep-old=false).
func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	keepOld := true
	cfg, rest, err := loadConfigArgs("restore", args, stderr, environ, func(fs *flag.FlagSet) {
		fs.BoolVar(&keepOld, "keep-old", true, "keep the replaced store as STORE.before-restore-TIMESTAMP")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: agentd restore [-config FILE] [-keep-old=true] PATH", errUsage)
	}
	backup := rest[0]
	store, err := sqliteStorePath(cfg.Store.URL, "restore")
	if err != nil {
		return err
	}
	if abs, _ := filepath.Abs(backup); sameFile(abs, store) {
		return fmt.Errorf("restore: %s is the store itself", backup)
	}
	info, err := verifySQLite(ctx, backup)
	if err != nil {
		return fmt.Errorf("restore: %s is not a usable agentd backup: %w", backup, err)
	}

	var kept string
	if _, err := os.Stat(store); err == nil {
		// Refuse while anyone has the store open, then fold its WAL into
		// it (a checkpoint on close) so the kept copy is one whole file.
		if err := checkpointIdle(ctx, store); err != nil {
			return err
		}
		if keepOld {
			kept = store + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
			if err := os.Rename(store, kept); err != nil {
				return fmt.Errorf("restore: keep the old store: %w", err)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: store %s: %w", store, err)
	}
	if dir := filepath.Dir(store); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}

	// Copy to a temporary file beside the store, fsync, rename over the
	// store: a crash leaves either the old or the new file, never half.
	tmp := store + ".restore-tmp"
	if err := copyFile(backup, tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	// WAL and shared-memory files belong to the replaced database: a stale
	// WAL applied to the restored file would corrupt it.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(store + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(tmp)
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := os.Rename(tmp, store); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	syncDir(filepath.Dir(store))
	fmt.Fprintf(stdout, "restored %s from %s: %s\n", store, backup, info)
	if kept != "" {
		fmt.Fprintf(stdout, "the replaced store is kept as %s (delete it once the restore is verified)\n", kept)
	}
	fmt.Fprintln(stdout, "start agentd: runs that were queued or running at the backup point resume from their checkpoints")
	return nil
}

// checkpointIdle fails with errStoreInUse if another connection has the
// store open. In WAL mode every open connection holds a shared lock on the
// database file for as long as it is open, so an exclusive lock can only
// be had while no agentd (nor sqlite3 shell) has the file open. Closing
// the connection then checkpoints the WAL into the file and removes it.
func checkpointIdle(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", sqliteDSN(path, "mode=rw", "_pragma=busy_timeout(2000)",
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
		if isBusy(err) {
			return fmt.Errorf("restore: %w: %s is open in another process; stop agentd (every serve, migrate and backup on this store) first",
				errStoreInUse, path)
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

func isBusy(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked") ||
		strings.Contains(s, "(5)") || strings.Contains(s, "(517)")
}

// verifySQLite opens path read-only, runs quick_check and reads what an
// agentd store has; it returns a one-line summary.
func verifySQLite(ctx context.Context, path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	db, err := sql.Open("sqlite", sqliteDSN(path, "mode=ro", "_pragma=busy_timeout(5000)"))
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
	if latest := sqlite.LatestSchemaVersion(); version > latest {
		return "", fmt.Errorf("schema version %d is newer than this agentd knows (%d): restore with the agentd version that wrote it", version, latest)
	}
	var convs, runs int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM runs)`).Scan(&convs, &runs); err != nil {
		return "", fmt.Errorf("count rows: %w", err)
	}
	return fmt.Sprintf("schema version %d, %d conversations, %d runs, %d bytes", version, convs, runs, st.Size()), nil
}

func copyFile(src, dst string) error {
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

func syncFile(path string) error {
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
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) bool {
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
