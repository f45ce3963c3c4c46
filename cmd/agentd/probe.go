package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// errProbeFailed is a probe that reached no 2xx answer; main exits 1.
var errProbeFailed = errors.New("probe failed")

// cmdProbe is `agentd probe [-timeout D] [-quiet] URL`: one GET, exit 0 on a
// 2xx answer and 1 otherwise. It is the container HEALTHCHECK of the
// distroless image, which has neither a shell nor curl.
func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agentd probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed for the whole request")
	quiet := fs.Bool("quiet", false, "print nothing on success")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: agentd probe [-timeout 2s] [-quiet] URL   (exit 0 on 2xx, 1 otherwise)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: agentd probe wants exactly one URL", errUsage)
	}
	if *timeout <= 0 {
		return fmt.Errorf("%w: -timeout must be > 0", errUsage)
	}
	target := fs.Arg(0)
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: probe URL %q must be http(s)://host[:port]/path", errUsage, target)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	req.Header.Set("User-Agent", "agentd-probe/"+buildVersion())
	// A fresh transport: no proxy from the environment (a probe is local),
	// no connection kept for later.
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// A redirect is not an answer of agentd's health endpoints: report it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GET %s: %w", errProbeFailed, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: GET %s: %s %s", errProbeFailed, target, resp.Status, trimBody(body))
	}
	if !*quiet {
		fmt.Fprintf(stdout, "%s %s\n", resp.Status, trimBody(body))
	}
	return nil
}

func trimBody(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
