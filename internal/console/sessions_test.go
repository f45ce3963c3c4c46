package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/console"
	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// noTurns is the session service's runner in these handler tests: the
// pages read sessions and their events, they start no turn (the browser
// test runs whole turns through agentd).
type noTurns struct{}

var errNoTurns = errors.New("this handler test starts no turns")

func (noTurns) Submit(context.Context, run.SubmitParams) (store.Run, bool, error) {
	return store.Run{}, false, errNoTurns
}
func (noTurns) Interrupt(context.Context, string, string) (store.Run, error) {
	return store.Run{}, errNoTurns
}
func (noTurns) Decide(context.Context, run.DecideParams) (store.Approval, store.Run, error) {
	return store.Approval{}, store.Run{}, errNoTurns
}
func (noTurns) SubmitToolResult(context.Context, run.ToolResultParams) (store.Approval, store.Run, error) {
	return store.Approval{}, store.Run{}, errNoTurns
}

type sessionBundle struct {
	*testBundle
	svc *managed.Service
}

// setupSessions is setup with authentication on and the Managed Agents
// service over the same store.
func setupSessions(t *testing.T) *sessionBundle {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	b := &testBundle{st: st, clock: &clock{t: time.Now()}, cancel: &fakeCanceler{st: st}}
	svc := &managed.Service{Store: st, Runs: noTurns{}, RunEvents: st}
	cfg := console.Config{Store: st, Runs: b.cancel, Approvals: storeDecider{st: st}, Now: b.clock.Now, SessionTTL: time.Hour,
		Redactor: observe.NewRedactor("s3cret-tool-token"), Sessions: svc, Auth: &auth.Authenticator{Keys: st},
		Health: func() server.HealthReport { return server.HealthReport{Status: "ok", Ready: true, Version: "test"} }}
	k, err := auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "ops", Scopes: []string{auth.ScopeAdmin}})
	require.NoError(t, err)
	b.admin = k.Token
	k, err = auth.CreateKey(t.Context(), st, auth.CreateParams{Tenant: "acme", Scopes: []string{auth.ScopeRuns}})
	require.NoError(t, err)
	b.acme = k.Token
	c, err := console.New(cfg)
	require.NoError(t, err)
	b.srv = httptest.NewServer(c)
	t.Cleanup(b.srv.Close)
	return &sessionBundle{testBundle: b, svc: svc}
}

// session creates an agent, an environment and a session of tenant
// through the Managed Agents service.
func (b *sessionBundle) session(t *testing.T, tenant, title string) managed.Session {
	t.Helper()
	ctx := t.Context()
	a, err := b.svc.CreateAgent(ctx, tenant, managed.AgentRequest{Name: json.RawMessage(`"Helper of ` + tenant + `"`),
		Model: json.RawMessage(`"claude-sonnet-4-5"`)})
	require.NoError(t, err)
	env, err := b.svc.CreateEnvironment(ctx, tenant, managed.EnvironmentRequest{Name: json.RawMessage(`"env"`)})
	require.NoError(t, err)
	s, err := b.svc.CreateSession(ctx, tenant, managed.SessionCreateRequest{Agent: json.RawMessage(`"` + a.ID + `"`),
		EnvironmentID: json.RawMessage(`"` + env.ID + `"`), Title: json.RawMessage(`"` + title + `"`)})
	require.NoError(t, err)
	return s
}

