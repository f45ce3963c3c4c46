package loadgen

// ChatLoad: `agentd load`, chats (or Messages API calls) against a running
// agentd at a fixed rate or held concurrently.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ChatLoad is one `agentd load` run.
type ChatLoad struct {
	// BaseURL is agentd's (or, with Messages, any Messages API's) base URL.
	BaseURL string
	// Agent is the agent chatted with; Message the text (a counter is
	// appended); Stream uses SSE.
	Agent, Message string
	Stream         bool
	// Messages sends Anthropic Messages API calls (POST BaseURL/v1/messages)
	// of Model with MaxTokens instead of chats.
	Messages  bool
	Model     string
	MaxTokens int
	// APIKey is sent as a Bearer token when set.
	APIKey string
	// Timeout bounds one chat.
	Timeout time.Duration
	// Open-loop mode (Concurrent 0): Rate chats per second for Duration
	// after Warmup, at most MaxInFlight at once.
	Rate             float64
	Duration, Warmup time.Duration
	MaxInFlight      int
	// Hold mode: Concurrent chats opened over Ramp, all waited for.
	Concurrent int
	Ramp       time.Duration
	// PID, when set, is a local process whose peak RSS is reported.
	PID int
	// MaxErrorRate fails the run when the share of failed chats is above it.
	MaxErrorRate float64
}

// RunChatLoad runs c, writing progress and results to out.
func RunChatLoad(ctx context.Context, c ChatLoad, out io.Writer) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = 0, 100000, 0
	t := &loadTarget{base: strings.TrimRight(c.BaseURL, "/"), agent: c.Agent, message: c.Message, stream: c.Stream,
		client: &http.Client{Transport: withAPIKey(tr, c.APIKey), Timeout: c.Timeout}}
	if c.Messages {
		t.msgs = &messagesLoad{url: t.base + "/v1/messages", model: c.Model, max: c.MaxTokens, text: c.Message,
			stream: c.Stream, client: t.client}
	}

	var failed, total float64
	if c.Concurrent > 0 {
		res := holdLoad(ctx, t, c.Concurrent, c.Ramp, out)
		fmt.Fprintln(out, res)
		failed, total = float64(res.errors), float64(res.count)
	} else {
		var n atomic.Int64
		cfg := Config{Rate: c.Rate, Duration: c.Duration, Warmup: c.Warmup, MaxInFlight: c.MaxInFlight, Timeout: c.Timeout}
		stop := progress(ctx, out, func() string { return fmt.Sprintf("%d chats started", n.Load()) })
		res, err := Run(ctx, cfg, func(ctx context.Context) error { return t.chat(ctx, n.Add(1)) })
		stop()
		if err != nil {
			return err
		}
		fmt.Fprintln(out, res)
		if t.msgs != nil && t.stream {
			fmt.Fprintln(out, "time to first event:", t.msgs.firstEvent())
		}
		if res.FirstErr != nil {
			fmt.Fprintln(out, "first error:", res.FirstErr)
		}
		failed, total = float64(res.Errors+res.Dropped), float64(res.Count+res.Dropped)
	}
	if c.PID > 0 {
		if hwm, err := peakRSS(c.PID); err == nil {
			fmt.Fprintf(out, "peak RSS of pid %d: %s\n", c.PID, hwm)
		} else {
			fmt.Fprintf(out, "peak RSS of pid %d: %v\n", c.PID, err)
		}
	}
	if total > 0 && failed/total > c.MaxErrorRate {
		return fmt.Errorf("%.0f of %.0f chats failed", failed, total)
	}
	return nil
}

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

type holdResult struct {
	count, errors int64
	elapsed       time.Duration
	firstErr      error
	latency       Percentiles
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
func holdLoad(ctx context.Context, t *loadTarget, n int, ramp time.Duration, out io.Writer) holdResult {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      holdResult
		lat      Samples
		inFlight atomic.Int64
	)
	stop := progress(ctx, out, func() string { return fmt.Sprintf("%d chats open", inFlight.Load()) })
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
func peakRSS(pid int) (string, error) { return ProcStatus(pid, "VmHWM") }

// ProcStatus returns a field of /proc/PID/status ("123 kB" for VmHWM).
func ProcStatus(pid int, field string) (string, error) {
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

// messagesLoad sends Anthropic Messages API calls (agentd load -messages):
// to agentd's gateway, to a bare reverse proxy or to the sim directly, so
// the three can be compared with the same generator.
type messagesLoad struct {
	url    string // base + "/v1/messages"
	model  string
	max    int
	text   string
	stream bool
	client *http.Client

	mu   sync.Mutex
	ttfe Samples // streams: scheduled start → first event
}

// call sends one request and reads the whole answer (a stream until
// message_stop).
func (m *messagesLoad) call(ctx context.Context, n int64) error {
	body, _ := json.Marshal(map[string]any{
		"model": m.model, "max_tokens": m.max, "stream": m.stream,
		"messages": []map[string]any{{"role": "user", "content": fmt.Sprintf("%s (#%d)", m.text, n)}},
	})
	resp, err := postOK(ctx, m.client, m.url, body, map[string]string{"Anthropic-Version": "2023-06-01"})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !m.stream {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	br := bufio.NewReader(resp.Body)
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if first && len(line) > 0 {
			first = false
			if at, ok := Scheduled(ctx); ok && !IsWarmup(ctx) {
				m.mu.Lock()
				m.ttfe.Add(time.Since(at))
				m.mu.Unlock()
			}
		}
		switch {
		case bytes.HasPrefix(line, []byte("event: message_stop")):
			_, _ = io.Copy(io.Discard, br)
			return nil
		case bytes.HasPrefix(line, []byte("event: error")):
			return errors.New("the stream ended with an error event")
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return errors.New("the stream ended without message_stop")
			}
			return err
		}
	}
}

// firstEvent summarises the time to the first event of the streams.
func (m *messagesLoad) firstEvent() Percentiles {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ttfe.Percentiles()
}
