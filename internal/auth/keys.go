package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Key management (`agentd keys create|list|revoke`): the logic the CLI
// runs on the configured store.

// tenantRE is what a tenant name may look like.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidTenant reports whether name may name a tenant: 1-64 letters,
// digits, '.', '_', '-' (not first).
func ValidTenant(name string) bool { return tenantRE.MatchString(name) }

// CreateParams are the attributes of a new API key.
type CreateParams struct {
	Tenant string
	Scopes []string
	// Name is an optional label.
	Name string
}

// CreateKey generates a key, stores its hash and returns it: its Token is
// shown to nobody else and cannot be recovered later. A display prefix
// that collides with an existing key's is drawn again (up to three times).
func CreateKey(ctx context.Context, keys store.APIKeys, p CreateParams) (Key, error) {
	for attempt := 0; ; attempt++ {
		k, err := NewKey()
		if err != nil {
			return Key{}, err
		}
		err = keys.CreateAPIKey(ctx, store.APIKey{ID: k.ID, Prefix: k.Prefix, Hash: k.Hash, Tenant: p.Tenant, Scopes: p.Scopes, Name: p.Name})
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue // a display prefix collision: draw again
		}
		if err != nil {
			return Key{}, fmt.Errorf("store API key: %w", err)
		}
		return k, nil
	}
}

// RevokeKey revokes the key whose id or display prefix is idOrPrefix, now.
func RevokeKey(ctx context.Context, keys store.APIKeys, idOrPrefix string) (store.APIKey, error) {
	k, err := keys.RevokeAPIKey(ctx, idOrPrefix, time.Time{})
	if errors.Is(err, store.ErrNotFound) {
		return store.APIKey{}, fmt.Errorf("no API key with id or prefix %q", idOrPrefix)
	}
	return k, err
}

// WriteKeyTable writes list as a table (never a token or hash).
func WriteKeyTable(w io.Writer, list []store.APIKey) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tID\tTENANT\tSCOPES\tNAME\tCREATED\tREVOKED")
	for _, k := range list {
		revoked := "-"
		if !k.RevokedAt.IsZero() {
			revoked = k.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Prefix, k.ID, k.Tenant, strings.Join(k.Scopes, ","),
			orDash(k.Name), k.CreatedAt.Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
