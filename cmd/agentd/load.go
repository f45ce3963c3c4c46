package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd/agentd/internal/loadgen"
)

// loadTarget is what a load request talks to.
type loadTarget struct {
	base    string
	agent   string
	message string
	stream  bool
	client  *http.Client
	// msgs, when set, sends Messages API calls instead of chats.
	msgs *messagesLoad
}

// chat sends one chat and reads the whole answer (for streams: until the
// done event). It fails on any non-200 status or an error event.
func (t *loadTarget) chat(ctx context.Context, n int64) error {
	if t.msgs != nil {
		return t.msgs.call(ctx, n)
	}
	body, _ := json.Marshal(map[string]any{"agent": t.agent, "message": fmt.Sprintf("%s (#%d)", t.message, n), "stream": t.stream})
	resp, err := postOK(ctx, t.client, t.base+"/v1/chat", body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !t.stream {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "event: done":
			_, _ = io.Copy(io.Discard, resp.Body)
			return nil
		case line == "event: error":
			return errors.New("the stream ended with an error event")
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the stream ended without a done event")
}

// postOK posts a JSON body with header and returns the answer when it is
// a 200; any other status is an error with the start of its body.
func postOK(ctx context.Context, client *http.Client, url string, body []byte, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return resp, nil
}

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agentd load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "demo", "agent to chat with")
	message := fs.String("message", "hello from agentd load", "message text (a counter is appended)")
	stream := fs.Bool("stream", false, "use SSE streaming chats")
	rate := fs.Float64("rate", 10, "open-loop mode: chats started per second")
	duration := fs.Duration("duration", 30*time.Second, "open-loop mode: measured duration")
	warmup := fs.Duration("warmup", 2*time.Second, "open-loop mode: unmeasured warm-up")
	maxInFlight := fs.Int("max-in-flight", loadgen.DefaultMaxInFlight, "open-loop mode: chats in flight before new ones are dropped")
	concurrent := fs.Int("concurrent", 0, "hold mode: open this many chats at once (ramped over -ramp) and wait for all, instead of a fixed rate")
	ramp := fs.Duration("ramp", 5*time.Second, "hold mode: time over which the chats are opened")
	timeout := fs.Duration("timeout", 2*time.Minute, "timeout of one chat")
	pid := fs.Int("pid", 0, "report the peak RSS (VmHWM) of this process (agentd on the same machine)")
	maxErrors := fs.Float64("max-error-rate", 0, "exit non-zero when the share of failed chats is above this")
	messages := fs.Bool("messages", false, "send Anthropic Messages API calls (POST URL/v1/messages: agentd's gateway, a proxy or the sim) instead of chats")
	model := fs.String("model", "claude-sonnet-4-5", "messages mode: the model asked for")
	maxTokens := fs.Int("max-tokens", 64, "messages mode: max_tokens of each call")
	apiKey := fs.String("api-key", os.Getenv("AGENTD_API_KEY"), "client API key (defaults to $AGENTD_API_KEY; not needed with auth: none)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: agentd load [flags] URL (e.g. http://127.0.0.1:8080)", errUsage)
	}
	if !strings.HasPrefix(fs.Arg(0), "http://127.0.0.1") && !strings.HasPrefix(fs.Arg(0), "http://localhost") && os.Getenv("AGENTD_LOAD_ANY_HOST") == "" {
		return fmt.Errorf("%w: load targets 127.0.0.1 or localhost only (set AGENTD_LOAD_ANY_HOST=1 to override)", errUsage)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = 0, 100000, 0
	t := &loadTarget{base: strings.TrimRight(fs.Arg(0), "/"), agent: *agent, message: *message, stream: *stream,
		client: &http.Client{Transport: withAPIKey(tr, *apiKey), Timeout: *timeout}}
	if *messages {
		t.msgs = &messagesLoad{url: t.base + "/v1/messages", model: *model, max: *maxTokens, text: *message,
			stream: *stream, client: t.client}
	}

	var failed, total float64
	if *concurrent > 0 {
		res := holdLoad(ctx, t, *concurrent, *ramp, stdout)
		fmt.Fprintln(stdout, res)
		failed, total = float64(res.errors), float64(res.count)
	} else {
		var n atomic.Int64
		cfg := loadgen.Config{Rate: *rate, Duration: *duration, Warmup: *warmup, MaxInFlight: *maxInFlight, Timeout: *timeout}
		stop := progress(ctx, stdout, func() string { return fmt.Sprintf("%d chats started", n.Load()) })
		res, err := loadgen.Run(ctx, cfg, func(ctx context.Context) error { return t.chat(ctx, n.Add(1)) })
		stop()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, res)
		if t.msgs != nil && t.stream {
			fmt.Fprintln(stdout, "time to first event:", t.msgs.firstEvent())
		}
		if res.FirstErr != nil {
			fmt.Fprintln(stdout, "first error:", res.FirstErr)
		}
		failed, total = float64(res.Errors+res.Dropped), float64(res.Count+res.Dropped)
	}
	if *pid > 0 {
		if hwm, err := peakRSS(*pid); err == nil {
			fmt.Fprintf(stdout, "peak RSS of pid %d: %s\n", *pid, hwm)
		} else {
			fmt.Fprintf(stdout, "peak RSS of pid %d: %v\n", *pid, err)
		}
	}
	if total > 0 && failed/total > *maxErrors {
		return fmt.Errorf("%.0f of %.0f chats failed", failed, total)
	}
	return nil
}

type holdResult struct {
	count, errors int64
	elapsed       time.Duration
	firstErr      error
	latency       loadgen.Percentiles
}

func (h holdResult) String() string {
	s := fmt.Sprintf("held %d concurrent chats: %d failed, all done in %s; latency %s",
		h.count, h.errors, h.elapsed.Round(time.Millisecond), h.latency)
	if h.firstErr != nil {
		s += "\nfirst error: " + h.firstErr.Error()
	}
	return s
}

// holdLoad opens n chats spread over ramp and waits for all of them.
func holdLoad(ctx context.Context, t *loadTarget, n int, ramp time.Duration, stdout io.Writer) holdResult {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      holdResult
		lat      loadgen.Samples
		inFlight atomic.Int64
	)
	stop := progress(ctx, stdout, func() string { return fmt.Sprintf("%d chats open", inFlight.Load()) })
	defer stop()
	start := time.Now()
	for i := range n {
		if ramp > 0 {
			at := start.Add(time.Duration(int64(ramp) * int64(i) / int64(n)))
			time.Sleep(time.Until(at))
		}
		wg.Add(1)
		inFlight.Add(1)
		go func(i int) {
			defer wg.Done()
			defer inFlight.Add(-1)
			t0 := time.Now()
			err := t.chat(ctx, int64(i))
			mu.Lock()
			defer mu.Unlock()
			res.count++
			if err != nil {
				res.errors++
				if res.firstErr == nil {
					res.firstErr = err
				}
				return
			}
			lat.Add(time.Since(t0))
		}(i)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.latency = lat.Percentiles()
	return res
}

// progress prints status every second until stop is called.
func progress(ctx context.Context, w io.Writer, status func() string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fmt.Fprintf(w, "[%3.0fs] %s\n", time.Since(start).Seconds(), status())
			}
		}
	}()
	return func() { cancel(); <-done }
}

// peakRSS reads VmHWM of a local process.
func peakRSS(pid int) (string, error) { return procStatus(pid, "VmHWM") }

// procStatus returns a field of /proc/PID/status ("123 kB" for VmHWM).
func procStatus(pid int, field string) (string, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
