package run_test

import (
	"os"
	"testing"

	"github.com/agentd/agentd/internal/run"
)

// TestMain lets the test binary serve as the hosted programs' supervisor,
// as the agentd binary does (program_supervise.go).
func TestMain(m *testing.M) {
	if run.IsSupervisor() {
		os.Exit(run.Supervise())
	}
	run.EnableSupervisor()
	os.Exit(m.Run())
}
