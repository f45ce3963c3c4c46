package resilience

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/llm"
)

// Key pool defaults.
const (
	// DefaultKeyGrace is KeysConfig.Grace's default: longer than the
	// longest agent run, so calls started with a rotated-out key finish.
	DefaultKeyGrace = 15 * time.Minute
	// DefaultKeyPollInterval is KeysConfig.PollInterval's default.
	DefaultKeyPollInterval = 5 * time.Second
	// DefaultKeyCommandTTL is KeySourceConfig.TTL's default for commands.
	DefaultKeyCommandTTL = time.Hour
	// DefaultKeyCommandTimeout is KeysConfig.CommandTimeout's default.
	DefaultKeyCommandTimeout = 30 * time.Second
	// keyCommandRetry is the wait before re-running a failed command, and
	// the shortest interval between runs forced by a rejected key.
	keyCommandRetry = time.Minute
)

// KeySourceConfig is one source of API keys. Exactly one of Value, Env, File
// and Command is set. A source yields one or more keys separated by
// newlines, commas or spaces; the first is its preferred one.
type KeySourceConfig struct {
	// Value is a literal key (the classic providers.anthropic.api_key).
	Value string
	// Env names an environment variable, read at start and at every poll.
	Env string
	// File is a path, typically a mounted Kubernetes secret; it is re-read
	// every KeysConfig.PollInterval, so a rotated secret is picked up
	// without restart.
	File string
	// Command is run (argv, no shell) to print the keys, e.g. a secrets
	// manager's CLI. Its output is cached for TTL and refreshed in the
	// background, never per call; a failed refresh keeps the last keys and
	// is retried after a minute.
	Command []string
	// TTL is how long a Command's output is used. Defaults to 1h.
	TTL time.Duration
}

// KeysConfig configures a provider's key pool.
type KeysConfig struct {
	// Sources, in order of preference: the primary key is the first key of
	// the first source that yields a usable one.
	Sources []KeySourceConfig
	// Grace is how long a key that its source no longer yields (rotated
	// out) stays usable as a backup before it is dropped. Defaults to 15m.
	Grace time.Duration
	// PollInterval is how often Env and File sources are re-read.
	// Defaults to 5s.
	PollInterval time.Duration
	// CommandTimeout bounds one run of a Command source. Defaults to 30s.
	CommandTimeout time.Duration
}

func (c KeysConfig) withDefaults() KeysConfig {
	if c.Grace <= 0 {
		c.Grace = DefaultKeyGrace
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultKeyPollInterval
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultKeyCommandTimeout
	}
	c.Sources = slices.Clone(c.Sources)
	for i := range c.Sources {
		if len(c.Sources[i].Command) > 0 && c.Sources[i].TTL <= 0 {
			c.Sources[i].TTL = DefaultKeyCommandTTL
		}
	}
	return c
}

// KeyState is a key's state; its value is the agentd_key_state gauge's.
type KeyState int

// Key states.
const (
	// KeyBad: the provider rejected the key (401/403). It is tried again
	// only when no other key is left, and becomes good when it works.
	KeyBad KeyState = 0
	// KeyBackup: its source no longer yields it (rotated out); usable
	// until its grace period ends.
	KeyBackup KeyState = 1
	// KeyActive: its source yields it.
	KeyActive KeyState = 2
)

func (s KeyState) String() string {
	switch s {
	case KeyBad:
		return "bad"
	case KeyBackup:
		return "backup"
	}
	return "active"
}

// KeyStatus is one key as GET /admin/keys shows it: never the key itself.
type KeyStatus struct {
	// Fingerprint is the first 8 hex digits of the key's sha256.
	Fingerprint string `json:"fingerprint"`
	// State is "active", "backup" or "bad".
	State string `json:"state"`
	// Primary marks the key calls use first.
	Primary bool `json:"primary"`
	// Source is "config", "env:NAME", "file:PATH" or "command:NAME".
	Source      string    `json:"source"`
	AddedAt     time.Time `json:"added_at"`
	LastUsed    time.Time `json:"last_used,omitzero"`
	BackupUntil time.Time `json:"backup_until,omitzero"`
	BadSince    time.Time `json:"bad_since,omitzero"`
}

// Fingerprint returns the first 8 hex digits of key's sha256, the only form
// of a key agentd logs or shows.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

type keyEntry struct {
	key, fp, source string
	order           int // rank among listed keys (source index, position)
	listed          bool
	bad             bool
	badSince        time.Time
	backupUntil     time.Time
	lastUsed        time.Time
	added           time.Time
}

func (k *keyEntry) state() KeyState {
	switch {
	case k.bad:
		return KeyBad
	case k.listed:
		return KeyActive
	}
	return KeyBackup
}

type keySource struct {
	cfg  KeySourceConfig
	name string
	// keys is the source's last successful read.
	keys []string
	// next is when a Command source runs again.
	next time.Time
	// lastErr is the last read error's text, logged once per change.
	lastErr string
}

