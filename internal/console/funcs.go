package console

import (
	"fmt"
	"math"
	"time"

	"github.com/agentd/agentd/internal/money"
	template "github.com/agentd/agentd/internal/third_party/gotemplate/html"
)

// funcs are the templates' helpers. Times are shown relative ("3m ago")
// with the absolute UTC time in a <time> element's datetime and title.
var funcs = template.FuncMap{
	"ago":    ago,
	"abs":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"usd":    func(n money.Nanos) string { return "$" + n.String() },
	"usdf":   func(f float64) string { return fmt.Sprintf("$%.4f", f) },
	"pct":    func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"ms":     func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) },
	"num":    func(n int64) string { return groupDigits(n) },
	"bytes":  func(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) },
	"secs":   func(n int64) string { return (time.Duration(n) * time.Second).String() },
	"mul100": func(f float64) float64 { return f * 100 },
	"dur": func(s float64) string {
		return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
	},
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	suffix := "ago"
	if d < 0 {
		d, suffix = -d, "from now"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds %s", int(d.Seconds()), suffix)
	case d < time.Hour:
		return fmt.Sprintf("%dm %s", int(d.Minutes()), suffix)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %s", int(d.Hours()), suffix)
	default:
		return fmt.Sprintf("%dd %s", int(math.Round(d.Hours()/24)), suffix)
	}
}

func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := []byte{}
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
