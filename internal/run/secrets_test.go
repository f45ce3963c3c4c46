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

	// Two secrets that overlap leave nothing of either.
	overlap := NewMessageGuard(true, 6, "AAAAAAkey1", "key1BBBBBB")
	if got, _ := overlap.Check("x AAAAAAkey1BBBBBB y"); got != "x "+Redacted+" y" {
		t.Fatalf("overlapping secrets scrubbed to %q", got)
	}
	// Dynamic values (the key pool's rotating keys) count too.
	dyn := NewMessageGuard(false, 6)
	dyn.Dynamic = func() []string { return []string{"sk-ant-rotated-key"} }
	if _, err := dyn.Check("here: sk-ant-rotated-key"); !errors.Is(err, ErrSecretInMessage) {
		t.Fatalf("a key pool value got through: %v", err)
	}

	var none *MessageGuard
	if got, err := none.Check("abcdefgh"); err != nil || got != "abcdefgh" {
		t.Fatalf("a nil guard changed the message: %q, %v", got, err)
	}
}
