// Package cli is agentd's client for people at a terminal: `agentd chat`,
// `agentd runs` and `agentd usage` talk HTTP to a running agentd (the
// public API of docs/api.md, nothing else), print tables by default and
// JSON with -o json.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// ErrUsage marks a command-line mistake.
var ErrUsage = errors.New("usage")

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Environ is the environment as "KEY=value" entries (AGENTD_URL,
	// AGENTD_API_KEY).
	Environ []string
}

const runsUsage = `agentd runs submit [-c CONV] [-idempotency-key K] [-webhook URL] [-max-cost USD] [-tail] AGENT MESSAGE...
agentd runs get    ID
agentd runs list   [-status S] [-agent A] [-limit N] [-cursor C]
agentd runs tail   [-after N] ID      follow a run's events live; reconnects after a disconnect
agentd runs cancel ID
(every command: -url URL, -o table|json)`

// Main runs the client command cmd ("chat", "runs" or "usage") with its
// arguments.
func Main(ctx context.Context, cmd string, args []string, stdio IO) error {
	switch cmd {
	case "chat":
		return cmdChat(ctx, args, stdio)
	case "runs":
		return cmdRuns(ctx, args, stdio)
	case "usage":
		return cmdUsage(ctx, args, stdio)
	default:
		return fmt.Errorf("%w: unknown client command %q", ErrUsage, cmd)
	}
}

// Output formats (-o).
const (
	outputTable = "table"
	outputJSON  = "json"
)

// common are the flags of every client command.
type common struct {
	url, output string
	environ     []string
}

func addCommon(fs *flag.FlagSet, environ []string) *common {
	c := &common{environ: environ}
	def := getenv(environ, "AGENTD_URL")
	if def == "" {
		def = DefaultURL
	}
	fs.StringVar(&c.url, "url", def, "agentd's address ($AGENTD_URL)")
	fs.StringVar(&c.output, "o", outputTable, "output: table (for people) or json (for scripts)")
	return c
}

func (c *common) check() error {
	if c.output != outputTable && c.output != outputJSON {
		return fmt.Errorf("%w: -o must be table or json, not %q", ErrUsage, c.output)
	}
	if !strings.HasPrefix(c.url, "http://") && !strings.HasPrefix(c.url, "https://") {
		return fmt.Errorf("%w: -url must start with http:// or https://, not %q", ErrUsage, c.url)
	}
	return nil
}

func (c *common) client() *Client {
	return &Client{BaseURL: c.url, APIKey: getenv(c.environ, "AGENTD_API_KEY")}
}

func (c *common) json() bool { return c.output == outputJSON }

// parse parses fs's flags wherever they are among args (`runs get ID -o
// json` as well as `runs get -o json ID`) and returns the other
// arguments; after "--" everything is an argument.
// queryOf is the query string of the flags in m that are set (non-empty).
func queryOf(m map[string]string) url.Values {
	q := url.Values{}
	for k, v := range m {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("agentd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func getenv(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // later entries win, as in os.Getenv
		}
	}
	return v
}

// isTerminal reports whether r is a terminal (a character device).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
