// Package auth authenticates API clients: API keys ("agd_" and 52 base32
// characters, 32 random bytes) that map to a tenant and a set of scopes.
//
// A key is never stored: the store keeps the hex SHA-256 of the whole key
// (looked up by an index, then compared in constant time) and a short
// display prefix ("agd_" and 8 characters) that names the key in listings
// and logs. Lookups are not cached: a revoked key stops working on every
// instance with the next request.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// KeyPrefix starts every API key.
const KeyPrefix = "agd_"

// displayChars is how many characters of the random part the display
// prefix shows (40 bits: enough to name a key, far too few to guess it).
const displayChars = 8

// Scopes.
const (
	// ScopeChat: POST /v1/chat and the conversation endpoints.
	ScopeChat = "chat"
	// ScopeRuns: the /v1/runs endpoints.
	ScopeRuns = "runs"
	// ScopeAdmin: the /admin/* endpoints; it also grants every other scope
	// (within the key's tenant).
	ScopeAdmin = "admin"
	// ScopeApprove: deciding on tool calls that wait for a person's
	// approval (POST /v1/runs/{id}/approvals), within the key's tenant.
	ScopeApprove = "approve"
)

// AllScopes are the known scopes.
var AllScopes = []string{ScopeChat, ScopeRuns, ScopeAdmin, ScopeApprove}

// Errors of Authenticate.
var (
	// ErrNoKey: the request carries no key.
	ErrNoKey = errors.New("no API key")
	// ErrInvalidKey: unknown, malformed or revoked (callers must not be
	// able to tell which).
	ErrInvalidKey = errors.New("invalid API key")
)

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Key is a newly generated key.
type Key struct {
	// Token is the key itself; shown once, never stored.
	Token string
	// Hash is Hash(Token).
	Hash string
	// Prefix is DisplayPrefix(Token).
	Prefix string
	// ID is the key's id ("key_" and hex).
	ID string
}

// NewKey generates a key.
func NewKey() (Key, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return Key{}, fmt.Errorf("generate API key: %w", err)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, fmt.Errorf("generate API key id: %w", err)
	}
	tok := KeyPrefix + strings.ToLower(encoding.EncodeToString(secret[:]))
	return Key{Token: tok, Hash: Hash(tok), Prefix: DisplayPrefix(tok), ID: "key_" + hex.EncodeToString(id[:])}, nil
}

// Hash is the lower-case hex SHA-256 of a key, as stored.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// DisplayPrefix is the part of a key that may be shown and logged.
func DisplayPrefix(token string) string {
	if len(token) < len(KeyPrefix)+displayChars {
		return KeyPrefix + "?"
	}
	return token[:len(KeyPrefix)+displayChars]
}

// ParseScopes parses "chat,runs": known scopes, at least one, no
// duplicates; returned in the order given.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !slices.Contains(AllScopes, sc) {
			return nil, fmt.Errorf("unknown scope %q (want %s)", sc, strings.Join(AllScopes, ", "))
		}
		if slices.Contains(out, sc) {
			return nil, fmt.Errorf("scope %q given twice", sc)
		}
		out = append(out, sc)
	}
	if len(out) == 0 {
		return nil, errors.New("at least one scope is required")
	}
	return out, nil
}

// Principal is who a request acts for.
type Principal struct {
	Tenant string
	// KeyID and KeyPrefix name the key; empty when authentication is off.
	KeyID     string
	KeyPrefix string
	Scopes    []string
}

// Has reports whether p may use scope (admin grants every scope).
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, ScopeAdmin)
}

// HasAny reports whether p has one of scopes.
func (p Principal) HasAny(scopes ...string) bool {
	for _, s := range scopes {
		if p.Has(s) {
			return true
		}
	}
	return false
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// KeyLookup is what Authenticator needs of the store.
type KeyLookup interface {
	GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error)
}

// Authenticator checks keys against the store, on every call unless
// CacheTTL is set.
type Authenticator struct {
	Keys KeyLookup
	// CacheTTL, when > 0, keeps a key found valid for that long before it
	// is looked up again: a revoked key then works up to CacheTTL longer.
	// Unknown and revoked keys are never cached. <= 0 (the zero value):
	// every request looks its key up, and a revocation takes effect at
	// once. agentd's configuration defaults it to 1s (auth.cache_ttl).
	CacheTTL time.Duration
	// Now is the clock (tests); defaults to time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey // by hash
}

type cachedKey struct {
	p       Principal
	expires time.Time
}

// maxCachedKeys bounds the cache; past it the cache starts over.
const maxCachedKeys = 10000

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Authenticator) cached(h string) (Principal, bool) {
	if a.CacheTTL <= 0 {
		return Principal{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[h]
	if !ok || !a.now().Before(c.expires) {
		return Principal{}, false
	}
	return c.p, true
}

func (a *Authenticator) remember(h string, p Principal) {
	if a.CacheTTL <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cache == nil || len(a.cache) >= maxCachedKeys {
		a.cache = make(map[string]cachedKey)
	}
	a.cache[h] = cachedKey{p: p, expires: a.now().Add(a.CacheTTL)}
}

// ForgetKey drops the cached validity of the key with id, so that a
// revocation made through this process (the console) takes effect on this
// instance at once; other instances see it within CacheTTL.
func (a *Authenticator) ForgetKey(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, c := range a.cache {
		if c.p.KeyID == id {
			delete(a.cache, h)
		}
	}
}

// Authenticate returns the principal of token: ErrNoKey for an empty
// token, ErrInvalidKey for an unknown, malformed or revoked one, another
// error when the store failed.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrNoKey
	}
	if !strings.HasPrefix(token, KeyPrefix) || len(token) > 256 {
		return Principal{}, ErrInvalidKey
	}
	h := Hash(token)
	if p, ok := a.cached(h); ok {
		return p, nil
	}
	k, err := a.Keys.GetAPIKeyByHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrInvalidKey
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up API key: %w", err)
	}
	// The index found the row; compare the hash in constant time anyway so
	// that no code path compares key material with an early exit.
	if subtle.ConstantTimeCompare([]byte(k.Hash), []byte(h)) != 1 {
		return Principal{}, ErrInvalidKey
	}
	if !k.RevokedAt.IsZero() {
		return Principal{}, ErrInvalidKey
	}
	p := Principal{Tenant: k.Tenant, KeyID: k.ID, KeyPrefix: k.Prefix, Scopes: k.Scopes}
	a.remember(h, p)
	return p, nil
}

// TokenFrom extracts the key of a request's headers: "Authorization:
// Bearer <key>" or "x-api-key: <key>" ("" if neither).
func TokenFrom(authorization, xAPIKey string) string {
	if v, ok := strings.CutPrefix(authorization, "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(xAPIKey)
}
