package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

const keysUsage = `agentd keys create [-config FILE] -tenant T [-scopes chat,runs] [-name N]
agentd keys list   [-config FILE] [-tenant T]
agentd keys revoke [-config FILE] PREFIX_OR_ID`

// tenantRE is what a tenant name may look like.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// cmdKeys manages client API keys in the configured store.
func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, keysUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("agentd keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", getenv(environ, "AGENTD_CONFIG"), "config file (YAML)")
	var tenant, scopes, name *string
	switch sub {
	case "create":
		tenant = fs.String("tenant", "", "tenant the key acts for (required)")
		scopes = fs.String("scopes", auth.ScopeChat+","+auth.ScopeRuns, "comma-separated scopes: chat, runs, admin")
		name = fs.String("name", "", "optional label")
	case "list":
		tenant = fs.String("tenant", "", "only this tenant's keys")
	case "revoke":
	default:
		return fmt.Errorf("%w: unknown keys command %q\n%s", errUsage, sub, keysUsage)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	var target string
	if sub == "revoke" {
		if fs.NArg() == 0 {
			return fmt.Errorf("%w: agentd keys revoke [-config FILE] PREFIX_OR_ID", errUsage)
		}
		target = fs.Arg(0)
		// Flags may follow the argument.
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	var parsedScopes []string
	if sub == "create" {
		if !tenantRE.MatchString(*tenant) {
			return fmt.Errorf("%w: -tenant is required: 1-64 letters, digits, '.', '_', '-' (not first)", errUsage)
		}
		var err error
		if parsedScopes, err = auth.ParseScopes(*scopes); err != nil {
			return fmt.Errorf("%w: -scopes: %w", errUsage, err)
		}
	}

	cfg, err := config.Load(*path, environ)
	if err != nil {
		return err
	}
	log, err := observe.NewLogger(stderr, cfg.Log.Format, "warn")
	if err != nil {
		return err
	}
	be, err := openBackend(ctx, cfg.Store.URL, log)
	if err != nil {
		return err
	}
	defer be.Store.Close()
	if err := be.Store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate store: %w", err)
	}
	keys, ok := be.Store.(store.APIKeys)
	if !ok {
		return fmt.Errorf("store %s does not support API keys", redactURL(cfg.Store.URL))
	}

	switch sub {
	case "create":
		return createKey(ctx, keys, *tenant, parsedScopes, *name, stdout, stderr)
	case "list":
		list, err := keys.ListAPIKeys(ctx, *tenant)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
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
	default: // revoke
		k, err := keys.RevokeAPIKey(ctx, target, time.Time{})
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no API key with id or prefix %q", target)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s, tenant %s) at %s\n", k.Prefix, k.ID, k.Tenant, k.RevokedAt.Format(time.RFC3339))
		return nil
	}
}

// createKey generates and stores a key and prints it once.
func createKey(ctx context.Context, keys store.APIKeys, tenant string, scopes []string, name string, stdout, stderr io.Writer) error {
	for attempt := 0; ; attempt++ {
		k, err := auth.NewKey()
		if err != nil {
			return err
		}
		err = keys.CreateAPIKey(ctx, store.APIKey{ID: k.ID, Prefix: k.Prefix, Hash: k.Hash, Tenant: tenant, Scopes: scopes, Name: name})
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue // a display prefix collision: draw again
		}
		if err != nil {
			return fmt.Errorf("store API key: %w", err)
		}
		fmt.Fprintln(stdout, k.Token)
		fmt.Fprintf(stderr, "created API key %s (%s) for tenant %q, scopes %s; it is shown only this once: store it now\n",
			k.Prefix, k.ID, tenant, strings.Join(scopes, ","))
		return nil
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// setupAuth returns the server's authenticator for cfg.Auth (nil: off) and
// logs what it means.
func setupAuth(ctx context.Context, cfg *config.Config, st any, log *slog.Logger) (*auth.Authenticator, error) {
	if cfg.Auth.Mode == config.AuthNone {
		log.Warn(cfg.AuthWarning(), "addr", cfg.Server.Addr)
		return nil, nil
	}
	keys, ok := st.(store.APIKeys)
	if !ok {
		return nil, errors.New("auth.mode keys: the store does not support API keys")
	}
	list, err := keys.ListAPIKeys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("auth: list API keys: %w", err)
	}
	active := 0
	for _, k := range list {
		if k.RevokedAt.IsZero() {
			active++
		}
	}
	if active == 0 {
		log.Warn("no API keys yet: every API request will get 401; create one with: agentd keys create -config FILE -tenant NAME (or set auth.mode: none for a local demo)")
	} else {
		log.Info("authentication: API keys", "active_keys", active, "cache_ttl", cfg.Auth.CacheTTL)
	}
	return &auth.Authenticator{Keys: keys, CacheTTL: cfg.Auth.CacheTTL}, nil
}