// KeyPool holds a provider's API keys, re-reads their sources in the
// background (Run) and picks the key of each call.
type KeyPool struct {
	cfg     KeysConfig
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	kick    chan struct{}

	srcMu   sync.Mutex // serializes refreshes
	sources []*keySource

	mu   sync.Mutex
	keys map[string]*keyEntry
}

// NewKeyPool reads every source once and fails when one of them fails or
// when no source yields a key. Call Run to keep the keys fresh.
func NewKeyPool(ctx context.Context, cfg KeysConfig, m *Metrics, log *slog.Logger) (*KeyPool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	p := &KeyPool{cfg: cfg, metrics: m, log: log, now: time.Now, kick: make(chan struct{}, 1), keys: map[string]*keyEntry{}}
	if len(cfg.Sources) == 0 {
		return nil, errors.New("key pool: no key source configured")
	}
	var errs []error
	for i, sc := range cfg.Sources {
		n := 0
		for _, set := range []bool{sc.Value != "", sc.Env != "", sc.File != "", len(sc.Command) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("key source %d: exactly one of value, env, file and command must be set", i))
			continue
		}
		s := &keySource{cfg: sc, name: sourceName(sc)}
		keys, err := p.read(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("key source %s: %w", s.name, err))
			continue
		}
		s.keys = keys
		if len(sc.Command) > 0 {
			s.next = p.now().Add(sc.TTL)
		}
		p.sources = append(p.sources, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.apply()
	if len(p.Snapshot()) == 0 {
		return nil, errors.New("key pool: the key sources yield no key")
	}
	return p, nil
}

func sourceName(sc KeySourceConfig) string {
	switch {
	case sc.Env != "":
		return "env:" + sc.Env
	case sc.File != "":
		return "file:" + sc.File
	case len(sc.Command) > 0:
		return "command:" + filepath.Base(sc.Command[0])
	}
	return "config"
}

// read returns a source's keys.
func (p *KeyPool) read(ctx context.Context, s *keySource) ([]string, error) {
	var raw string
	switch c := s.cfg; {
	case c.Value != "":
		raw = c.Value
	case c.Env != "":
		raw = os.Getenv(c.Env)
	case c.File != "":
		b, err := os.ReadFile(c.File)
		if err != nil {
			return nil, err
		}
		raw = string(b)
	case len(c.Command) > 0:
		cctx, cancel := context.WithTimeout(ctx, p.cfg.CommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(cctx, c.Command[0], c.Command[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			// The command's stderr is not repeated: a secrets manager may
			// print (parts of) keys there.
			return nil, fmt.Errorf("run %s: %w (%d bytes on stderr, not shown)", filepath.Base(c.Command[0]), err, stderr.Len())
		}
		raw = string(out)
	}
	return strings.FieldsFunc(raw, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t'
	}), nil
}

// Run re-reads the sources until ctx ends: Env and File sources every
// PollInterval, Command sources when their TTL is over (and, at most once a
// minute, when a key was rejected). It returns nil when ctx ends.
func (p *KeyPool) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.kick:
			forced = true
		}
		p.Refresh(ctx, forced)
	}
}

// Refresh re-reads the sources that are due (every Env and File source;
// Command sources past their TTL, or also those run over a minute ago when
// force is set) and applies the result. Run calls it; tests may too.
func (p *KeyPool) Refresh(ctx context.Context, force bool) {
	p.srcMu.Lock()
	defer p.srcMu.Unlock()
	now := p.now()
	for _, s := range p.sources {
		isCmd := len(s.cfg.Command) > 0
		if isCmd {
			due := !now.Before(s.next) || (force && !now.Before(s.next.Add(-s.cfg.TTL+keyCommandRetry)))
			if !due {
				continue
			}
		}
		keys, err := p.read(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if msg := err.Error(); msg != s.lastErr {
				p.log.Warn("key source refresh failed; keeping its last keys", "source", s.name, "err", err)
				s.lastErr = msg
			}
			if isCmd {
				s.next = now.Add(keyCommandRetry)
			}
			continue
		}
		if s.lastErr != "" {
			p.log.Info("key source refresh recovered", "source", s.name)
			s.lastErr = ""
		}
		if isCmd {
			s.next = now.Add(s.cfg.TTL)
		}
		if s.cfg.File != "" && len(keys) == 0 && len(s.keys) > 0 {
			// A secret mid-update can be empty for a moment: keep the last
			// keys rather than drop them.
			continue
		}
		s.keys = keys
	}
	p.apply()
}

