package money

import (
	"encoding/json"
	"testing"
)

func TestStringAndJSON(t *testing.T) {
	for n, want := range map[Nanos]string{
		0: "0", 1: "0.000000001", 1818000: "0.001818", PerUSD: "1", 12_500_000_000: "12.5",
		-500_000_000: "-0.5", -1: "-0.000000001",
	} {
		if got := n.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(n), got, want)
		}
		b, err := json.Marshal(n)
		if err != nil || string(b) != want {
			t.Errorf("json(%d) = %s, %v; want %s", int64(n), b, err, want)
		}
		var back Nanos
		if err := json.Unmarshal(b, &back); err != nil || back != n {
			t.Errorf("unmarshal %s = %d, %v; want %d", b, int64(back), err, int64(n))
		}
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]Nanos{
		"0.001818": 1818000, "1": PerUSD, "+2.": 2 * PerUSD, ".5": PerUSD / 2, "1e-3": 1_000_000,
		"0.0000000014": 1, "0.0000000015": 2, "-0.0000000015": -2, "0.0018180000000000002": 1818000,
	} {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, int64(got), err, int64(want))
		}
	}
	for _, s := range []string{"", "-", ".", "1.2.3", "abc", "1,5", "99999999999"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q): want an error", s)
		}
	}
}

// TestSumIsExact is the artifact of issue 16: summing per-call costs as
// floats shows 0.0018180000000000002; as Nanos the sum is exact.
func TestSumIsExact(t *testing.T) {
	calls := []float64{0.000303, 0.001515} // 101 input, then 101 output tokens at $3/$15 per MTok
	var f float64
	var n Nanos
	for _, c := range calls {
		f += c
		n += FromUSD(c)
	}
	if b, _ := json.Marshal(f); string(b) == "0.001818" {
		t.Fatalf("float sum printed %s: this example no longer shows the artifact", b)
	}
	if b, _ := json.Marshal(n); string(b) != "0.001818" {
		t.Fatalf("Nanos sum = %s, want 0.001818", b)
	}
	if n.USD() != 0.001818 {
		t.Fatalf("USD() = %v, want 0.001818", n.USD())
	}
}

func TestFromUSD(t *testing.T) {
	if FromUSD(0.1)+FromUSD(0.2) != FromUSD(0.3) {
		t.Fatal("0.1 + 0.2 != 0.3 in Nanos")
	}
	if FromUSD(-0.0000000004) != 0 || FromUSD(2.5e-9) != 3 {
		t.Fatal("rounding")
	}
}
