package main

// TestREADMEWalkthrough keeps the README's "Walkthrough with curl" true to
// the binary: it starts agentd as the quick start does (examples/agentd.yaml,
// the built-in simulator), runs every shell block of the walkthrough with
// bash and curl, and compares each output block with what the commands
// printed. In an output block "…" stands for any text (ids, elided fields,
// elided events); timestamps are compared as "<time>". When the README and
// the binary disagree, the failure prints what the binary said, ready to
// paste.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readmeBlock is a fenced block of the README: lang "sh" for commands,
// anything else for the output of the commands before it.
type readmeBlock struct {
	lang, text string
	line       int
}

// walkthroughBlocks returns the fenced blocks of the README's section
// named title, in order.
func walkthroughBlocks(t *testing.T, readme, title string) []readmeBlock {
	t.Helper()
	lines := strings.Split(readme, "\n")
	var (
		in     bool
		blocks []readmeBlock
		cur    *readmeBlock
		body   []string
	)
	for i, l := range lines {
		if strings.HasPrefix(l, "## ") {
			if in && cur == nil {
				break
			}
			in = strings.TrimSpace(strings.TrimPrefix(l, "## ")) == title
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(l, "```") {
			if cur == nil {
				cur = &readmeBlock{lang: strings.TrimPrefix(l, "```"), line: i + 1}
				body = nil
				continue
			}
			cur.text = strings.Join(body, "\n")
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		if cur != nil {
			body = append(body, l)
		}
	}
	require.NotEmpty(t, blocks, "README has no blocks under ## %s", title)
	return blocks
}

var (
	readmeTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	// An assignment of a placeholder the reader fills in by hand
	// ("CONV=conv_…   # from the answer above").
	readmePlaceholder = regexp.MustCompile(`^([A-Z_]+)=\S*….*$`)
)

// outputPattern turns a README output block into a regexp: JSON blocks
// are joined into one line (the binary prints one line per answer), "…"
// matches any text, timestamps match any timestamp.
func outputPattern(b readmeBlock) *regexp.Regexp {
	text := readmeTime.ReplaceAllString(b.text, "<time>")
	if b.lang == "json" {
		text = regexp.MustCompile(`\n\s*`).ReplaceAllString(text, "")
	}
	parts := strings.Split(text, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`(?s)^\s*` + strings.Join(parts, ".*?") + `\s*$`)
}

func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the binary")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	blocks := walkthroughBlocks(t, string(raw), "Walkthrough with curl")

	dir := t.TempDir()
	bin := buildAgentd(t, dir)
	addr := clusterFreeAddr(t)
	cfg, err := filepath.Abs(filepath.Join("..", "..", "examples", "agentd.yaml"))
	require.NoError(t, err)
	p := startProc(t, dir, "agentd", addr, bin, []string{
		"AGENTD_SERVER_ADDR=" + addr,
		"AGENTD_STORE_URL=sqlite://" + filepath.Join(dir, "agentd.db"),
	}, "serve", "-config", cfg)
	p.waitHTTP(t, "/readyz", 60*time.Second)

	vars := map[string]string{}
	var last string // what the last shell block printed
	for i, b := range blocks {
		if b.lang != "sh" {
			if i == 0 || blocks[i-1].lang != "sh" {
				t.Fatalf("README line %d: an output block that follows no commands", b.line)
			}
			got := readmeTime.ReplaceAllString(last, "<time>")
			if !outputPattern(b).MatchString(got) {
				t.Errorf("README line %d: the walkthrough's output is not what the binary prints.\nREADME:\n%s\nbinary:\n%s",
					b.line, b.text, last)
			}
			continue
		}
		var script []string
		for _, l := range strings.Split(b.text, "\n") {
			if m := readmePlaceholder.FindStringSubmatch(l); m != nil {
				v, ok := vars[m[1]]
				require.True(t, ok, "README line %d: no value for %s from the blocks before", b.line, m[1])
				l = m[1] + "=" + v
			}
			script = append(script, strings.ReplaceAll(l, "localhost:8080", addr))
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
		cmd.Env = append(os.Environ(), envList(vars)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "README line %d: %s\n%s", b.line, b.text, out)
		last = string(out)
		// The conversation a chat answer names is what the next block's
		// CONV=conv_… stands for.
		var ans struct {
			ConversationID string `json:"conversation_id"`
		}
		if json.Unmarshal(out, &ans) == nil && ans.ConversationID != "" {
			vars["CONV"] = ans.ConversationID
		}
	}
}

func envList(vars map[string]string) []string {
	var env []string
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}
