// Package testtally lets CI count the tests that really ran against a
// service (PostgreSQL, Redis) instead of skipping: when AGENTD_TEST_TALLY_DIR
// is set, Record appends the test's directory and name to DIR/SERVICE.txt. .ci/run sets it,
// counts the names and fails when a service's count is zero, so that a
// missing service can never turn its suites into silent skips. Unset (the
// README's plain `go test -race ./...`), Record does nothing.
package testtally

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvDir names the environment variable with the tally directory.
const EnvDir = "AGENTD_TEST_TALLY_DIR"

// Record notes that t runs against service ("postgres", "redis"); a test
// may be noted more than once (count unique lines). Each line is one write to a file opened with O_APPEND, so parallel tests and
// test binaries of several packages can share the file.
func Record(t testing.TB, service string) {
	t.Helper()
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, service+".txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", EnvDir, err)
	}
	defer f.Close()
	// go test runs each package's tests in the package's directory: the
	// directory tells packages apart whose tests have the same name.
	pkg, _ := os.Getwd()
	if _, err := f.WriteString(pkg + " " + t.Name() + "\n"); err != nil {
		t.Fatalf("%s: %v", EnvDir, err)
	}
}
