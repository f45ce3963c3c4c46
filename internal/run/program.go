package run

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/llm/metered"
	"github.com/agentd/agentd/internal/run/sdkstream"
	"github.com/agentd/agentd/internal/store"
)

// A hosted agent program (agents[].runtime, docs/agent-sdk.md) is a run
// whose steps come from a child process instead of the loop: agentd
// starts the program for the run, gives it the run's message, history and
// ids on stdin and in its environment, and points ANTHROPIC_BASE_URL at a
// gateway on a loopback port with a key that exists only for this run (the
// ProgramHost). Every model call of the program goes through the gateway
// (key pool, breakers, fallbacks, rate limits, budgets, usage rows)
// attributed to the run, and comes back to the run as a usage event. The
// program's stdout, the Claude Agent SDK's stream-JSON messages, becomes
// the run's text_delta, tool_use and tool_result events; its result
// message is the run's output and the conversation's assistant turn.

// ErrProgramFailed: the hosted program exited non-zero, without a result,
// or with an error result.
var ErrProgramFailed = errors.New("the agent program failed")

// stderrTailBytes is how much of a program's stderr a failed run's error
// quotes.
const stderrTailBytes = 2048

// Runtime is how an agent's program is started (agents[].runtime).
type Runtime struct {
	Command []string
	Dir     string
	Env     map[string]string
	// KillGrace is the time between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// MemoryMax limits the program's memory (0: none); see limitMemory.
	MemoryMax int64

	slots chan struct{}
}

// NewRuntime returns a Runtime that runs at most maxConcurrent programs
// at once.
func NewRuntime(command []string, dir string, env map[string]string, maxConcurrent int, killGrace time.Duration, memoryMax int64) *Runtime {
	return &Runtime{Command: command, Dir: dir, Env: env, KillGrace: killGrace, MemoryMax: memoryMax,
		slots: make(chan struct{}, max(maxConcurrent, 1))}
}

// ProgramHost serves the model calls of hosted programs: the gateway on a
// loopback port, reachable only with a run's key while the run's program
// runs.
type ProgramHost struct {
	// Gateway serves /v1/messages and /v1/messages/count_tokens (a
	// *gateway.Handler): it meters a call carrying a metered.RunScope as
	// that run's.
	Gateway http.Handler
	// Scrub redacts secrets from text the program wrote (stderr) before it
	// is stored in a run's error; nil: none.
	Scrub func(string) string
	Log   *slog.Logger
	// Sessions, when set, serves the Agent SDK SessionStore endpoints
	// (/agentd/v1/sdk-sessions/..., program_sessions.go) to the programs,
	// scoped to their run's tenant; nil: those endpoints answer 404.
	Sessions store.SDKSessions

	once sync.Once
	url  string
	err  error
	srv  *http.Server

	mu   sync.Mutex
	keys map[[32]byte]hostKey
}

// hostKey is what a run key stands for.
type hostKey struct {
	scope          *metered.RunScope
	conversationID string
}

// start listens on a loopback port, once.
func (h *ProgramHost) start() (string, error) {
	h.once.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			h.err = fmt.Errorf("listen for hosted programs' model calls: %w", err)
			return
		}
		h.url = "http://" + ln.Addr().String()
		h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = h.srv.Serve(ln) }()
	})
	return h.url, h.err
}

// Close stops the loopback gateway.
func (h *ProgramHost) Close() error {
	if h.srv == nil {
		return nil
	}
	return h.srv.Close()
}

// issue returns a new key for scope (a run of conversationID), valid
// until revoke is called.
func (h *ProgramHost) issue(scope *metered.RunScope, conversationID string) (key string, revoke func()) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	key = "agentd-run-" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(key))
	h.mu.Lock()
	if h.keys == nil {
		h.keys = map[[32]byte]hostKey{}
	}
	h.keys[sum] = hostKey{scope: scope, conversationID: conversationID}
	h.mu.Unlock()
	return key, func() {
		h.mu.Lock()
		delete(h.keys, sum)
		h.mu.Unlock()
	}
}

