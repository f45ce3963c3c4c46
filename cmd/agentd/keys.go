package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
)

const keysUsage = `agentd keys create [-config FILE] -tenant T [-scopes chat,runs] [-name N]
agentd keys list   [-config FILE] [-tenant T]
agentd keys revoke [-config FILE] PREFIX_OR_ID`

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
		if !auth.ValidTenant(*tenant) {
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
	be, err := app.OpenBackend(ctx, cfg.Store.URL, log)
	if err != nil {
		return err
	}
	defer be.Close()
	if err := be.Store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate store: %w", err)
	}
	switch sub {
	case "create":
		k, err := auth.CreateKey(ctx, be.Store, auth.CreateParams{Tenant: *tenant, Scopes: parsedScopes, Name: *name})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, k.Token)
		fmt.Fprintf(stderr, "created API key %s (%s) for tenant %q, scopes %s; it is shown only this once: store it now\n",
			k.Prefix, k.ID, *tenant, strings.Join(parsedScopes, ","))
		return nil
	case "list":
		list, err := be.Store.ListAPIKeys(ctx, *tenant)
		if err != nil {
			return err
		}
		return auth.WriteKeyTable(stdout, list)
	default: // revoke
		k, err := auth.RevokeKey(ctx, be.Store, target)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s, tenant %s) at %s\n", k.Prefix, k.ID, k.Tenant, k.RevokedAt.Format(time.RFC3339))
		return nil
	}
}
