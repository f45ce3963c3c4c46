// Package money keeps amounts of US dollars exact: a Nanos is an integer
// number of nano-dollars (1e-9 USD). Model prices are quoted in USD per
// million tokens with at most three decimals (e.g. $0.08/MTok is 80
// nano-dollars per token), so a call's cost is a whole number of
// nano-dollars and sums of costs (a run, a budget, a usage report) are
// exact integer sums, never float sums such as 0.0018180000000000002.
//
// On the wire (JSON) a Nanos is a number of dollars written with at most
// nine decimals and no trailing zeros (1818000 → 0.001818), so the fields
// keep their name and type (number, USD) for clients. Prometheus metrics
// stay float (USD()), derived from the exact amount.
package money

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Nanos is an amount of nano-dollars (1e-9 USD).
type Nanos int64

// PerUSD is the number of Nanos in one dollar.
const PerUSD Nanos = 1_000_000_000

// FromUSD returns usd rounded to the nearest nano-dollar. NaN is 0; an
// amount beyond the range (about ±9.2e9 USD) is clamped.
func FromUSD(usd float64) Nanos {
	switch {
	case math.IsNaN(usd):
		return 0
	case usd >= 9.2e9:
		return math.MaxInt64
	case usd <= -9.2e9:
		return math.MinInt64 + 1
	}
	return Nanos(math.Round(usd * 1e9))
}

// USD returns n in dollars as a float (for metrics and logs): the float
// nearest to the exact amount.
func (n Nanos) USD() float64 { return float64(n) / 1e9 }

// String returns n in dollars as an exact decimal with at most nine
// decimals and no trailing zeros ("0.001818", "12", "-0.5").
func (n Nanos) String() string {
	var b []byte
	return string(n.appendDecimal(b))
}

func (n Nanos) appendDecimal(b []byte) []byte {
	u := uint64(n)
	if n < 0 {
		b = append(b, '-')
		u = uint64(-n) // -MinInt64 wraps to itself, which as uint64 is right
	}
	whole, frac := u/uint64(PerUSD), u%uint64(PerUSD)
	b = strconv.AppendUint(b, whole, 10)
	if frac == 0 {
		return b
	}
	f := []byte(fmt.Sprintf("%09d", frac))
	f = bytes.TrimRight(f, "0")
	b = append(b, '.')
	return append(b, f...)
}

// MarshalJSON writes n as a JSON number of dollars (exact decimal).
func (n Nanos) MarshalJSON() ([]byte, error) {
	return n.appendDecimal(make([]byte, 0, 24)), nil
}

// UnmarshalJSON reads a JSON number of dollars (or null: 0). Digits beyond
// the ninth decimal are rounded half away from zero.
func (n *Nanos) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*n = 0
		return nil
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Parse reads a decimal amount of dollars ("0.001818", "-3", "1e-3").
// A plain decimal is read exactly (rounded at the ninth decimal); an
// exponent form goes through float64 and is rounded to the nano-dollar.
func Parse(s string) (Nanos, error) {
	if s == "" {
		return 0, fmt.Errorf("money: empty amount")
	}
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, fmt.Errorf("money: invalid amount %q", s)
		}
		return FromUSD(f), nil
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("money: invalid amount %q", s)
	}
	var w uint64
	if whole != "" {
		var err error
		if w, err = strconv.ParseUint(whole, 10, 64); err != nil || w > uint64(math.MaxInt64/PerUSD) {
			return 0, fmt.Errorf("money: amount %q out of range", s)
		}
	}
	roundUp := len(frac) > 9 && frac[9] >= '5'
	if len(frac) > 9 {
		frac = frac[:9]
	}
	frac += strings.Repeat("0", 9-len(frac))
	f, _ := strconv.ParseUint(frac, 10, 64)
	v := Nanos(w)*PerUSD + Nanos(f)
	if roundUp {
		v++
	}
	if neg {
		v = -v
	}
	return v, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