// ServeHTTP authenticates a program's call by its run key and hands it to
// the gateway, attributed to the run.
func (h *ProgramHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		key, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	sum := sha256.Sum256([]byte(key))
	h.mu.Lock()
	hk, ok := h.keys[sum]
	h.mu.Unlock()
	scope := hk.scope
	var idb [12]byte
	_, _ = rand.Read(idb[:])
	reqID := "req_" + base64.RawURLEncoding.EncodeToString(idb[:])
	w.Header().Set("X-Request-ID", reqID)
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, `{"type":"error","error":{"type":"authentication_error","message":"unknown or expired run key"},"request_id":%q}`, reqID)
		return
	}
	if strings.HasPrefix(r.URL.Path, sdkSessionsPath) {
		h.serveSessions(w, r, hk, reqID)
		return
	}
	ctx := metered.WithRunScope(r.Context(), scope)
	ctx = auth.WithPrincipal(ctx, auth.Principal{Tenant: scope.Tenant, KeyID: scope.Key})
	h.Gateway.ServeHTTP(w, r.WithContext(ctx))
}

// ProgramInput is what a hosted program reads on its stdin: one JSON
// object (docs/agent-sdk.md).
type ProgramInput struct {
	RunID          string `json:"run_id"`
	ConversationID string `json:"conversation_id"`
	Agent          string `json:"agent"`
	Tenant         string `json:"tenant"`
	Attempt        int    `json:"attempt"`
	// Message is the text of the run's user message; Content its blocks.
	Message string          `json:"message"`
	Content json.RawMessage `json:"content"`
	// History is the conversation before this run (user and assistant
	// turns, Messages API shapes).
	History []llm.Message `json:"history"`
	// ResumeSessionID is the Agent SDK session id an earlier attempt of
	// this run reported (its system init message): a program that can
	// resume that session (options.resume) continues it. Empty on a
	// first attempt.
	ResumeSessionID string `json:"resume_session_id,omitempty"`
	// ConversationSessionID is the Agent SDK session the conversation's
	// earlier turns mirrored to agentd's session store (the main
	// transcript appended to last): a program with the store adapter
	// resumes it to continue the conversation. Empty on a first turn,
	// without agentd's session store, or when no turn mirrored one.
	ConversationSessionID string `json:"conversation_session_id,omitempty"`
	// SessionStoreURL is the base URL of agentd's SessionStore endpoints
	// for this run (program_sessions.go); empty when not available.
	SessionStoreURL string `json:"session_store_url,omitempty"`
}

