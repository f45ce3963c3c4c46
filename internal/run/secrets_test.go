package run

import (
	"errors"
	"testing"
)

func TestMessageGuard(t *testing.T) {
	refuse := NewMessageGuard(false, 6, "sk-ant-api03-secret", "hunter2hunter2", "short", "")
	if _, err := refuse.Check("my key is sk-ant-api03-secret, use it"); !errors.Is(err, ErrSecretInMessage) {
		t.Fatalf("refuse mode let a secret through: %v", err)
	}
	if got, err := refuse.Check("nothing to see; short words are fine"); err != nil || got != "nothing to see; short words are fine" {
		t.Fatalf("a clean message changed: %q, %v", got, err)
	}

	scrub := NewMessageGuard(true, 6, "abcdef", "abcdefgh")
	got, err := scrub.Check("x abcdefgh y abcdef z")
	if err != nil {
		t.Fatal(err)
	}
	if want := "x " + Redacted + " y " + Redacted + " z"; got != want {
		t.Fatalf("scrubbed %q, want %q (longest secret first)", got, want)
	}

	var none *MessageGuard
	if got, err := none.Check("abcdefgh"); err != nil || got != "abcdefgh" {
		t.Fatalf("a nil guard changed the message: %q, %v", got, err)
	}
}
