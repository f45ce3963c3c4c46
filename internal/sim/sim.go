// Package sim is a fast, deterministic simulator of the Anthropic Messages API
// (POST /v1/messages and POST /v1/messages/count_tokens). It speaks the real
// wire format, both plain JSON and server-sent events, so the official SDK can
// talk to it. agentd uses it as the upstream in tests and benchmarks, and
// starts it in-process when no API key is configured.
//
// Its answers depend only on the request:
//
//   - if the last message carries tool_result blocks, it answers with text
//     quoting each result ("Tool results: [name] => \"...\"");
//   - else, if the request offers tools and the newest user text names some of
//     them (whole word, case-insensitive), it answers with a short text block
//     and one tool_use block per named tool, in order of mention, with an input
//     built from each tool's input_schema, and stop_reason "tool_use";
//   - else it answers with Config.Words words echoing the start of the user
//     text, cut to max_tokens (stop_reason "max_tokens") when that is smaller.
//
// Latency, jitter, a latency tail and faults (429, 529, 500, a stream cut
// mid-way) are injected as configured.
package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes the simulator. The zero value answers at once and never fails.
type Config struct {
	// APIKey, when non-empty, must be sent as x-api-key or as
	// "Authorization: Bearer <key>"; otherwise the request fails with 401
	// authentication_error. A comma-separated list accepts any of its keys
	// (an agentd key pool of several keys, each valid).
	APIKey string
	// Latency is added before the response (non-stream) or before
	// message_start (stream).
	Latency time.Duration
	// LatencyJitter adds a uniform random extra in [0, LatencyJitter).
	LatencyJitter time.Duration
	// TailLatency is added to a TailRate share of requests (a p99-style tail).
	TailLatency time.Duration
	TailRate    float64
	// TTFT is the extra delay between message_start and the first content
	// delta of a stream.
	TTFT time.Duration
	// EventDelay is the delay between stream deltas.
	EventDelay time.Duration
	// Rate429, Rate529, Rate500 and RateCut are the shares of /v1/messages
	// requests failing with 429 rate_limit_error (with retry-after and
	// retry-after-ms headers), 529 overloaded_error, 500 api_error, or cut
	// mid-way (the connection is closed after some deltas, without
	// message_stop; a non-stream response is cut mid-body). Their sum must
	// not exceed 1.
	Rate429, Rate529, Rate500, RateCut float64
	// RetryAfter is the value of the retry-after headers of a 429. Default 1s.
	RetryAfter time.Duration
	// Words is the number of words of a plain text answer. Default 12.
	Words int
	// Seed seeds the random source of faults and latency; 0 means time-based.
	Seed int64
	// Ledger, when true, counts /v1/messages requests per conversation
	// (its first user message) and per message count, and per
	// conversation and system prompt, served as JSON at GET /sim/ledger:
	// tests use it to prove a resumed run repeated no finished model
	// call, and that every call of a run carried the system prompt of the
	// agent definition it started with. Off by default (it costs a map
	// update per request).
	Ledger bool
}

const (
	defaultWords      = 12
	defaultRetryAfter = time.Second
	maxBodyBytes      = 32 << 20
)

// Server is the simulator; it implements http.Handler.
type Server struct {
	cfg Config
	log *slog.Logger

	// th429..thCut are the cumulative thresholds of the fault draw.
	th429, th529, th500, thCut float64
	faulty                     bool
	jittery                    bool

	retryAfterSec string
	retryAfterMs  string

	mu  sync.Mutex
	rng *rand.Rand

	requests atomic.Int64
	// keys, when set (SetAPIKeys), replaces cfg.APIKey.
	keys atomic.Pointer[[]string]

	ledgerMu sync.Mutex
	ledger   map[string]map[int]int
	systems  map[string]map[string]int
}