// childEnv is the program's environment: an allowlist of agentd's own
// (never its secrets), the runtime's env, then what agentd sets.
func childEnv(rt *Runtime, set map[string]string) []string {
	env := make([]string, 0, 16+len(rt.Env)+len(set))
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range rt.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// program runs the agent's program to its result (see the top of this
// file), then commits like the loop does.
func (x *execution) program(ctx context.Context) error {
	if x.lastRole() != "assistant" { // else resumed after the answer was checkpointed
		if err := x.runProgram(ctx); err != nil {
			return err
		}
	}
	if x.p.Commit != nil {
		return x.commitDone(ctx)
	}
	x.emit(x.answerData())
	return x.checkpoint(ctx)
}

func (x *execution) runProgram(ctx context.Context) error {
	a, rt, host := x.p.Agent, x.p.Agent.Runtime, x.l.Programs
	if host == nil || host.Gateway == nil {
		return fmt.Errorf("%w: agentd has no gateway for hosted programs", ErrProgramFailed)
	}
	baseURL, err := host.start()
	if err != nil {
		return err
	}
	select {
	case rt.slots <- struct{}{}:
		defer func() { <-rt.slots }()
	case <-ctx.Done():
		return ctx.Err()
	}

	var keyID string
	if pr, ok := auth.FromContext(ctx); ok {
		keyID = pr.KeyID
	}
	// A call refused for a budget ends the run (budget_exceeded) rather
	// than leave the program retrying a 429 that will not clear.
	outer := ctx
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	scope := &metered.RunScope{
		Tenant: x.p.Tenant, Key: keyID, Agent: a.Name, RunID: x.p.RunID,
		RunMaxUSD: runCap(a.MaxCostUSD, x.p.MaxCostUSD), OnCall: x.programCall,
		OnRefused: func(err error) { stop(err) },
	}
	scope.SetSteps(x.st.Step)
	key, revoke := host.issue(scope, x.p.ConversationID)
	defer revoke()

	in := ProgramInput{
		RunID: x.p.RunID, ConversationID: x.p.ConversationID, Agent: a.Name, Tenant: x.p.Tenant,
		Attempt: max(x.p.Attempt, 1), Content: x.p.Input.Content, History: x.p.History,
		ResumeSessionID: x.st.SDKSession,
	}
	if len(x.st.Messages) > 0 {
		in.Content = x.st.Messages[0].Content // a resumed run: the input is in the checkpoint
	}
	if host.Sessions != nil {
		in.SessionStoreURL = baseURL + strings.TrimSuffix(sdkSessionsPath, "/")
		if x.p.ConversationID != "" {
			sid, err := host.Sessions.LatestSDKSession(ctx, x.p.Tenant, x.p.ConversationID)
			if err != nil {
				return fmt.Errorf("find the conversation's agent SDK session: %w", err)
			}
			in.ConversationSessionID = sid
		}
	}
	var blocks []llm.Block
	_ = json.Unmarshal(in.Content, &blocks)
	in.Message = textOf(blocks)
	if in.History == nil {
		in.History = []llm.Message{}
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode the program's input: %w", err)
	}
	env := childEnv(rt, map[string]string{
		"ANTHROPIC_BASE_URL": baseURL, "ANTHROPIC_API_KEY": key,
		"AGENTD_RUN_ID": x.p.RunID, "AGENTD_CONVERSATION_ID": x.p.ConversationID, "AGENTD_AGENT": a.Name,
		"AGENTD_TENANT": x.p.Tenant, "AGENTD_ATTEMPT": fmt.Sprint(in.Attempt),
		"AGENTD_RESUME_SESSION_ID":       x.st.SDKSession,
		"AGENTD_CONVERSATION_SESSION_ID": in.ConversationSessionID, "AGENTD_SESSION_STORE_URL": in.SessionStoreURL,
		// No internet: Claude Code's telemetry, update checks and other
		// side traffic stay off.
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
		"DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
	})

	argv := rt.Command
	if supervisorExe != "" {
		argv = supervisedCommand(rt.Command, rt.MemoryMax, x.p.RunID) // program_supervise.go
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = rt.Dir, env
	// Its own process group: cancel signals the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if supervisorExe == "" {
		// Killed by the kernel if agentd dies without stopping it; what
		// it started is not (the supervisor's job).
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	cmd.Stdin = bytes.NewReader(stdin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start %q: %w", ErrProgramFailed, rt.Command[0], err)
	}
	pid := cmd.Process.Pid
	log := x.l.Log.With("pid", pid)
	log.InfoContext(ctx, "agent program started", "command", rt.Command, "attempt", in.Attempt, "supervised", supervisorExe != "")
	var limit memoryLimit
	if supervisorExe == "" {
		limit = limitMemory(pid, rt.MemoryMax, x.p.RunID)
	} else if dir, ok := cgroupDir(x.p.RunID, pid); ok {
		limit = memoryLimit{How: "supervisor", cgroup: dir} // the supervisor limited itself; removed if it made a cgroup
	}
	defer limit.release()
	if rt.MemoryMax > 0 && supervisorExe == "" {
		if limit.How == "" {
			log.WarnContext(ctx, "agent program's memory is not limited: no writable cgroup v2 and prlimit failed", "memory_max", rt.MemoryMax)
		} else {
			log.InfoContext(ctx, "agent program's memory limited", "how", limit.How, "memory_max", rt.MemoryMax)
		}
	}

	// Cancel, timeout, shutdown: SIGTERM to the process group, SIGKILL
	// after the grace period.
	exited := make(chan struct{})
	go func() {
		select {
		case <-exited:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		t := time.NewTimer(rt.KillGrace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			log.WarnContext(ctx, "agent program still running after SIGTERM; killing its process group", "grace", rt.KillGrace)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}()

	tail := &tailBuffer{max: stderrTailBytes}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := sdkstream.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			log.InfoContext(ctx, "agent program stderr", "line", line) // the log handler redacts
		}
	}()

	m := &streamMapper{x: x, scope: scope, uses: map[string]toolUse{}}
	sc := sdkstream.NewScanner(stdout)
	var stoppedAfterResult atomic.Bool
	for sc.Scan() {
		hadResult := m.result != nil
		m.line(ctx, sc.Bytes())
		if !hadResult && m.result != nil {
			// A program that keeps running after its result (an open
			// handle keeps Node alive) gets kill_grace to exit, then
			// SIGTERM and SIGKILL; its result stands.
			go func() {
				select {
				case <-exited:
					return
				case <-time.After(rt.KillGrace):
				}
				stoppedAfterResult.Store(true)
				log.WarnContext(ctx, "agent program still running after its result; stopping it", "grace", rt.KillGrace)
				_ = syscall.Kill(-pid, syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(rt.KillGrace):
					_ = syscall.Kill(-pid, syscall.SIGKILL)
				}
			}()
		}
	}
	scanErr := sc.Err()
	if scanErr != nil {
		_, _ = io.Copy(io.Discard, stdout) // let the program finish
	}
	wg.Wait()
	waitErr := cmd.Wait()
	close(exited)
	_ = syscall.Kill(-pid, syscall.SIGKILL) // whatever it left behind
	// The accounting of the program's last calls (usage events, cost).
	waitScope(scope, 10*time.Second)
	log.InfoContext(ctx, "agent program exited", "exit", exitString(cmd.ProcessState), "steps", scope.Steps())

	if ctx.Err() != nil {
		if outer.Err() == nil {
			return context.Cause(ctx) // a budget refused a call
		}
		return ctx.Err()
	}
	scrub := host.Scrub
	if scrub == nil {
		scrub = func(s string) string { return s }
	}
	fail := func(what string) error {
		msg := what
		if t := strings.TrimSpace(tail.String()); t != "" {
			msg += "; stderr: " + strings.ReplaceAll(scrub(t), key, "[redacted]")
		}
		return fmt.Errorf("%w: %s", ErrProgramFailed, msg)
	}
	switch {
	case waitErr != nil && !(stoppedAfterResult.Load() && m.result != nil):
		return fail(fmt.Sprintf("%s %s", rt.Command[0], exitString(cmd.ProcessState)))
	case scanErr != nil:
		return fail("read its output: " + scanErr.Error())
	case m.result == nil:
		return fail("it exited without a result message")
	case m.result.Failed():
		what := "its result is an error (" + m.result.Subtype + ")"
		if len(m.result.Errors) > 0 {
			what += ": " + strings.Join(m.result.Errors, "; ")
		} else if m.result.Result != "" {
			what += ": " + m.result.Result
		}
		return fail(what)
	}
	content, _ := json.Marshal([]llm.Block{{Type: "text", Text: m.result.Result}})
	x.mu.Lock()
	x.st.Messages = append(x.st.Messages, llm.Message{Role: "assistant", Content: content})
	x.st.StopReason = m.result.StopReason
	if x.st.StopReason == "" {
		x.st.StopReason = "end_turn"
	}
	x.mu.Unlock()
	if x.p.Resumable {
		// Resumed after this, the run commits the answer without
		// starting the program again.
		return x.checkpoint(ctx)
	}
	return nil
}

func waitScope(s *metered.RunScope, d time.Duration) {
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func exitString(ps *os.ProcessState) string {
	if ps == nil {
		return "did not exit"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

// programCall takes one of the program's gateway calls into the run: its
// usage event and totals.
func (x *execution) programCall(r metered.CallReport) {
	x.mu.Lock()
	x.st.Step = max(x.st.Step, r.Step)
	x.st.Usage = x.st.Usage.Add(r.Usage)
	x.st.CostUSD += r.CostUSD
	x.mu.Unlock()
	u := r.Usage
	x.emit(UsageEvent{
		Step: r.Step, Model: r.Model, RequestID: r.RequestID, StopReason: r.StopReason,
		InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens,
		CostUSD: r.CostUSD,
	})
	if err := x.flush(x.ctx); err != nil {
		x.l.Log.WarnContext(x.ctx, "store the program's events", "err", err)
	}
}

// tailBuffer keeps the last max bytes of the lines added.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(append(t.b, line...), '\n')
	if n := len(t.b); n > t.max {
		t.b = append(t.b[:0], t.b[n-t.max:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

type toolUse struct {
	name  string
	start time.Time
}

// streamMapper maps a program's stream-JSON messages to the run's events.
// The decoding of a line is sdkstream.Decode's; the mapper acts on it.
type streamMapper struct {
	x        *execution
	scope    *metered.RunScope
	uses     map[string]toolUse
	streamed bool // the program sends partial messages (stream_event): text comes from them
	lastMsg  string
	index    int
	result   *sdkstream.Result
}

func (m *streamMapper) line(ctx context.Context, line []byte) {
	d := sdkstream.Decode(line)
	switch d.Kind {
	case sdkstream.Blank:
		return
	case sdkstream.Stray:
		// Not a message: a stray console.log. Logged, not an event.
		m.x.l.Log.InfoContext(ctx, "agent program stdout", "line", d.Text)
		return
	}
	msg := d.Message
	x := m.x
	step := max(m.scope.Steps(), 1)
	switch msg.Type {
	case "system":
		if msg.Subtype == "init" && msg.SessionID != "" && msg.SessionID != x.st.SDKSession {
			x.mu.Lock()
			x.st.SDKSession = msg.SessionID
			x.mu.Unlock()
			if x.p.Resumable {
				// A retry on another worker gets the session id to resume.
				if err := x.checkpoint(ctx); err != nil {
					x.l.Log.WarnContext(ctx, "checkpoint the program's session id", "err", err)
				}
			}
		}
	case "stream_event":
		if msg.Delta != nil {
			m.streamed = true
			x.emit(TextDeltaEvent{Step: step, Index: msg.Delta.Index, Text: msg.Delta.Text})
		}
	case "assistant":
		if msg.MessageID != m.lastMsg {
			m.lastMsg, m.index = msg.MessageID, 0
		}
		for _, b := range msg.Blocks {
			switch b.Type {
			case "text":
				if !m.streamed && b.Text != "" {
					x.emit(TextDeltaEvent{Step: step, Index: m.index, Text: b.Text})
				}
			case "tool_use":
				m.uses[b.ID] = toolUse{name: b.Name, start: time.Now()}
				x.emit(ToolUseEvent{Step: step, ID: b.ID, Name: b.Name, Input: b.Input})
			}
			m.index++
		}
	case "user":
		for _, b := range msg.ToolResults {
			u := m.uses[b.ToolUseID]
			var ms int64
			if !u.start.IsZero() {
				ms = time.Since(u.start).Milliseconds()
			}
			x.emit(ToolResultEvent{Step: step, ToolUseID: b.ToolUseID, Name: u.name, Content: b.Content,
				IsError: b.IsError, DurationMS: ms})
		}
	case "result":
		m.result = msg.Result
		return // stored with the done event
	}
	if msg.Type != "stream_event" {
		// Followers see each message's events as it comes; text deltas
		// are stored every FlushInterval (emit).
		if err := x.flush(ctx); err != nil {
			x.l.Log.WarnContext(ctx, "store the program's events", "err", err)
		}
	}
}

// textOf joins the text blocks of bs.
func textOf(bs []llm.Block) string {
	var parts []string
	for _, b := range bs {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}