// apply reconciles the pool with the sources' keys. Caller holds srcMu (or
// is the constructor).
func (p *KeyPool) apply() {
	now := p.now()
	listed := map[string]int{}
	names := map[string]string{}
	for i, s := range p.sources {
		for j, k := range s.keys {
			if _, ok := listed[k]; !ok {
				listed[k] = i<<16 | j
				names[k] = s.name
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, order := range listed {
		e, ok := p.keys[k]
		if !ok {
			e = &keyEntry{key: k, fp: Fingerprint(k), source: names[k], added: now}
			p.keys[k] = e
			p.log.Info("API key added", "fingerprint", e.fp, "source", e.source)
		} else if !e.listed {
			p.log.Info("API key listed again by its source", "fingerprint", e.fp, "source", names[k])
		}
		e.order, e.listed, e.backupUntil, e.source = order, true, time.Time{}, names[k]
		p.metrics.keyState(e.fp, e.state())
	}
	for k, e := range p.keys {
		if _, ok := listed[k]; ok {
			continue
		}
		if e.listed {
			e.listed = false
			e.backupUntil = now.Add(p.cfg.Grace)
			p.log.Info("API key rotated out; kept as a backup", "fingerprint", e.fp, "source", e.source, "until", e.backupUntil)
		}
		if !now.Before(e.backupUntil) {
			delete(p.keys, k)
			p.metrics.keyDropped(e.fp)
			p.log.Info("API key dropped: grace period over", "fingerprint", e.fp, "source", e.source)
			continue
		}
		p.metrics.keyState(e.fp, e.state())
	}
}

// candidates returns the keys in the order calls try them: active keys by
// source order, then backups (most recently rotated out first), then, as a
// last resort, keys marked bad.
func (p *KeyPool) candidates() []*keyEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*keyEntry, 0, len(p.keys))
	for _, e := range p.keys {
		out = append(out, e)
	}
	rank := func(e *keyEntry) int {
		if e.bad {
			return 2
		}
		if e.listed {
			return 0
		}
		return 1
	}
	slices.SortFunc(out, func(a, b *keyEntry) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		switch {
		case a.bad:
			return a.badSince.Compare(b.badSince)
		case a.listed:
			return a.order - b.order
		}
		return b.backupUntil.Compare(a.backupUntil)
	})
	return out
}

func (p *KeyPool) used(e *keyEntry, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.lastUsed = p.now()
	if ok && e.bad {
		e.bad, e.badSince = false, time.Time{}
		p.log.Info("API key works again", "fingerprint", e.fp, "source", e.source)
		if _, present := p.keys[e.key]; present {
			p.metrics.keyState(e.fp, e.state())
		}
	}
}

func (p *KeyPool) markBad(e *keyEntry, status int) {
	p.metrics.keyRejected(e.fp)
	p.mu.Lock()
	was, src := e.bad, e.source
	if !was {
		e.bad, e.badSince = true, p.now()
		if _, present := p.keys[e.key]; present {
			p.metrics.keyState(e.fp, KeyBad)
		}
	}
	p.mu.Unlock()
	if !was {
		p.log.Warn("API key rejected by the provider; marked bad", "fingerprint", e.fp, "source", src, "status", status)
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Values returns the pool's current keys (the secret guard keeps them out
// of prompts). Callers must never log them.
func (p *KeyPool) Values() []string {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.keys))
	for k := range p.keys {
		out = append(out, k)
	}
	return out
}

// Snapshot returns the keys' states (for GET /admin/keys), primary first.
func (p *KeyPool) Snapshot() []KeyStatus {
	cands := p.candidates()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]KeyStatus, 0, len(cands))
	for i, e := range cands {
		out = append(out, KeyStatus{
			Fingerprint: e.fp, State: e.state().String(), Primary: i == 0 && !e.bad, Source: e.source,
			AddedAt: e.added, LastUsed: e.lastUsed, BackupUntil: e.backupUntil, BadSince: e.badSince,
		})
	}
	return out
}

// Keys returns next with the pool's keys: each attempt uses the primary key
// (set on the context with llm.WithAPIKey); when the provider rejects it with
// 401 or 403 (401 only for gateway calls, see keyRefused) the key is marked
// bad and the attempt is made once more with the next key.
func Keys(next llm.Model, p *KeyPool) llm.Model { return &keyModel{next: next, pool: p} }

// keyRefused reports whether e says the provider refused the attempt's
// key: a 401, or a 403 for agentd's own calls. A raw gateway call's 403
// may be about what the client asked (a beta the organization lacks): it
// is the client's answer, and must not mark a shared key bad.
func keyRefused(e *llm.Error, req llm.Request) bool {
	return e.Status == http.StatusUnauthorized || (e.Status == http.StatusForbidden && req.Passthrough == nil)
}

type keyModel struct {
	next llm.Model
	pool *KeyPool
}

func (m *keyModel) Stream(ctx context.Context, req llm.Request, onDelta llm.DeltaFunc) (llm.Response, error) {
	cands := m.pool.candidates()
	if len(cands) == 0 {
		return llm.Response{}, &llm.Error{Status: http.StatusUnauthorized, Type: TypeNoKey, Message: "no API key available: the key sources yield none"}
	}
	var (
		resp llm.Response
		err  error
	)
	for _, e := range cands[:min(2, len(cands))] {
		streamed := false
		resp, err = m.next.Stream(llm.WithAPIKey(ctx, e.key), req, func(d llm.Delta) {
			streamed = true
			if onDelta != nil {
				onDelta(d)
			}
		})
		m.pool.used(e, err == nil)
		if err == nil {
			return resp, nil
		}
		le, ok := llm.AsError(err)
		if !ok || streamed || !keyRefused(le, req) {
			return resp, err
		}
		m.pool.markBad(e, le.Status)
	}
	return resp, err
}
