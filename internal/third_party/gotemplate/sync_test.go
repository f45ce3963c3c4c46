package gotemplate

import (
	"bytes"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/agentd/agentd/internal/third_party/gotemplate"

// dirs maps each copied directory to its source in GOROOT/src.
var dirs = map[string]string{
	"text":       "text/template",
	"text/parse": "text/template/parse",
	"html":       "html/template",
	"fmtsort":    "internal/fmtsort",
}

// rewrite applies to an upstream file what was applied to the copy: the
// imports of the copied packages, then gofmt.
func rewrite(t *testing.T, name string, src []byte) []byte {
	t.Helper()
	r := strings.NewReplacer(
		`"text/template/parse"`, `"`+module+`/text/parse"`,
		`"text/template"`, `"`+module+`/text"`,
		`"internal/fmtsort"`, `"`+module+`/fmtsort"`,
		`"internal/godebug"`, `"`+module+`/godebug"`,
	)
	out, err := format.Source([]byte(r.Replace(string(src))))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// unpatch undoes agentd's one change (text/exec.go's methodByName).
func unpatch(t *testing.T, src []byte) []byte {
	t.Helper()
	const marker = "\n// methodByName is agentd's one change"
	i := bytes.Index(src, []byte(marker))
	if i < 0 {
		t.Fatal("text/exec.go: methodByName not found")
	}
	s := strings.Replace(string(src[:i+1]), "methodByName(ptr, fieldName)", "ptr.MethodByName(fieldName)", 1)
	return []byte(s)
}

// The copy is the toolchain's html/template and text/template but for
// methodByName: when Go is upgraded (a security fix of html/template, say),
// this fails until the copy is refreshed (README.md).
func TestCopyMatchesToolchain(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "src")
	if _, err := os.Stat(filepath.Join(src, "html/template/escape.go")); err != nil {
		t.Skipf("no toolchain sources: %v", err)
	}
	for dir, up := range dirs {
		upFiles, _ := filepath.Glob(filepath.Join(src, up, "*.go"))
		ours, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		want := map[string]bool{}
		for _, f := range upFiles {
			if strings.HasSuffix(f, "_test.go") || (dir == "fmtsort" && filepath.Base(f) != "sort.go") {
				continue
			}
			want[filepath.Base(f)] = true
			upSrc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, filepath.Base(f)))
			if err != nil {
				t.Errorf("%s/%s: missing from the copy (%v)", dir, filepath.Base(f), err)
				continue
			}
			if dir == "text" && filepath.Base(f) == "exec.go" {
				got = unpatch(t, got)
			}
			if !bytes.Equal(rewrite(t, f, got), rewrite(t, f, upSrc)) {
				t.Errorf("%s/%s differs from %s: refresh the copy from this toolchain (README.md)", dir, filepath.Base(f), f)
			}
		}
		for _, f := range ours {
			if !want[filepath.Base(f)] {
				t.Errorf("%s: not in %s any more", f, up)
			}
		}
	}
}
