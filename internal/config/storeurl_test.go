package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseStoreURL(t *testing.T) {
	t.Parallel()
	good := map[string]StoreURL{
		"sqlite:///abs/path.db":           {Driver: StoreSQLite, Path: "/abs/path.db"},
		"sqlite://relative/path.db":       {Driver: StoreSQLite, Path: "relative/path.db"},
		"sqlite://agentd.db":              {Driver: StoreSQLite, Path: "agentd.db"},
		"sqlite://./data/agentd.db":       {Driver: StoreSQLite, Path: "./data/agentd.db"},
		"sqlite:///abs/with%20space.db":   {Driver: StoreSQLite, Path: "/abs/with space.db"},
		"sqlite://rel/with%3Fquestion.db": {Driver: StoreSQLite, Path: "rel/with?question.db"},
		"postgres://u:pw@db:5432/agentd":  {Driver: StorePostgres},
		"postgresql://db/agentd":          {Driver: StorePostgres},
	}
	for in, want := range good {
		got, err := ParseStoreURL(in)
		require.NoError(t, err, in)
		want.Raw = in
		require.Equal(t, want, got, in)
	}
	bad := map[string]string{
		"":                           "want sqlite://PATH",
		"agentd.db":                  "want sqlite://PATH",
		"sqlite:relative.db":         "want sqlite://PATH",
		"mysql://db/x":               `unsupported scheme "mysql"`,
		"sqlite://":                  "missing database path",
		"sqlite:///":                 "missing database path",
		"sqlite://?x=1":              "missing database path",
		"sqlite:///abs.db?mode=ro":   "query and fragment",
		"sqlite:///abs.db#frag":      "query and fragment",
		"sqlite://user@host/x.db":    "user info and port",
		"sqlite://host:5432/x.db":    "user info and port",
		"postgres://u:secret@/x":     "not a valid postgres:// URL",
		"postgres://u:secret@%zz/db": "not a valid postgres:// URL",
	}
	for in, want := range bad {
		_, err := ParseStoreURL(in)
		require.ErrorContains(t, err, want, in)
		require.NotContains(t, err.Error(), "secret", "a password never shows")
	}
	u, err := ParseStoreURL("postgres://u:secret@db/agentd")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:xxxxx@db/agentd", u.String())
}