// pausedTurn stores a turn of session s (a run on its conversation) that
// waits for the given calls.
func (b *sessionBundle) pausedTurn(t *testing.T, tenant string, s managed.Session, calls ...store.Approval) store.Run {
	t.Helper()
	ctx := t.Context()
	ms, err := b.st.GetManagedSession(ctx, tenant, s.ID)
	require.NoError(t, err)
	r := store.Run{ID: "run_" + s.ID, Tenant: tenant, Agent: s.Agent.ID, ConversationID: ms.ConversationID, Status: store.RunQueued,
		Input: json.RawMessage(`{"message":"please pay the invoice"}`), CreatedAt: time.Now()}
	require.NoError(t, b.st.CreateRun(ctx, r))
	now := time.Now().UTC()
	r, err = b.st.ClaimRun(ctx, store.ClaimRunParams{ID: r.ID, Owner: "w", LeaseUntil: now.Add(time.Minute), Now: now})
	require.NoError(t, err)
	for i := range calls {
		calls[i].Tenant, calls[i].Step = tenant, 1
		if calls[i].ExpiresAt.IsZero() {
			calls[i].ExpiresAt = now.Add(time.Hour)
		}
	}
	require.NoError(t, b.st.PauseRun(ctx, store.PauseRunParams{
		Run:       store.UpdateRunParams{ID: r.ID, Status: store.RunRequiresAction, Attempt: r.Attempt, StartedAt: r.StartedAt},
		Approvals: calls,
	}))
	return r
}

