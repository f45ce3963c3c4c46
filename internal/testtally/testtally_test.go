package testtally

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRecord(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	Record(t, "postgres")
	t.Run("sub", func(t *testing.T) { Record(t, "postgres") })
	Record(t, "redis")
	got, err := os.ReadFile(filepath.Join(dir, "postgres.txt"))
	if err != nil || string(got) != wd+" TestRecord\n"+wd+" TestRecord/sub\n" {
		t.Fatalf("postgres.txt = %q, %v", got, err)
	}
	got, err = os.ReadFile(filepath.Join(dir, "redis.txt"))
	if err != nil || string(got) != wd+" TestRecord\n" {
		t.Fatalf("redis.txt = %q, %v", got, err)
	}
}

func TestRecordOff(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, "")
	Record(t, "postgres")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("wrote %v without %s", entries, EnvDir)
	}
}
