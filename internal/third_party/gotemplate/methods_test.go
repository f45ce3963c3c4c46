package gotemplate

import (
	"errors"
	"strings"
	"testing"
	"time"

	template "github.com/agentd/agentd/internal/third_party/gotemplate/html"
)

type page struct {
	T    time.Time
	P    *time.Time
	Name string
	Err  error
}

func (page) Hidden() string { return "method called" }

func render(t *testing.T, src string, data any) (string, error) {
	t.Helper()
	tpl := template.Must(template.New("t").Parse(src))
	var b strings.Builder
	err := tpl.Execute(&b, data)
	return b.String(), err
}

// Allowed methods work on values and pointers, escaping is html/template's,
// and any other method name is not called.
func TestMethodsAndEscaping(t *testing.T) {
	now := time.Now()
	got, err := render(t, `{{.T.IsZero}} {{.P.IsZero}} {{.Err.Error}} <a href="/x?q={{.Name}}">{{.Name}}</a>`,
		page{P: &now, Name: `<script>"&`, Err: errors.New("boom")})
	if err != nil {
		t.Fatal(err)
	}
	want := `true false boom <a href="/x?q=%3cscript%3e%22%26">&lt;script&gt;&#34;&amp;</a>`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if out, err := render(t, `{{.Hidden}}`, page{}); err == nil || strings.Contains(out, "method called") {
		t.Fatalf("a method not in methodByName was called: %q, %v", out, err)
	}
}
