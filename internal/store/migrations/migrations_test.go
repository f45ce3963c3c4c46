package migrations

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// reservedMigrations are versions another branch adds.
var reservedMigrations = map[int]bool{11: true, 12: true}

func TestDialectsInStep(t *testing.T) {
	t.Parallel()
	var first []string
	for _, d := range Dialects() {
		ms, err := For(d)
		require.NoError(t, err, d)
		require.NotEmpty(t, ms, d)
		var names []string
		want := 1
		for _, m := range ms {
			// 0011 (approvals) and 0012 (feedback) are reserved for
			// branches merged separately; until they land a branch may
			// lack them.
			for reservedMigrations[want] && m.Version > want {
				want++
			}
			require.Equal(t, want, m.Version, "%s: versions are 1, 2, 3, ... without gaps", d)
			want++
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
