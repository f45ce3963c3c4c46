package pgtest

import (
	"testing"

	"github.com/agentd/agentd/internal/testtally"
)

// tally counts t as a test that runs against PostgreSQL (.ci/run prints
// and checks the count, see internal/testtally).
func tally(t testing.TB) { testtally.Record(t, "postgres") }
