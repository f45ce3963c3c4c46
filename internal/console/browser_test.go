package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/app"
	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// The browser tests drive a real headless Chromium (Debian's chromium)
// against a whole agentd (app.New: SQLite, the built-in simulator with a
// delay so runs stay running for a while, API keys on). One browser for the
// whole test binary: a single test with steps in order.
//
// AGENTD_CONSOLE_SCREENSHOTS=dir saves a screenshot of every page there
// (docs/console/ holds the committed set).

func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("AGENTD_TEST_CHROMIUM") == "required" {
		t.Fatal("chromium is not installed (AGENTD_TEST_CHROMIUM=required): apt-get install -y chromium")
	}
	t.Skip("chromium is not installed; .ci/run installs it")
	return ""
}

type browserBundle struct {
	t     *testing.T
	base  string
	ctx   context.Context
	shots string
}

func startAgentd(t *testing.T) (base string, st *sqlite.Store) {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "agentd.db")
	yaml := fmt.Sprintf(`server:
  addr: 127.0.0.1:0
  drain_delay: 0s
store:
  url: sqlite://%s
auth:
  mode: keys
worker:
  lease_ttl: 3s
console:
  sample_interval: 1s
budgets:
  tenant: {daily_usd: 2, monthly_usd: 40}
providers:
  anthropic:
    simulate: always
    sim_latency: 2500ms
agents:
  - name: demo
    model: claude-sonnet-4-5
  - name: asker
    model: claude-sonnet-4-5
    tools: [calculator]
    approval_required: [calculator]
`, filepath.ToSlash(db))
	path := filepath.Join(dir, "agentd.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.Load(path, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.Options{LogOutput: io.Discard, Version: "test"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("agentd did not stop")
		}
	})
	base = "http://" + a.Addr().String()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond)
	st, err = sqlite.Open(t.Context(), db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return base, st
}

func (b *browserBundle) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, steps...))
}

func runOf[T any](b *browserBundle, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(b.t, err)
	return v
}

// shot saves a full-page screenshot as name.png when screenshots are on.
func (b *browserBundle) shot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	png := runOf(b, chromedp.FullScreenshot(100))
	require.NoError(b.t, os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644))
}

func (b *browserBundle) login(key string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+"/console"), chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), key), chromedp.Submit(chromedp.CSS("#key")),
		chromedp.WaitVisible(chromedp.CSS("nav")))
}

func (b *browserBundle) logout() {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitVisible(chromedp.CSS("#key")))
}

// submit starts a run through the JSON API and returns its id.
func submit(t *testing.T, base, key, msg string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/runs", strings.NewReader(`{"agent":"demo","message":"`+msg+`"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	var body struct{ ID string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return body.ID
}

