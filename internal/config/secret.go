package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
)

// secretMask is what every printing or encoding path shows instead of a
// non-empty Secret.
const secretMask = "[redacted]"

// Value returns the secret's real value. It is the only way to get it.
func (s Secret) Value() string { return string(s) }

// String implements fmt.Stringer: "[redacted]", or "" when empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return secretMask
}

// GoString implements fmt.GoStringer (%#v): the quoted mask.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format implements fmt.Formatter so that every verb, including ones that
// are wrong for a string (%d), prints the mask: without it fmt would print
// the raw value inside its "%!d(config.Secret=...)" error text.
func (s Secret) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText implements encoding.TextMarshaler, so text-based encoders
// (and JSON map keys) see the mask too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
