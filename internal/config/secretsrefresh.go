package config

import (
	"errors"
	"slices"
	"strings"
	"time"
)

// SecretsRefresh re-reads the tool secrets (Config.Secrets) whose value
// comes from a file (a ${file:PATH} reference, typically a mounted
// Kubernetes secret) while agentd runs, so that a rotated credential needs
// no restart. The names and defaults are those of the model key pool
// (providers.anthropic.keys). Secrets from ${env:NAME} or literal values
// cannot change while the process runs and are not re-read.
type SecretsRefresh struct {
	// PollInterval is how often the files are re-read. Defaults to 5s
	// (tool.DefaultSecretPollInterval).
	PollInterval time.Duration `yaml:"poll_interval"`
	// Grace is how long a replaced value is still scrubbed from tool
	// output and logs. Defaults to 15m (tool.DefaultSecretGrace).
	Grace time.Duration `yaml:"grace"`

	// sources are the refreshable secrets, recorded by Load before the
	// references are resolved.
	sources []RefreshableSecret
}

// RefreshableSecret is a secret whose value is read from one or more
// files: Read reads them again.
type RefreshableSecret struct {
	// Name is the secret's name (its key under secrets).
	Name string
	// Files are the paths of its ${file:PATH} references, as written.
	Files []string

	template string            // the value as written, with its references
	env      map[string]string // the environment of Load, for ${env:} parts
	baseDir  string
}

// Read resolves the secret's references again and returns its value. An
// error names the reference, never a value.
func (s RefreshableSecret) Read() (string, error) {
	v, err := expand(s.template, s.env, s.baseDir)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(v) == "" {
		return "", errors.New("empty value")
	}
	return v, nil
}

// RefreshableSecrets returns the secrets whose value holds a ${file:PATH}
// reference, sorted by name; empty for a Config that did not come from
// Load.
func (c *Config) RefreshableSecrets() []RefreshableSecret {
	return slices.Clone(c.SecretsRefresh.sources)
}

// recordSecretSources remembers, before resolveRefs replaces them, the
// values of the secrets that reference a file.
func (c *Config) recordSecretSources(env map[string]string, baseDir string) {
	c.SecretsRefresh.sources = nil
	for name, raw := range c.Secrets {
		files := fileRefs(string(raw))
		if len(files) == 0 {
			continue
		}
		c.SecretsRefresh.sources = append(c.SecretsRefresh.sources, RefreshableSecret{
			Name: name, Files: files, template: string(raw), env: env, baseDir: baseDir,
		})
	}
	slices.SortFunc(c.SecretsRefresh.sources, func(a, b RefreshableSecret) int { return strings.Compare(a.Name, b.Name) })
}

// fileRefs returns the paths of the ${file:PATH} references of s (not the
// escaped $${file:...} ones).
func fileRefs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "${file:")
		if i < 0 {
			return out
		}
		rest := s[i+len("${file:"):]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return out
		}
		if i == 0 || s[i-1] != '$' {
			out = append(out, rest[:end])
		}
		s = rest[end+1:]
	}
}

// validateSecretsRefresh checks the secrets_refresh section.
func (c *Config) validateSecretsRefresh(v *validator) {
	v.nonNegative("secrets_refresh.poll_interval", c.SecretsRefresh.PollInterval)
	v.nonNegative("secrets_refresh.grace", c.SecretsRefresh.Grace)
	if d := c.SecretsRefresh.PollInterval; d > 0 && d < minSecretsPollInterval {
		v.add("secrets_refresh.poll_interval", "must be at least "+minSecretsPollInterval.String()+" (or 0 for the default, 5s)")
	}
}

// minSecretsPollInterval keeps a typo ("5ms") from re-reading files in a
// tight loop.
const minSecretsPollInterval = 100 * time.Millisecond