// New returns a simulator for cfg. A nil log discards. Config values out of
// range are clamped (rates to [0,1], durations to >= 0); use Validate or
// ParseFlags to reject them instead.
func New(cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Words <= 0 {
		cfg.Words = defaultWords
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = defaultRetryAfter
	}
	cfg.Latency = max(cfg.Latency, 0)
	cfg.LatencyJitter = max(cfg.LatencyJitter, 0)
	cfg.TailLatency = max(cfg.TailLatency, 0)
	cfg.TTFT = max(cfg.TTFT, 0)
	cfg.EventDelay = max(cfg.EventDelay, 0)
	cfg.TailRate = clamp01(cfg.TailRate)
	cfg.Rate429 = clamp01(cfg.Rate429)
	cfg.Rate529 = clamp01(cfg.Rate529)
	cfg.Rate500 = clamp01(cfg.Rate500)
	cfg.RateCut = clamp01(cfg.RateCut)

	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	s := &Server{
		cfg: cfg,
		log: log,
		rng: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
	}
	s.th429 = cfg.Rate429
	s.th529 = s.th429 + cfg.Rate529
	s.th500 = s.th529 + cfg.Rate500
	s.thCut = s.th500 + cfg.RateCut
	s.faulty = s.thCut > 0
	s.jittery = cfg.LatencyJitter > 0 || (cfg.TailLatency > 0 && cfg.TailRate > 0)
	secs := (cfg.RetryAfter + time.Second - 1) / time.Second
	s.retryAfterSec = strconv.FormatInt(int64(secs), 10)
	s.retryAfterMs = strconv.FormatInt(cfg.RetryAfter.Milliseconds(), 10)
	if strings.Contains(cfg.APIKey, ",") {
		s.SetAPIKeys(strings.Split(cfg.APIKey, ",")...)
	}
	return s
}

func clamp01(f float64) float64 {
	if !(f > 0) { // also NaN
		return 0
	}
	return min(f, 1)
}

// Config returns the effective configuration, with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Requests returns how many POST /v1/messages requests the server has
// received, rejected (401, 400) and faulted ones included; count_tokens is
// not counted.
func (s *Server) Requests() int64 { return s.requests.Load() }

type fault uint8

const (
	faultNone fault = iota
	fault429
	fault529
	fault500
	faultCut
)

// draw picks the fault and the extra latency of one request.
func (s *Server) draw() (f fault, extra time.Duration) {
	if !s.faulty && !s.jittery {
		return faultNone, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faulty {
		switch u := s.rng.Float64(); {
		case u < s.th429:
			f = fault429
		case u < s.th529:
			f = fault529
		case u < s.th500:
			f = fault500
		case u < s.thCut:
			f = faultCut
		}
	}
	if s.cfg.LatencyJitter > 0 {
		extra += time.Duration(s.rng.Int64N(int64(s.cfg.LatencyJitter)))
	}
	if s.cfg.TailLatency > 0 && s.cfg.TailRate > 0 && s.rng.Float64() < s.cfg.TailRate {
		extra += s.cfg.TailLatency
	}
	return f, extra
}

// sleep waits d or until ctx is done; it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var bufPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 4096)) }}

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

// ServeHTTP serves POST /v1/messages and POST /v1/messages/count_tokens.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Request-Id"] = []string{newID("req_")}

	var count bool
	switch r.URL.Path {
	case "/sim/ledger":
		s.serveLedger(w)
		return
	case "/v1/messages":
		count = false
	case "/v1/messages/count_tokens":
		count = true
	default:
		writeError(w, http.StatusNotFound, "not_found_error", "Not found: "+r.Method+" "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		h.Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "Method Not Allowed")
		return
	}
	if !count {
		s.requests.Add(1)
	}
	if (s.cfg.APIKey != "" || s.keys.Load() != nil) && !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return
	}

	buf := getBuf()
	defer putBuf(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		if _, ok := err.(*http.MaxBytesError); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_request_error", "could not read request body: "+err.Error())
		return
	}
	var req request
	if msg := req.parse(buf.Bytes(), !count); msg != "" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	if count {
		buf.Reset()
		buf.WriteString(`{"input_tokens":`)
		buf.WriteString(strconv.Itoa(req.inputTokens()))
		buf.WriteByte('}')
		writeJSON(w, http.StatusOK, buf.Bytes())
		return
	}

	if s.cfg.Ledger && len(req.Messages) > 0 {
		s.record(req.Messages[0].Content, req.System, len(req.Messages))
	}
	f, extra := s.draw()
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("sim request", "model", req.Model, "stream", req.Stream,
			"messages", len(req.Messages), "tools", len(req.Tools), "fault", int(f))
	}
	if !sleep(r.Context(), s.cfg.Latency+extra) {
		return
	}
	switch f {
	case fault429:
		h.Set("Retry-After", s.retryAfterSec)
		h.Set("Retry-After-Ms", s.retryAfterMs)
		writeError(w, http.StatusTooManyRequests, "rate_limit_error",
			"Number of request tokens has exceeded your per-minute rate limit (simulated)")
		return
	case fault529:
		writeError(w, 529, "overloaded_error", "Overloaded")
		return
	case fault500:
		writeError(w, http.StatusInternalServerError, "api_error", "Internal server error")
		return
	}

	var a answer
	a.build(&req, s.cfg.Words)
	buf.Reset()
	if req.Stream {
		s.stream(w, r, &req, &a, buf, f == faultCut)
		return
	}
	out := a.appendMessage(buf.AvailableBuffer(), &req)
	if f == faultCut {
		// Promise the whole body, send half of it, then drop the connection.
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out[:len(out)/2])
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	writeJSON(w, http.StatusOK, out)
}

