package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// cmdBenchProxy serves a bare httputil.ReverseProxy in front of URL: the
// floor the gateway's added latency is measured against
// (docs/benchmarks.md). It adds nothing of agentd's.
func cmdBenchProxy(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("agentd bench-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8191", "listen address")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: agentd bench-proxy [-addr ADDR] UPSTREAM_URL", errUsage)
	}
	target, err := url.Parse(fs.Arg(0))
	if err != nil || target.Host == "" {
		return fmt.Errorf("%w: upstream URL %q: not an absolute URL", errUsage, fs.Arg(0))
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	direct := rp.Director
	rp.Director = func(r *http.Request) {
		direct(r)
		// Send a copy of the body: with the inbound body passed through,
		// 2-3 % of streams broke under load ("use of closed network
		// connection" on the upstream read), a floor that is not one.
		if b, err := io.ReadAll(r.Body); err == nil {
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		}
	}
	// FlushInterval 0: ReverseProxy flushes text/event-stream answers at
	// every write by itself.
	// The same pool sizing as agentd's provider client.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 512
	rp.Transport = tr
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(stderr, "bench-proxy: %s → %s\n", ln.Addr(), target)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
