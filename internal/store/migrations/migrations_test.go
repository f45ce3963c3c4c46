package migrations

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDialectsInStep(t *testing.T) {
	t.Parallel()
	var first []string
	for _, d := range Dialects() {
		ms, err := For(d)
		require.NoError(t, err, d)
		require.NotEmpty(t, ms, d)
		var names []string
		for i, m := range ms {
			require.Equal(t, i+1, m.Version, "%s: versions are 1, 2, 3, ... without gaps", d)
			require.NotEmpty(t, m.Name)
			require.NotEmpty(t, m.SQL)
			names = append(names, m.String())
		}
		latest, err := Latest(d)
		require.NoError(t, err)
		require.Equal(t, ms[len(ms)-1].Version, latest)
		if first == nil {
			first = names
			continue
		}
		require.Equal(t, first, names, "%s has other migrations than %s", d, Dialects()[0])
	}
}

func TestForCopies(t *testing.T) {
	t.Parallel()
	a, err := For(SQLite)
	require.NoError(t, err)
	a[0].SQL = "changed"
	b, err := For(SQLite)
	require.NoError(t, err)
	require.NotEqual(t, "changed", b[0].SQL)
	require.Equal(t, "0001_init", b[0].String())
}

func TestUnknownDialect(t *testing.T) {
	t.Parallel()
	_, err := For("mysql")
	require.Error(t, err)
	_, err = Latest("mysql")
	require.Error(t, err)
}