// SetAPIKeys replaces the accepted API keys (Config.APIKey) while the
// server runs: tests revoke a key mid-load with it. No keys: every request
// is refused with 401.
func (s *Server) SetAPIKeys(keys ...string) {
	ks := slices.Clone(keys)
	s.keys.Store(&ks)
}

func (s *Server) authorized(r *http.Request) bool {
	k := r.Header.Get("X-Api-Key")
	if k == "" {
		a := r.Header.Get("Authorization")
		const p = "Bearer "
		if len(a) <= len(p) || (a[:len(p)] != p && a[:len(p)] != "bearer ") {
			return false
		}
		k = a[len(p):]
	}
	if ks := s.keys.Load(); ks != nil {
		return slices.Contains(*ks, k)
	}
	return k == s.cfg.APIKey
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes the API's error shape:
// {"type":"error","error":{"type":...,"message":...},"request_id":...}.
func writeError(w http.ResponseWriter, status int, typ, msg string) {
	b := getBuf()
	defer putBuf(b)
	out := b.AvailableBuffer()
	out = append(out, `{"type":"error","error":{"type":`...)
	out = appendString(out, typ)
	out = append(out, `,"message":`...)
	out = appendString(out, msg)
	out = append(out, `},"request_id":`...)
	out = appendString(out, w.Header().Get("Request-Id"))
	out = append(out, '}')
	writeJSON(w, status, out)
}

const idChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns prefix + "01" + 22 random base-62 characters, the shape of
// the API's ids (msg_01..., toolu_01..., req_01...).
func newID(prefix string) string {
	var b [40]byte
	n := copy(b[:], prefix)
	b[n], b[n+1] = '0', '1'
	n += 2
	x, y := rand.Uint64(), rand.Uint64()
	for i := range 22 {
		if i == 11 {
			x = y
		}
		b[n] = idChars[x%62]
		x /= 62
		n++
	}
	return string(b[:n])
}

// record counts a request of the conversation that starts with first,
// with system prompt system (raw JSON; "" when none).
func (s *Server) record(first, system string, messages int) {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	if s.ledger == nil {
		s.ledger = make(map[string]map[int]int)
		s.systems = make(map[string]map[string]int)
	}
	if s.ledger[first] == nil {
		s.ledger[first] = make(map[int]int)
		s.systems[first] = make(map[string]int)
	}
	s.ledger[first][messages]++
	s.systems[first][system]++
}

// Systems returns, per conversation (the raw JSON content of its first
// user message), how many requests carried each system prompt (its raw
// JSON: a string or an array of blocks; "" when none).
func (s *Server) Systems() map[string]map[string]int {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	out := make(map[string]map[string]int, len(s.systems))
	for k, v := range s.systems {
		m := make(map[string]int, len(v))
		for sys, c := range v {
			m[sys] = c
		}
		out[k] = m
	}
	return out
}

// Ledger returns, per conversation (the raw JSON content of its first user
// message), how many requests carried each message count.
func (s *Server) Ledger() map[string]map[int]int {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	out := make(map[string]map[int]int, len(s.ledger))
	for k, v := range s.ledger {
		m := make(map[int]int, len(v))
		for n, c := range v {
			m[n] = c
		}
		out[k] = m
	}
	return out
}

func (s *Server) serveLedger(w http.ResponseWriter) {
	raw, err := json.Marshal(struct {
		Requests int64                     `json:"requests"`
		Ledger   map[string]map[int]int    `json:"ledger"`
		Systems  map[string]map[string]int `json:"systems"`
	}{s.requests.Load(), s.Ledger(), s.Systems()})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "api_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, raw)
}