func apiStatus(t *testing.T, base, key, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func setColorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

func TestBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	base, st := startAgentd(t)
	admin, err := auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "ops", Scopes: []string{auth.ScopeAdmin}, Name: "operator"})
	require.NoError(t, err)

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	b := &browserBundle{t: t, base: base, ctx: ctx, shots: os.Getenv("AGENTD_CONSOLE_SCREENSHOTS")}
	if b.shots != "" {
		require.NoError(t, os.MkdirAll(b.shots, 0o755))
	}
	// The first call starts the browser, on ctx itself: a browser started
	// on a step's timeout context would close with it.
	require.NoError(t, chromedp.Do(ctx))
	b.do(chromedp.EmulateViewport(1280, 900), setColorScheme("light"))

	// Log in with a key: the form, then the overview.
	b.do(chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.CSS("#key")))
	b.shot("login")
	b.login(admin.Token)
	require.Equal(t, base+"/console", runOf(b, chromedp.Location()))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS(".trio"))), "ok")

	// A run started by the test: its events arrive live. The page is
	// opened while the simulator still waits for its first token, so the
	// events after "start" reach the timeline over the event stream.
	first := submit(t, base, admin.Token, "watch me live")
	b.do(chromedp.Navigate(base+"/console/runs/"+first), chromedp.WaitVisible(chromedp.CSS("#timeline[data-events]")))
	require.Contains(t, strings.ToLower(runOf(b, chromedp.Text(chromedp.CSS("#run-status")))), "live")
	b.do(chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-live].ev-usage`)))
	b.shot("run-live")
	// When done the page reloads with the server's rendering (no stream).
	b.do(chromedp.WaitVisible(chromedp.CSS("#timeline:not([data-events])")), chromedp.WaitVisible(chromedp.CSS("#run-status .s-succeeded")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("main table"))), "claude-sonnet-4-5", "the model call")
	b.shot("run")

	// Cancel a running run with the button (a CSRF-protected POST).
	second := submit(t, base, admin.Token, "cancel me")
	require.Eventually(t, func() bool {
		_, body := apiStatus(t, base, admin.Token, "/v1/runs/"+second)
		return strings.Contains(body, `"status":"running"`)
	}, 10*time.Second, 20*time.Millisecond)
	b.do(chromedp.Navigate(base + "/console/runs/" + second))
	b.do(chromedp.WaitVisible(chromedp.CSS("#cancel")))
	b.do(chromedp.Click(chromedp.CSS("#cancel")))
	b.do(chromedp.WaitVisible(chromedp.CSS(".flash")))
	require.Eventually(t, func() bool {
		_, body := apiStatus(t, base, admin.Token, "/v1/runs/"+second)
		return strings.Contains(body, `"status":"canceled"`)
	}, 15*time.Second, 50*time.Millisecond)
	b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#run-status .s-canceled")))

	// The other pages render (and are captured).
	b.do(chromedp.Navigate(base+"/console/runs"), chromedp.WaitVisible(chromedp.CSS("table.runs")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("table.runs"))), first)
	b.shot("runs")
	b.do(chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.CSS(".charts")))
	b.shot("overview")
	b.do(chromedp.Navigate(base+"/console/runs/"+first), chromedp.WaitVisible(chromedp.CSS("#run-status")),
		chromedp.Click(chromedp.CSS(`a[href^="/console/conversations/"]`)), chromedp.WaitVisible(chromedp.CSS(".transcript")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS(".transcript"))), "watch me live")
	b.shot("conversation")
	b.do(chromedp.Navigate(base+"/console/usage?by=model"), chromedp.WaitVisible(chromedp.CSS("main table")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("main table"))), "claude-sonnet-4-5")
	b.shot("usage")
	b.do(chromedp.Navigate(base+"/console/audit?run_id="+first), chromedp.WaitVisible(chromedp.CSS("main table")))
	b.shot("audit")

	// Create a key (its secret shown once), and revoke another.
	b.do(chromedp.Navigate(base+"/console/keys"), chromedp.WaitVisible(chromedp.CSS("#k-tenant")),
		chromedp.SendKeys(chromedp.CSS("#k-tenant"), "acme"), chromedp.SendKeys(chromedp.CSS("#k-name"), "acme runs"),
		chromedp.Click(chromedp.CSS("#create-key")), chromedp.WaitVisible(chromedp.CSS("#new-key")))
	acme := runOf(b, chromedp.Value(chromedp.CSS("#new-key")))
	require.True(t, strings.HasPrefix(acme, auth.KeyPrefix), acme)
	code, _ := apiStatus(t, base, acme, "/v1/runs")
	require.Equal(t, http.StatusOK, code, "the new key works")
	b.do(chromedp.Navigate(base+"/console/keys"), chromedp.WaitVisible(chromedp.CSS("#k-tenant")),
		chromedp.SendKeys(chromedp.CSS("#k-tenant"), "temp"), chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	temp := runOf(b, chromedp.Value(chromedp.CSS("#new-key")))
	keys, err := st.ListAPIKeys(t.Context(), "temp")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	row := fmt.Sprintf(`tr[data-key-id="%s"]`, keys[0].ID)
	b.do(chromedp.Navigate(base+"/console/keys"), chromedp.Click(chromedp.CSS(row+" button")),
		chromedp.WaitVisible(chromedp.CSS(row+" .s-revoked")))
	code, _ = apiStatus(t, base, temp, "/v1/runs")
	require.Equal(t, http.StatusUnauthorized, code, "the revoked key is refused")
	html := runOf(b, chromedp.OuterHTML(chromedp.CSS("html")))
	require.NotContains(t, html, acme, "a key's secret is never shown again")
	b.shot("keys")

	// A Managed Agents session created with the official SDK: its events
	// on its page (live while the turn runs), the confirmation its turn
	// waits for allowed from the console, and the session going on.
	sdk := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(base), option.WithAPIKey(admin.Token),
		option.WithMaxRetries(0), option.WithRequestTimeout(20*time.Second))
	env, err := sdk.Beta.Environments.New(t.Context(), anthropic.BetaEnvironmentNewParams{Name: "console"})
	require.NoError(t, err)
	sess, err := sdk.Beta.Sessions.New(t.Context(), anthropic.BetaSessionNewParams{
		Agent: anthropic.BetaSessionNewParamsAgentUnion{OfString: anthropic.String("asker")}, EnvironmentID: env.ID,
		Title: anthropic.String("Sums for the console")})
	require.NoError(t, err)
	_, err = sdk.Beta.Sessions.Events.Send(t.Context(), sess.ID, anthropic.BetaSessionEventSendParams{Events: []anthropic.BetaManagedAgentsEventParamsUnion{{
		OfUserMessage: &anthropic.BetaManagedAgentsUserMessageEventParams{Content: []anthropic.BetaManagedAgentsUserMessageEventParamsContentUnion{{
			OfText: &anthropic.BetaManagedAgentsTextBlockParam{Text: "please use the calculator"}}}}}}})
	require.NoError(t, err)
	// The page opens while the model call still runs: the events after it
	// arrive over the stream, then the page reloads waiting for a person.
	b.do(chromedp.Navigate(base+"/console/sessions/"+sess.ID), chromedp.WaitVisible(chromedp.CSS("#session-timeline[data-events]")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("#session-timeline"))), "please use the calculator")
	b.do(chromedp.WaitVisible(chromedp.CSS(`#session-timeline li[data-live]`)))
	b.shot("session-live")
	b.do(chromedp.WaitVisible(chromedp.CSS(`button[id^="allow-"]`)), chromedp.WaitVisible(chromedp.CSS("#session-status .s-waiting")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("main"))), "calculator")
	b.shot("session-pending")
	// The approvals page lists it, linked to the session; the overview
	// counts it.
	b.do(chromedp.Navigate(base+"/console/approvals"), chromedp.WaitVisible(chromedp.CSS(`a[href="/console/sessions/`+sess.ID+`"]`)))
	b.shot("approvals")
	b.do(chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.CSS("#pending-count")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("#pending-count"))), "1 tool call waits")
	b.shot("overview-pending")
	// Allow from the session page: the turn goes on to its end.
	b.do(chromedp.Navigate(base+"/console/sessions/"+sess.ID), chromedp.WaitVisible(chromedp.CSS(`button[id^="allow-"]`)),
		chromedp.Click(chromedp.CSS(`button[id^="allow-"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.do(chromedp.WaitVisible(chromedp.CSS("#session-status .s-idle")))
	var history []anthropic.BetaManagedAgentsSessionEventUnion
	pager := sdk.Beta.Sessions.Events.ListAutoPaging(t.Context(), sess.ID, anthropic.BetaSessionEventListParams{})
	for pager.Next() {
		history = append(history, pager.Current())
	}
	require.NoError(t, pager.Err())
	var confirmedResult bool
	for _, h := range history {
		if h.Type == "agent.mcp_tool_result" {
			confirmedResult = !h.AsAgentMCPToolResult().IsError
		}
	}
	require.True(t, confirmedResult, "the calculator ran after the console's allow: %v", history)
	last := history[len(history)-1]
	require.Equal(t, "session.status_idle", last.Type)
	require.Equal(t, "end_turn", last.AsSessionStatusIdle().StopReason.Type)
	timeline := runOf(b, chromedp.Text(chromedp.CSS("#session-timeline")))
	require.Contains(t, timeline, "agent.mcp_tool_result")
	require.Contains(t, timeline, "stop_reason end_turn")
	b.shot("session")
	b.do(chromedp.Navigate(base+"/console/sessions"), chromedp.WaitVisible(chromedp.CSS("table.sessions")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("table.sessions"))), "Sums for the console")
	b.shot("sessions")
	b.do(chromedp.Navigate(base+"/console/approvals"), chromedp.WaitVisible(chromedp.CSS("#no-approvals")))

	// Small screens and the dark scheme.
	b.do(chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/console/runs/"+first), chromedp.WaitVisible(chromedp.CSS("#run-status")))
	width := runOf(b, chromedp.Evaluate[int]("document.documentElement.scrollWidth"))
	require.LessOrEqual(t, width, 390, "no horizontal scrolling of the page at 390 px")
	b.shot("run-390px")
	b.do(chromedp.Navigate(base+"/console/sessions/"+sess.ID), chromedp.WaitVisible(chromedp.CSS("#session-status")))
	width = runOf(b, chromedp.Evaluate[int]("document.documentElement.scrollWidth"))
	require.LessOrEqual(t, width, 390, "no horizontal scrolling of a session page at 390 px")
	b.do(chromedp.EmulateViewport(1280, 900), setColorScheme("dark"), chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.CSS(".trio")))
	bg := runOf(b, chromedp.Evaluate[string]("getComputedStyle(document.body).backgroundColor"))
	require.Equal(t, "rgb(18, 20, 23)", bg, "the dark scheme")
	b.shot("overview-dark")
	b.do(setColorScheme("light"))

	// A tenant key sees its own tenant only: the admin's run is a 404 page.
	b.logout()
	b.login(acme)
	b.do(chromedp.Navigate(base+"/console/runs/"+first), chromedp.WaitVisible(chromedp.CSS("h1")))
	require.Contains(t, runOf(b, chromedp.Text(chromedp.CSS("h1"))), "404")
	b.shot("not-found")
	b.do(chromedp.Navigate(base+"/console/runs"), chromedp.WaitVisible(chromedp.CSS("table.runs")))
	require.NotContains(t, runOf(b, chromedp.Text(chromedp.CSS("table.runs"))), first)
}
