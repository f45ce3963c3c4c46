package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// StoreDriver names the implementation a store URL selects.
type StoreDriver string

// The store drivers store.url can select.
const (
	// StoreSQLite is a SQLite file: sqlite://PATH.
	StoreSQLite StoreDriver = "sqlite"
	// StorePostgres is a PostgreSQL database: postgres://… or postgresql://….
	StorePostgres StoreDriver = "postgres"
)

// StoreURL is a parsed store.url. ParseStoreURL is the one place the
// scheme is read: validation, the backend, backup and restore all take
// their answer from it.
type StoreURL struct {
	// Driver is the implementation the URL selects.
	Driver StoreDriver
	// Path is the database file of a SQLite URL (empty for PostgreSQL).
	Path string
	// Raw is the URL as configured; PostgreSQL URLs go to the driver as is.
	Raw string
}

// String is the URL without any password it carries.
func (u StoreURL) String() string { return RedactURL(u.Raw) }

// ParseStoreURL parses a store URL:
//
//	sqlite:///abs/path.db     → /abs/path.db      (three slashes: absolute)
//	sqlite://relative/path.db → relative/path.db  (two slashes: relative to
//	                                               the working directory)
//	postgres://user@host:5432/db, postgresql://…
//
// Percent-escapes in a SQLite path are decoded; a query string, fragment,
// user info or port on a SQLite URL is an error. Messages never show a
// password.
func ParseStoreURL(raw string) (StoreURL, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return StoreURL{}, fmt.Errorf("%q: want sqlite://PATH or postgres://…", raw)
	}
	switch scheme {
	case "postgres", "postgresql":
		pu, err := url.Parse(raw)
		if err != nil || pu.Host == "" {
			return StoreURL{}, errors.New("not a valid postgres:// URL (want postgres://user@host:5432/db)")
		}
		return StoreURL{Driver: StorePostgres, Raw: raw}, nil
	case "sqlite":
	default:
		return StoreURL{}, fmt.Errorf("unsupported scheme %q (want sqlite:// or postgres://)", scheme)
	}
	if rest == "" || strings.HasPrefix(rest, "?") {
		return StoreURL{}, fmt.Errorf("%q: missing database path (want sqlite://PATH)", raw)
	}
	pu, err := url.Parse(raw)
	if err != nil {
		return StoreURL{}, fmt.Errorf("%q: %w", raw, err)
	}
	if pu.RawQuery != "" || pu.ForceQuery || pu.Fragment != "" {
		return StoreURL{}, fmt.Errorf("%q: query and fragment are not supported", raw)
	}
	if pu.User != nil || pu.Port() != "" {
		return StoreURL{}, fmt.Errorf("%q: user info and port are not supported", raw)
	}
	path := pu.Host + pu.Path // sqlite://relative/path.db: the "host" is the first element
	if path == "" || path == "/" {
		return StoreURL{}, fmt.Errorf("%q: missing database path (want sqlite://PATH)", raw)
	}
	return StoreURL{Driver: StoreSQLite, Path: path, Raw: raw}, nil
}

// RedactURL is raw without any password it carries.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