func TestSessionPages(t *testing.T) {
	t.Parallel()
	b := setupSessions(t)
	ctx := t.Context()
	mine := b.session(t, "acme", "Invoices")
	theirs := b.session(t, "globex", "Secret project")
	r := b.pausedTurn(t, "acme", mine,
		store.Approval{ToolUseID: "toolu_pay", Name: "pay", Input: json.RawMessage(`{"amount":5,"token":"s3cret-tool-token"}`)},
		store.Approval{ToolUseID: "toolu_lookup", Name: "lookup", Kind: store.ApprovalKindCustomTool, Input: json.RawMessage(`{}`)})

	// The tenant key: its own session only; another tenant's is the same
	// 404 page as an unknown id.
	viewer := b.client(t)
	tok := b.login(t, viewer, b.acme)
	resp, body := get(t, viewer, b.srv.URL+"/console/sessions")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, mine.ID)
	require.Contains(t, body, "Invoices")
	require.NotContains(t, body, theirs.ID)
	require.Contains(t, body, `s-waiting`, "the paused turn shows as waiting")
	resp, body = get(t, viewer, b.srv.URL+"/console/sessions?tenant=globex")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, body, theirs.ID, "a tenant key's tenant filter is ignored")
	for _, id := range []string{theirs.ID, "sesn_does_not_exist"} {
		resp, body = get(t, viewer, b.srv.URL+"/console/sessions/"+id)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, id)
		require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
		require.Contains(t, body, "No session with that id")
		require.NotContains(t, body, "Secret project")
	}
	resp, body = get(t, viewer, b.srv.URL+"/console/sessions/"+mine.ID)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Helper of acme")
	require.Contains(t, body, "version 1")
	require.Contains(t, body, "please pay the invoice", "the turn's user.message is on the timeline")
	require.Contains(t, body, "toolu_pay")
	require.Contains(t, body, "waits for the client's result", "the custom tool's call is shown without buttons")
	require.NotContains(t, body, "s3cret-tool-token", "inputs are scrubbed")
	require.NotContains(t, body, `id="allow-toolu_pay"`, "a runs key gets no buttons")
	resp, _ = post(t, viewer, b.srv.URL+"/console/sessions/"+mine.ID+"/approvals",
		url.Values{"csrf": {tok}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// Bad input.
	for _, q := range []string{"status=bogus", "agent=" + url.QueryEscape("a b<"), "cursor=nope"} {
		resp, _ = get(t, viewer, b.srv.URL+"/console/sessions?"+q)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}

	// An admin: every tenant's sessions, the buttons; a POST without the
	// CSRF token changes nothing.
	c := b.client(t)
	csrf := b.login(t, c, b.admin)
	_, body = get(t, c, b.srv.URL+"/console/sessions")
	require.Contains(t, body, mine.ID)
	require.Contains(t, body, theirs.ID)
	_, body = get(t, c, b.srv.URL+"/console/sessions?tenant=globex")
	require.NotContains(t, body, mine.ID)
	require.Contains(t, body, theirs.ID)
	_, body = get(t, c, b.srv.URL+"/console/sessions?status=terminated")
	require.NotContains(t, body, mine.ID)
	_, body = get(t, c, b.srv.URL+"/console/sessions/"+mine.ID)
	require.Contains(t, body, `id="allow-toolu_pay"`)
	require.NotContains(t, body, `id="allow-toolu_lookup"`)
	for _, tk := range []string{"", "wrong-token"} {
		resp, body = post(t, c, b.srv.URL+"/console/sessions/"+mine.ID+"/approvals",
			url.Values{"csrf": {tk}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Contains(t, body, "CSRF")
	}
	resp, _ = post(t, c, b.srv.URL+"/console/sessions/sesn_nope/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/console/sessions/"+mine.ID+"/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"perhaps"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	// A custom tool's call waits for its client: a forged allow of it is
	// refused.
	resp, _ = post(t, c, b.srv.URL+"/console/sessions/"+mine.ID+"/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_lookup"}, "decision": {"approve"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	list, err := b.st.ListApprovals(ctx, r.ID)
	require.NoError(t, err)
	for _, a := range list {
		require.Equal(t, store.DecisionPending, a.Decision, a.ToolUseID)
	}
	// Allow: the same decision as a user.tool_confirmation's allow.
	resp, _ = post(t, c, b.srv.URL+"/console/sessions/"+mine.ID+"/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/sessions/"+mine.ID, resp.Header.Get("Location"))
	list, err = b.st.ListApprovals(ctx, r.ID)
	require.NoError(t, err)
	for _, a := range list {
		if a.ToolUseID == "toolu_pay" {
			require.Equal(t, store.DecisionApprove, a.Decision)
			require.NotEmpty(t, a.DecidedBy)
		}
	}
	resp, _ = post(t, c, b.srv.URL+"/console/sessions/"+mine.ID+"/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"deny"}})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "decided already")
	// A session with no paused turn has nothing to decide.
	resp, _ = post(t, c, b.srv.URL+"/console/sessions/"+theirs.ID+"/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_pay"}, "decision": {"approve"}})
	require.Equal(t, http.StatusConflict, resp.StatusCode)
}

// The approvals page: every pending call of the visible tenants, oldest
// first, with links to its run and session; the overview counts them.
func TestApprovalsPage(t *testing.T) {
	t.Parallel()
	b := setupSessions(t)
	ctx := t.Context()
	s := b.session(t, "acme", "Invoices")
	b.pausedTurn(t, "acme", s, store.Approval{ToolUseID: "toolu_old", Name: "pay", Input: json.RawMessage(`{"token":"s3cret-tool-token"}`)})
	time.Sleep(5 * time.Millisecond)
	other := b.run(t, "globex", store.RunQueued)
	now := time.Now().UTC()
	other, err := b.st.ClaimRun(ctx, store.ClaimRunParams{ID: other.ID, Owner: "w", LeaseUntil: now.Add(time.Minute), Now: now})
	require.NoError(t, err)
	require.NoError(t, b.st.PauseRun(ctx, store.PauseRunParams{
		Run:       store.UpdateRunParams{ID: other.ID, Status: store.RunRequiresAction, Attempt: other.Attempt, StartedAt: other.StartedAt},
		Approvals: []store.Approval{{Tenant: "globex", ToolUseID: "toolu_new", Step: 1, Name: "delete_repo", Input: json.RawMessage(`{}`), ExpiresAt: now.Add(time.Hour)}},
	}))

	c := b.client(t)
	csrf := b.login(t, c, b.admin)
	resp, body := get(t, c, b.srv.URL+"/console/approvals")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	iOld, iNew := strings.Index(body, "toolu_old"), strings.Index(body, "toolu_new")
	require.True(t, iOld > 0 && iNew > 0 && iOld < iNew, "both, oldest first")
	require.Contains(t, body, `href="/console/sessions/`+s.ID+`"`)
	require.Contains(t, body, `href="/console/runs/`+other.ID+`"`)
	require.NotContains(t, body, "s3cret-tool-token")
	_, body = get(t, c, b.srv.URL+"/console")
	require.Contains(t, body, "<strong>2</strong> tool calls wait")

	viewer := b.client(t)
	b.login(t, viewer, b.acme)
	_, body = get(t, viewer, b.srv.URL+"/console/approvals")
	require.Contains(t, body, "toolu_old")
	require.NotContains(t, body, "toolu_new", "another tenant's call")
	require.NotContains(t, body, `id="approve-toolu_old"`, "a runs key gets no buttons")
	_, body = get(t, viewer, b.srv.URL+"/console")
	require.Contains(t, body, "<strong>1</strong> tool call waits")

	// Deny from the page: back to the page, which no longer lists it.
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+other.ID+"/approvals",
		url.Values{"tool_use_id": {"toolu_new"}, "decision": {"deny"}, "back": {"approvals"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token")
	resp, _ = post(t, c, b.srv.URL+"/console/runs/"+other.ID+"/approvals",
		url.Values{"csrf": {csrf}, "tool_use_id": {"toolu_new"}, "decision": {"deny"}, "reason": {"no"}, "back": {"approvals"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/approvals", resp.Header.Get("Location"))
	_, body = get(t, c, b.srv.URL+"/console/approvals")
	require.NotContains(t, body, "toolu_new")
	require.Contains(t, body, "toolu_old")
}

// The console's session and approval queries on both backends: tenant
// scoping, every tenant for an admin, the status filter, the cursor, the
// turns' digest, pending calls oldest first with their session.
func TestConsoleSessionQueries(t *testing.T) {
	t.Parallel()
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		type fullStore interface {
			console.Store
			store.Managed
			CreateRun(ctx context.Context, r store.Run) error
			ClaimRun(ctx context.Context, p store.ClaimRunParams) (store.Run, error)
			PauseRun(ctx context.Context, p store.PauseRunParams) error
		}
		st := consoleStore(t, backend).(fullStore)
		ctx := t.Context()
		svc := &managed.Service{Store: st}
		base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
		var ids []string
		for i, tenant := range []string{"acme", "globex", "acme", "acme"} {
			a, err := svc.CreateAgent(ctx, tenant, managed.AgentRequest{Name: json.RawMessage(`"h"`), Model: json.RawMessage(`"claude-sonnet-4-5"`)})
			require.NoError(t, err)
			ms, err := st.CreateManagedSession(ctx, store.ManagedSession{ID: fmt.Sprintf("sesn_%02d", i), Tenant: tenant, AgentID: a.ID,
				AgentVersion: 1, EnvironmentID: "env_x", ConversationID: fmt.Sprintf("conv_s%02d", i), Status: managed.StatusIdle,
				Data: json.RawMessage(`{}`), CreatedAt: base.Add(time.Duration(i) * time.Minute)})
			require.NoError(t, err)
			ids = append(ids, ms.ID)
		}
		_, err := st.ArchiveManagedSession(ctx, "acme", ids[2], managed.StatusTerminated, time.Time{})
		require.NoError(t, err)
		// Two turns of session 0, the second paused on two calls.
		for j, status := range []store.RunStatus{store.RunSucceeded, store.RunQueued} {
			r := store.Run{ID: fmt.Sprintf("run_s0_%d", j), Tenant: "acme", Agent: "a", ConversationID: "conv_s00", Status: status,
				Input: json.RawMessage(`{}`), InputTokens: 100, OutputTokens: 10, CostUSD: 5000, CreatedAt: base.Add(time.Duration(j) * time.Second)}
			require.NoError(t, st.CreateRun(ctx, r))
		}
		now := time.Now().UTC()
		r, err := st.ClaimRun(ctx, store.ClaimRunParams{ID: "run_s0_1", Owner: "w", LeaseUntil: now.Add(time.Minute), Now: now})
		require.NoError(t, err)
		require.NoError(t, st.PauseRun(ctx, store.PauseRunParams{
			Run: store.UpdateRunParams{ID: r.ID, Status: store.RunRequiresAction, Attempt: r.Attempt, StartedAt: r.StartedAt,
				InputTokens: 100, OutputTokens: 10},
			Approvals: []store.Approval{{Tenant: "acme", ToolUseID: "toolu_a", Step: 1, Name: "pay", ExpiresAt: now.Add(time.Hour)}},
		}))
		// A plain run of globex, paused later.
		require.NoError(t, st.CreateRun(ctx, store.Run{ID: "run_g", Tenant: "globex", Agent: "a", Status: store.RunQueued,
			Input: json.RawMessage(`{}`), CreatedAt: now}))
		g, err := st.ClaimRun(ctx, store.ClaimRunParams{ID: "run_g", Owner: "w", LeaseUntil: now.Add(time.Minute), Now: now})
		require.NoError(t, err)
		require.NoError(t, st.PauseRun(ctx, store.PauseRunParams{
			Run:       store.UpdateRunParams{ID: g.ID, Status: store.RunRequiresAction, Attempt: g.Attempt, StartedAt: g.StartedAt},
			Approvals: []store.Approval{{Tenant: "globex", ToolUseID: "toolu_g", Step: 1, Name: "rm", ExpiresAt: now.Add(time.Hour)}},
		}))

		list := func(p store.ConsoleSessionsParams) []string {
			rows, err := st.ListConsoleSessions(ctx, p)
			require.NoError(t, err)
			var out []string
			for _, s := range rows {
				out = append(out, s.ID)
			}
			return out
		}
		require.Equal(t, []string{ids[3], ids[2], ids[0]}, list(store.ConsoleSessionsParams{Tenant: "acme"}))
		require.Equal(t, []string{ids[3], ids[2], ids[1], ids[0]}, list(store.ConsoleSessionsParams{AllTenants: true}))
		require.Equal(t, []string{ids[2]}, list(store.ConsoleSessionsParams{Tenant: "acme", Status: managed.StatusTerminated}))
		require.Equal(t, []string{ids[3], ids[0]}, list(store.ConsoleSessionsParams{Tenant: "acme", Status: managed.StatusIdle}))
		p := store.ConsoleSessionsParams{AllTenants: true}
		p.Page.Limit = 2
		require.Equal(t, []string{ids[3], ids[2]}, list(p))
		p.Page.AfterCreatedAt, p.Page.AfterID = base.Add(2*time.Minute), ids[2]
		require.Equal(t, []string{ids[1], ids[0]}, list(p))
		rows, err := st.ListConsoleSessions(ctx, store.ConsoleSessionsParams{Tenant: "acme", Status: managed.StatusIdle})
		require.NoError(t, err)
		s0 := rows[1]
		require.Equal(t, ids[0], s0.ID)
		require.Equal(t, store.RunRequiresAction, s0.LastRunStatus)
		require.Equal(t, 2, s0.Turns)
		require.EqualValues(t, 200, s0.InputTokens)
		require.EqualValues(t, 20, s0.OutputTokens)
		require.Equal(t, store.RunStatus(""), rows[0].LastRunStatus, "no turn yet")

		found, err := st.FindManagedSession(ctx, ids[1])
		require.NoError(t, err)
		require.Equal(t, "globex", found.Tenant)
		_, err = st.FindManagedSession(ctx, "sesn_nope")
		require.ErrorIs(t, err, store.ErrNotFound)

		pend, err := st.ListPendingApprovals(ctx, store.PendingApprovalsParams{AllTenants: true})
		require.NoError(t, err)
		require.Len(t, pend, 2)
		require.Equal(t, "toolu_a", pend[0].ToolUseID, "oldest first")
		require.Equal(t, ids[0], pend[0].SessionID)
		require.Equal(t, "toolu_g", pend[1].ToolUseID)
		require.Equal(t, "", pend[1].SessionID)
		pend, err = st.ListPendingApprovals(ctx, store.PendingApprovalsParams{Tenant: "globex"})
		require.NoError(t, err)
		require.Len(t, pend, 1)
		require.Equal(t, "toolu_g", pend[0].ToolUseID)
		n, err := st.CountPendingApprovals(ctx, "acme", false)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = st.CountPendingApprovals(ctx, "", true)
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})
}
