package run

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A job whose run is still executing on this worker is snoozed, not
// dropped: it may be the run's resumption, queued when the run paused and
// was decided before the execution that paused it returned.
func TestExecuteRunSnoozesWhileExecuting(t *testing.T) {
	r := &Runs{Log: slog.New(slog.DiscardHandler)}
	require.True(t, r.reserve("run_1"))
	requeue, err := r.ExecuteRun(t.Context(), "t1", "run_1")
	require.False(t, requeue)
	var snooze interface{ SnoozeFor() time.Duration }
	require.ErrorAs(t, err, &snooze)
	require.Positive(t, snooze.SnoozeFor())
	r.release("run_1")
	require.True(t, r.reserve("run_1"), "the snoozed job's next look reserves it")
}
