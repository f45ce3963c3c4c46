package app

import (
	"os"
	"testing"

	agentrun "github.com/agentd/agentd/internal/run"
)

// TestMain lets the test binary serve as the hosted programs' supervisor,
// as the agentd binary does (internal/run/program_supervise.go).
func TestMain(m *testing.M) {
	if agentrun.IsSupervisor() {
		os.Exit(agentrun.Supervise())
	}
	agentrun.EnableSupervisor()
	os.Exit(m.Run())
}
