package tool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"
)

// Secret refresh defaults: the key pool's (providers.anthropic.keys), so
// that tool secrets and model keys rotate the same way.
const (
	// DefaultSecretPollInterval is SecretRefreshConfig.PollInterval's
	// default.
	DefaultSecretPollInterval = 5 * time.Second
	// DefaultSecretGrace is SecretRefreshConfig.Grace's default: longer
	// than the longest agent run, so a call made with the old value and
	// an output that echoes it are still scrubbed.
	DefaultSecretGrace = 15 * time.Minute
)

// SecretSource re-reads one secret, e.g. the file of a ${file:PATH}
// reference (a mounted Kubernetes secret).
type SecretSource struct {
	// Name is the secret's name.
	Name string
	// Origin says where the value comes from, for logs ("file:/run/x");
	// never the value.
	Origin string
	// Read returns the secret's current value. Its error must not contain
	// the value.
	Read func(ctx context.Context) (string, error)
}

// SecretRefreshConfig configures a SecretRefresher.
type SecretRefreshConfig struct {
	// PollInterval is how often every source is read. Defaults to 5s.
	PollInterval time.Duration
	// Grace is how long a replaced value is still scrubbed. Defaults to
	// 15m.
	Grace time.Duration
}

// SecretRefreshOptions are a SecretRefresher's dependencies.
type SecretRefreshOptions struct {
	Log     *slog.Logger
	Metrics *Metrics
	// Changed, when set, is called after every change of the values (a
	// rotation, the end of a grace period) with Secrets.Values, so that
	// the other redactors (log redaction) learn the new values.
	Changed func(values []string)
	// Rotated, when set, is called with the name of each secret whose
	// value was replaced, after the replacement (an MCP stdio server
	// whose env uses it is restarted).
	Rotated func(name string)
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// SecretRefresher keeps Secrets fresh: it re-reads their sources every
// PollInterval (Run) and rotates a changed value in. A failed or empty read
// keeps the last good value; it is logged (once per distinct error) and
// counted.
type SecretRefresher struct {
	secrets *Secrets
	sources []SecretSource
	cfg     SecretRefreshConfig
	o       SecretRefreshOptions
	lastErr map[string]string // by secret; touched by Refresh only
	refresh chan struct{}     // a one-slot lock: Refresh runs one at a time
}

// NewSecretRefresher returns a refresher of secrets' sources.
func NewSecretRefresher(secrets *Secrets, sources []SecretSource, cfg SecretRefreshConfig, o SecretRefreshOptions) *SecretRefresher {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultSecretPollInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultSecretGrace
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &SecretRefresher{secrets: secrets, sources: sources, cfg: cfg, o: o,
		lastErr: map[string]string{}, refresh: make(chan struct{}, 1)}
}

// Run refreshes every PollInterval until ctx ends, then returns nil. With
// no source it only waits for ctx to end (a background loop that returns
// early counts as failed).
func (r *SecretRefresher) Run(ctx context.Context) error {
	if r == nil || len(r.sources) == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Refresh(ctx)
		}
	}
}

// Refresh reads every source once, rotates changed values in and ends the
// grace periods that are over. Run calls it; tests may too.
func (r *SecretRefresher) Refresh(ctx context.Context) {
	select {
	case r.refresh <- struct{}{}:
		defer func() { <-r.refresh }()
	case <-ctx.Done():
		return
	}
	changed := false
	for _, src := range r.sources {
		v, err := src.Read(ctx)
		if err == nil && v == "" {
			err = errors.New("the source yields an empty value")
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.o.Metrics.secretRefreshFailure(src.Name)
			// The message is scrubbed too: a source's error should not
			// hold a value, but the log must not depend on it.
			if msg := r.secrets.Scrub(err.Error()); msg != r.lastErr[src.Name] {
				r.o.Log.Warn("tool secret refresh failed; keeping its last value",
					"secret", src.Name, "source", src.Origin, "err", msg)
				r.lastErr[src.Name] = msg
			}
			continue
		}
		if r.lastErr[src.Name] != "" {
			r.o.Log.Info("tool secret refresh recovered", "secret", src.Name, "source", src.Origin)
			delete(r.lastErr, src.Name)
		}
		if r.secrets.Rotate(src.Name, v, r.o.Now(), r.cfg.Grace) {
			changed = true
			r.o.Metrics.secretRotated(src.Name)
			r.o.Log.Info("tool secret rotated; the replaced value is still scrubbed until its grace period ends",
				"secret", src.Name, "source", src.Origin, "fingerprint", fingerprint(v), "grace", r.cfg.Grace)
			if r.o.Rotated != nil {
				r.o.Rotated(src.Name)
			}
		}
	}
	if r.secrets.Prune(r.o.Now()) {
		changed = true
	}
	if changed && r.o.Changed != nil {
		r.o.Changed(r.secrets.Values())
	}
}

// fingerprint is the first 8 hex digits of v's sha256 (as the key pool
// logs keys): enough to tell values apart, never the value.
func fingerprint(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:4])
}
