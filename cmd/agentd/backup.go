package main

// agentd backup / agentd restore of the SQLite store (internal/store/sqlite
// does the work). PostgreSQL stores are refused with a pointer to pg_dump /
// pg_restore (docs/runbooks/restore-from-backup.md).

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/sqlite"
)

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

// sqliteStorePath returns the file of a sqlite:// store URL, or an error
// that says what to do for PostgreSQL.
func sqliteStorePath(rawURL, verb string) (string, error) {
	u, err := config.ParseStoreURL(rawURL)
	if err != nil {
		return "", fmt.Errorf("store.url: %w", err)
	}
	if u.Driver == config.StorePostgres {
		return "", fmt.Errorf("store %s is PostgreSQL: agentd %s handles the SQLite store only; use "+
			"pg_dump -Fc (backup) and pg_restore (restore) with your database's tooling, "+
			"see docs/runbooks/restore-from-backup.md", u, verb)
	}
	return u.Path, nil
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
	src, err := sqliteStorePath(cfg.Store.URL, "backup")
	if err != nil {
		return err
	}
	started := time.Now()
	info, err := sqlite.Backup(ctx, src, rest[0], force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s in %s: %s\n", src, rest[0], time.Since(started).Round(time.Millisecond), info)
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
	path, err := sqliteStorePath(cfg.Store.URL, "restore")
	if err != nil {
		return err
	}
	res, err := sqlite.Restore(ctx, path, rest[0], keepOld)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s from %s: %s\n", path, rest[0], res.Info)
	if res.Kept != "" {
		fmt.Fprintf(stdout, "the replaced store is kept as %s (delete it once the restore is verified)\n", res.Kept)
	}
	fmt.Fprintln(stdout, "start agentd: runs that were queued or running at the backup point resume from their checkpoints")
	return nil
}
