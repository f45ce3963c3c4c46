package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/cli"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/sim"
	"github.com/agentd/agentd/internal/tool/toolset"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

const usage = `agentd serves Claude agents in production.

Usage:
  agentd serve   [-config FILE]        run the API and the agent loop
  agentd sim     [flags]               run the Claude Messages API simulator (agentd sim -h)
  agentd migrate [-config FILE]        bring the store's schema up to date
  agentd load  [flags] URL             fixed-rate (or held-concurrency) chat or -messages load, latency percentiles
  agentd smoke [flags] URL             end-to-end checks of a running agentd (exit 1 on failure)
  agentd probe [-timeout 2s] URL       GET URL, exit 0 on 2xx, 1 otherwise (container health check)
  agentd backup  [-config FILE] PATH   consistent online copy of the SQLite store to PATH
  agentd restore [-config FILE] PATH   replace the SQLite store with PATH (stop agentd first)
  agentd config check [-config FILE]   validate the config and print it, secrets masked
  agentd keys create|list|revoke      manage client API keys (agentd keys, docs/security.md)
  agentd chat  [-c CONV] AGENT         chat with an agent of a running agentd (client commands below)
  agentd runs  submit|get|list|tail|cancel   async runs of a running agentd
  agentd usage [flags]                 tokens and cost of a running agentd, as a table
  agentd bench-proxy [-addr A] URL     a bare reverse proxy to URL: the floor of the gateway benchmark
  agentd chaos SCENARIO [flags]        reliability scenarios with real processes (docs/reliability.md)
  agentd version                       print the version

FILE defaults to $AGENTD_CONFIG; with neither, built-in defaults and AGENTD_*
environment variables apply (see docs/configuration.md).

Client commands (docs/cli.md) talk HTTP to a running agentd: -url URL or
$AGENTD_URL (default http://127.0.0.1:8080), the API key in $AGENTD_API_KEY,
tables by default and -o json for scripts.
`

// errUsage marks a command-line mistake.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return cmdServe(ctx, rest, stderr, environ)
	case "sim":
		return cmdSim(ctx, rest, stderr, environ)
	case "load":
		return cmdLoad(ctx, rest, stdout, stderr)
	case "smoke":
		return cmdSmoke(ctx, rest, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr, environ)
	case "probe":
		return cmdProbe(ctx, rest, stdout, stderr)
	case "backup":
		return cmdBackup(ctx, rest, stdout, stderr, environ)
	case "restore":
		return cmdRestore(ctx, rest, stdout, stderr, environ)
	case "keys":
		return cmdKeys(ctx, rest, stdout, stderr, environ)
	case "chat", "runs", "usage":
		return cli.Main(ctx, cmd, rest, cli.IO{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Environ: environ})
	case "bench-proxy":
		return cmdBenchProxy(ctx, rest, stderr)
	case "chaos":
		return cmdChaos(ctx, rest, stdout)
	case "config":
		if len(rest) == 0 || rest[0] != "check" {
			return fmt.Errorf("%w: agentd config check [-config FILE]", errUsage)
		}
		return cmdConfigCheck(rest[1:], stdout, stderr, environ)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "agentd", buildVersion())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// loadConfig parses -config and loads the file.
func loadConfig(name string, args []string, stderr io.Writer, environ []string) (*config.Config, error) {
	return loadConfigFlags(name, args, stderr, environ, nil)
}

// loadConfigFlags is loadConfig with more flags, declared by extra.
func loadConfigFlags(name string, args []string, stderr io.Writer, environ []string, extra func(*flag.FlagSet)) (*config.Config, error) {
	fs := flag.NewFlagSet("agentd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", getenv(environ, "AGENTD_CONFIG"), "config file (YAML)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return config.Load(*path, environ)
}

func cmdConfigCheck(args []string, stdout, stderr io.Writer, environ []string) error {
	cfg, err := loadConfig("config check", args, stderr, environ)
	if err != nil {
		return err
	}
	if err := toolset.Check(cfg); err != nil {
		return err
	}
	fmt.Fprint(stdout, cfg.Redacted())
	fmt.Fprintln(stdout, "# config is valid")
	return nil
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	cfg, err := loadConfig("migrate", args, stderr, environ)
	if err != nil {
		return err
	}
	log, err := observe.NewLogger(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	v, err := app.Migrate(ctx, cfg.Store.URL, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store %s is at schema version %d (queue tables migrated)\n", config.RedactURL(cfg.Store.URL), v)
	return nil
}

func cmdSim(ctx context.Context, args []string, stderr io.Writer, environ []string) error {
	addr, cfg, err := sim.ParseFlags(args)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log, err := observe.NewLogger(stderr, "json", getenvDefault(environ, "AGENTD_LOG_LEVEL", "info"))
	if err != nil {
		return err
	}
	log.Info("Claude API simulator listening", "addr", addr)
	return sim.Run(ctx, addr, cfg, log)
}

func getenv(environ []string, key string) string {
	prefix := key + "="
	v := ""
	for _, kv := range environ {
		if strings.HasPrefix(kv, prefix) {
			v = kv[len(prefix):] // later entries win, as in os.Getenv
		}
	}
	return v
}

func getenvDefault(environ []string, key, def string) string {
	if v := getenv(environ, key); v != "" {
		return v
	}
	return def
}
