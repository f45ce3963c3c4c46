package sqlstore

import (
	"strings"
	"testing"

	"github.com/agentd/agentd/internal/store"
)

func TestEventStmts(t *testing.T) {
	evs := func(run string, from, to int64) []store.Event {
		var out []store.Event
		for seq := from; seq <= to; seq++ {
			out = append(out, store.Event{RunID: run, Seq: seq})
		}
		return out
	}
	shape := func(stmts []eventStmt) string {
		var b strings.Builder
		for _, st := range stmts {
			if st.checked {
				b.WriteString("c")
			}
			b.WriteString(strings.Repeat(".", len(st.events)))
			b.WriteString(" ")
		}
		return strings.TrimSpace(b.String())
	}
	for _, tc := range []struct {
		name   string
		events []store.Event
		want   string
	}{
		{"none", nil, ""},
		{"one", evs("r", 4, 4), "c."},
		{"consecutive", evs("r", 4, 7), "c. ..."},
		{"chunked", evs("r", 1, 1+2*maxEventRows), "c. " + strings.Repeat(".", maxEventRows) + " " + strings.Repeat(".", maxEventRows)},
		{"gap", append(evs("r", 1, 2), evs("r", 4, 4)...), "c. c. c."},
		{"duplicate", append(evs("r", 1, 2), evs("r", 2, 2)...), "c. c. c."},
		{"two runs", append(evs("r", 1, 1), evs("s", 2, 2)...), "c. c."},
	} {
		if got := shape(eventStmts(tc.events)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	q := eventInserts(dollarParam)
	if got := strings.Count(q[3], "), ("); got != 2 {
		t.Errorf("eventInserts[3] has %d rows: %s", got+1, q[3])
	}
	if !strings.HasSuffix(q[2], "($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)") {
		t.Errorf("eventInserts[2]: %s", q[2])
	}
	if q := eventInserts(func(int) string { return "?" }); !strings.HasSuffix(q[2], "(?, ?, ?, ?, ?), (?, ?, ?, ?, ?)") {
		t.Errorf("eventInserts[2] with ?: %s", q[2])
	}
}
