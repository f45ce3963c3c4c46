// Package migrations holds the schema migrations of every store backend, in
// one place so that the dialects stay in step:
//
//	sqlite/NNNN_name.sql
//	postgres/NNNN_name.sql
//
// Both dialects have the same migrations (same versions and names, checked
// by this package's test) describing the same tables, columns and
// constraints, each written in its own SQL dialect. Versions start at 1 and
// have no gaps. A migration is never edited once released; a change is a new
// file in every dialect.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Dialects returns the dialects there are migrations for.
func Dialects() []string { return []string{SQLite, Postgres} }

// Migration is one NNNN_name.sql file.
type Migration struct {
	Version int    // NNNN, from 1
	Name    string // name, without version and extension
	SQL     string // the file's contents, possibly several statements
}

// String is the file name without extension: "0001_init".
func (m Migration) String() string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }

var load = map[string]func() ([]Migration, error){
	SQLite:   sync.OnceValues(func() ([]Migration, error) { return parse(SQLite) }),
	Postgres: sync.OnceValues(func() ([]Migration, error) { return parse(Postgres) }),
}

// For returns the migrations of dialect in version order. The slice is the
// caller's.
func For(dialect string) ([]Migration, error) {
	f, ok := load[dialect]
	if !ok {
		return nil, fmt.Errorf("migrations: unknown dialect %q", dialect)
	}
	ms, err := f()
	return slices.Clone(ms), err
}

// Latest returns the highest version of dialect's migrations.
func Latest(dialect string) (int, error) {
	ms, err := For(dialect)
	if err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, nil
	}
	return ms[len(ms)-1].Version, nil
}

func parse(dialect string) ([]Migration, error) {
	names, err := fs.Glob(files, dialect+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrations: %s: %w", dialect, err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, f := range names {
		base := path.Base(f)
		num, name, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || len(num) != 4 || name == "" {
			return nil, fmt.Errorf("migrations: %s/%s: name must be NNNN_name.sql", dialect, base)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations: %s/%s and %s: same version %d", dialect, prev, base, v)
		}
		seen[v] = base
		b, err := files.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	return ms, nil
}
