package sim

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"time"
)

// DefaultAddr is the listen address of `agentd sim` unless -addr is given.
const DefaultAddr = "127.0.0.1:8090"

// ParseFlags parses the flags of `agentd sim` into a listen address and a
// Config, and validates them. For -h/-help it returns an error wrapping
// flag.ErrHelp whose text includes the usage.
func ParseFlags(args []string) (addr string, cfg Config, err error) {
	fs := flag.NewFlagSet("agentd sim", flag.ContinueOnError)
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.StringVar(&addr, "addr", DefaultAddr, "listen address")
	fs.StringVar(&cfg.APIKey, "api-key", "", "require this API key (x-api-key or Authorization: Bearer), or any of a comma-separated list; empty accepts any")
	fs.DurationVar(&cfg.Latency, "latency", 0, "fixed latency before each response / before message_start")
	fs.DurationVar(&cfg.LatencyJitter, "jitter", 0, "uniform random extra latency in [0, jitter)")
	fs.DurationVar(&cfg.TailLatency, "tail-latency", 0, "extra latency for the -tail-rate share of requests")
	fs.Float64Var(&cfg.TailRate, "tail-rate", 0, "share of requests, in [0,1], that get -tail-latency extra")
	fs.DurationVar(&cfg.TTFT, "ttft", 0, "stream: delay between message_start and the first content delta")
	fs.DurationVar(&cfg.EventDelay, "event-delay", 0, "stream: delay between deltas")
	fs.Float64Var(&cfg.Rate429, "rate-429", 0, "share of requests failing with 429 rate_limit_error")
	fs.Float64Var(&cfg.Rate529, "rate-529", 0, "share of requests failing with 529 overloaded_error")
	fs.Float64Var(&cfg.Rate500, "rate-500", 0, "share of requests failing with 500 api_error")
	fs.Float64Var(&cfg.RateCut, "rate-cut", 0, "share of requests whose response is cut mid-way")
	fs.DurationVar(&cfg.RetryAfter, "retry-after", defaultRetryAfter, "retry-after of 429 responses")
	fs.IntVar(&cfg.Words, "words", defaultWords, "number of words of a plain text answer")
	fs.Int64Var(&cfg.Seed, "seed", 0, "random seed for faults and jitter (0: time-based)")
	fs.BoolVar(&cfg.Ledger, "ledger", false, "count requests per conversation and message count, served at GET /sim/ledger")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", Config{}, fmt.Errorf("%w\n%s", err, usage.String())
		}
		return "", Config{}, err
	}
	if fs.NArg() > 0 {
		return "", Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if addr == "" {
		return "", Config{}, errors.New("-addr must not be empty")
	}
	if err := cfg.validate(flagNames); err != nil {
		return "", Config{}, err
	}
	return addr, cfg, nil
}

var flagNames = map[string]string{
	"Latency": "-latency", "LatencyJitter": "-jitter", "TailLatency": "-tail-latency",
	"TailRate": "-tail-rate", "TTFT": "-ttft", "EventDelay": "-event-delay",
	"Rate429": "-rate-429", "Rate529": "-rate-529", "Rate500": "-rate-500",
	"RateCut": "-rate-cut", "RetryAfter": "-retry-after", "Words": "-words",
}

// Validate reports the first out-of-range field of c: negative durations or
// Words, rates outside [0,1], fault rates summing over 1.
func (c Config) Validate() error { return c.validate(nil) }

func (c Config) validate(names map[string]string) error {
	name := func(f string) string {
		if n, ok := names[f]; ok {
			return n
		}
		return f
	}
	for _, d := range []struct {
		f string
		v time.Duration
	}{
		{"Latency", c.Latency}, {"LatencyJitter", c.LatencyJitter}, {"TailLatency", c.TailLatency},
		{"TTFT", c.TTFT}, {"EventDelay", c.EventDelay}, {"RetryAfter", c.RetryAfter},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s must be >= 0, got %v", name(d.f), d.v)
		}
	}
	for _, r := range []struct {
		f string
		v float64
	}{
		{"TailRate", c.TailRate}, {"Rate429", c.Rate429}, {"Rate529", c.Rate529},
		{"Rate500", c.Rate500}, {"RateCut", c.RateCut},
	} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("%s must be in [0,1], got %v", name(r.f), r.v)
		}
	}
	if sum := c.Rate429 + c.Rate529 + c.Rate500 + c.RateCut; sum > 1+1e-9 {
		return fmt.Errorf("%s + %s + %s + %s must be <= 1, got %v",
			name("Rate429"), name("Rate529"), name("Rate500"), name("RateCut"), sum)
	}
	if c.Words < 0 {
		return fmt.Errorf("%s must be >= 0, got %d", name("Words"), c.Words)
	}
	return nil
}

// Run listens on addr and serves the simulator until ctx is done, then shuts
// down gracefully.
func Run(ctx context.Context, addr string, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sim: listen: %w", err)
	}
	return Serve(ctx, ln, cfg, log)
}

// Serve serves the simulator on ln until ctx is done, then shuts down
// gracefully (waiting up to 5s for requests in flight). It closes ln. Use it
// with a listener on port 0 to learn the address before serving.
func Serve(ctx context.Context, ln net.Listener, cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// HTTP/1.1 and HTTP/2 without TLS (h2c with prior knowledge): a
	// client that speaks h2c (providers.anthropic.h2c) multiplexes its
	// calls over a few connections, as it would over TLS to the real API.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           New(cfg, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		Protocols:         &protocols,
	}
	log.Info("sim: serving the Messages API simulator", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sim: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sim: shutdown: %w", err)
	}
	return nil
}
