// Package console is the operator console: server-rendered pages under
// /console (html/template, one small script, assets embedded) over the
// same store, health report and event streams as the JSON API.
//
// Access: with authentication on, an operator logs in with an API key
// through a form and gets a session cookie (HttpOnly, SameSite=Strict,
// Secure over TLS). A key with the admin scope sees every tenant; any other
// key sees its own tenant only. With authentication off the console opens
// directly and says so on every page. Every state-changing form carries the
// session's CSRF token (403 without it), and every response carries a
// Content-Security-Policy that allows scripts from 'self' only.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/server"
	"github.com/agentd/agentd/internal/store"
	template "github.com/agentd/agentd/internal/third_party/gotemplate/html"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultSessionTTL is how long a console session lasts after login.
const DefaultSessionTTL = 12 * time.Hour

// Store is what the console reads and changes in the system of record.
type Store interface {
	ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error)
	GetRun(ctx context.Context, tenant, id string) (store.Run, error)
	// FindRun returns a run whatever its tenant (admin sessions).
	FindRun(ctx context.Context, id string) (store.Run, error)
	ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error)
	LatestCheckpoint(ctx context.Context, runID string) (store.Checkpoint, error)
	GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error)
	DeleteConversation(ctx context.Context, tenant, id string) error
	store.APIKeys
	store.Usage
	store.Audit
	// ListRecentAudit pages the audit log newest first.
	ListRecentAudit(ctx context.Context, p store.RecentAuditParams) ([]store.AuditEntry, error)
	// ListApprovals lists the tool calls a run waits, or waited, for.
	ListApprovals(ctx context.Context, runID string) ([]store.Approval, error)
	// ListFeedback lists people's ratings (of one run, with RunID).
	ListFeedback(ctx context.Context, p store.ListFeedbackParams) ([]store.FeedbackEntry, error)
	// ListPendingApprovals and CountPendingApprovals: the calls paused
	// runs wait for, of one tenant or all (the approvals page, the
	// overview).
	ListPendingApprovals(ctx context.Context, p store.PendingApprovalsParams) ([]store.PendingApproval, error)
	CountPendingApprovals(ctx context.Context, tenant string, allTenants bool) (int, error)
	// Managed Agents sessions: a page of them with their turns' digest;
	// one whatever its tenant (admin) or of a tenant; a session's turns.
	ListConsoleSessions(ctx context.Context, p store.ConsoleSessionsParams) ([]store.ConsoleSession, error)
	FindManagedSession(ctx context.Context, id string) (store.ManagedSession, error)
	GetManagedSession(ctx context.Context, tenant, id string) (store.ManagedSession, error)
	ListConversationRuns(ctx context.Context, tenant, conversationID string) ([]store.Run, error)
}

// Decider decides on tool calls that wait for a person (run.Runs).
type Decider interface {
	Decide(ctx context.Context, p run.DecideParams) (store.Approval, store.Run, error)
}

// Canceler cancels runs (run.Runs).
type Canceler interface {
	Cancel(ctx context.Context, tenant, id string) (store.Run, error)
}

// Config are the console's dependencies.
type Config struct {
	Store Store
	// Runs cancels runs; nil: no cancel button.
	Runs Canceler
	// Approvals decides on the tool calls paused runs wait for; nil: no
	// approve and deny buttons.
	Approvals Decider
	// Auth verifies API keys at login and on every request (a revoked key
	// ends its sessions at once); nil: authentication is off.
	Auth *auth.Authenticator
	// Health is the /healthz report.
	Health func() server.HealthReport
	// Events streams a run's events as GET /v1/runs/{id}/events does.
	Events func(w http.ResponseWriter, r *http.Request, tenant, id string)
	// Sessions reads Managed Agents sessions and their events
	// (managed.Service); nil: the session pages say they are not served.
	Sessions Sessions
	// SessionEvents streams a session's events as GET
	// /v1/sessions/{id}/events/stream does.
	SessionEvents func(w http.ResponseWriter, r *http.Request, tenant, id string)
	// Redactor scrubs tool inputs and outputs as the logs are scrubbed.
	Redactor *observe.Redactor
	// Sampler feeds the overview's charts (nil: no charts).
	Sampler *Sampler
	// Budgets returns the configured budget limits of a tenant (nil: none).
	Budgets func(tenant string) (dailyUSD, monthlyUSD float64)
	// SessionTTL defaults to DefaultSessionTTL.
	SessionTTL time.Duration
	// SessionSecret signs session cookies; instances sharing it accept each
	// other's sessions. Empty: a random secret per process.
	SessionSecret []byte
	// Now is the clock (tests); defaults to time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Console serves /console.
type Console struct {
	cfg      Config
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New builds the console.
func New(cfg Config) (*Console, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, sessions: newSessions(cfg.SessionTTL, cfg.Now, cfg.SessionSecret), pages: map[string]*template.Template{}}
	if err := c.parse(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /console/login", c.handleLoginForm)
	m.HandleFunc("POST /console/login", c.handleLogin)
	m.HandleFunc("POST /console/logout", c.page(c.handleLogout))
	m.HandleFunc("GET /console", c.page(c.handleOverview))
	m.HandleFunc("GET /console/{$}", c.page(c.handleOverview))
	m.HandleFunc("GET /console/runs", c.page(c.handleRuns))
	m.HandleFunc("GET /console/runs/{id}", c.page(c.handleRun))
	m.HandleFunc("GET /console/runs/{id}/events", c.page(c.handleRunEvents))
	m.HandleFunc("POST /console/runs/{id}/cancel", c.page(c.handleCancel))
	m.HandleFunc("POST /console/runs/{id}/approvals", c.page(c.handleDecide))
	m.HandleFunc("GET /console/conversations/{id}", c.page(c.handleConversation))
	m.HandleFunc("POST /console/conversations/{id}/delete", c.page(c.handleDeleteConversation))
	m.HandleFunc("GET /console/usage", c.page(c.handleUsage))
	m.HandleFunc("GET /console/keys", c.page(c.handleKeys))
	m.HandleFunc("POST /console/keys", c.page(c.handleCreateKey))
	m.HandleFunc("POST /console/keys/{id}/revoke", c.page(c.handleRevokeKey))
	m.HandleFunc("GET /console/audit", c.page(c.handleAudit))
	m.HandleFunc("GET /console/approvals", c.page(c.handleApprovals))
	m.HandleFunc("GET /console/sessions", c.page(c.handleSessions))
	m.HandleFunc("GET /console/sessions/{id}", c.page(c.handleSession))
	m.HandleFunc("GET /console/sessions/{id}/events", c.page(c.handleSessionEvents))
	m.HandleFunc("POST /console/sessions/{id}/approvals", c.page(c.handleSessionDecide))
	c.mux = m
	return c, nil
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w)
	if _, pattern := c.mux.Handler(r); pattern == "" {
		c.renderError(w, r, nil, http.StatusNotFound, "No such page.")
		return
	}
	c.mux.ServeHTTP(w, r)
}

// csp allows this origin's script and style only: no inline script, no
// inline style, no framing, forms post to this origin only.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func setSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// viewer is who looks: the session's principal and what it may see.
type viewer struct {
	sess *session
	// Admin sees every tenant; otherwise only Tenant.
	Admin  bool
	Tenant string
	// AuthOff: authentication is off (the banner).
	AuthOff bool
	Prefix  string // the key's display prefix
	// KeyID is the session key's id ("" with authentication off);
	// Approve: it may decide on tool calls (scope approve or admin).
	KeyID   string
	Approve bool
}

// tenantFor is the tenant a query acts for: a tenant session's own; for an
// admin the one asked for ("" meaning all).
func (v viewer) tenantFor(asked string) string {
	if v.Admin {
		return asked
	}
	return v.Tenant
}

type pageFunc func(w http.ResponseWriter, r *http.Request, v viewer)

// page resolves the session (or sends the browser to the login form),
// checks the CSRF token of state-changing requests, and calls fn.
func (c *Console) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok := c.viewer(w, r)
		if !ok {
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				c.renderError(w, r, &v, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !v.sess.validCSRF(r.PostFormValue("csrf")) {
				c.renderError(w, r, &v, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
				return
			}
		}
		fn(w, r, v)
	}
}

// viewer returns the request's viewer, or redirects to the login form (an
// expired, forged or logged-out session, a revoked key) and returns false.
func (c *Console) viewer(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	sess := c.sessions.fromRequest(r)
	if c.cfg.Auth == nil {
		if sess == nil {
			var value string
			sess, value = c.sessions.create("")
			c.setCookie(w, r, sess, value)
		}
		return viewer{sess: sess, Admin: true, Tenant: server.DefaultTenant, AuthOff: true, Approve: true}, true
	}
	if sess != nil && sess.hash != "" {
		// The key is looked up on every request: a revoked key's sessions
		// end with its next page.
		k, err := c.cfg.Store.GetAPIKeyByHash(r.Context(), sess.hash)
		switch {
		case errors.Is(err, store.ErrNotFound):
			sess = nil
		case err != nil:
			c.cfg.Log.ErrorContext(r.Context(), "console: check session key", "err", err)
			c.renderError(w, r, nil, http.StatusInternalServerError, "The store could not be asked; try again.")
			return viewer{}, false
		case !k.RevokedAt.IsZero():
			sess = nil
		default:
			sess.principal = auth.Principal{Tenant: k.Tenant, KeyID: k.ID, KeyPrefix: k.Prefix, Scopes: k.Scopes}
		}
	} else {
		sess = nil
	}
	if sess == nil {
		c.toLogin(w, r)
		return viewer{}, false
	}
	p := sess.principal
	return viewer{sess: sess, Admin: p.Has(auth.ScopeAdmin), Tenant: p.Tenant, Prefix: p.KeyPrefix,
		KeyID: p.KeyID, Approve: p.Has(auth.ScopeApprove)}, true
}

// toLogin sends the browser to the login form, back to this page after.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request) {
	next := "/console"
	if r.Method == http.MethodGet {
		next = r.URL.RequestURI()
	}
	http.Redirect(w, r, "/console/login?next="+url.QueryEscape(next), http.StatusSeeOther)
}

// layoutData is what every page's layout shows.
type layoutData struct {
	Title   string
	Nav     string
	V       *viewer
	CSRF    string
	Flash   string
	Content any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, v *viewer, status int, name, title string, data any) {
	t, ok := c.pages[name]
	if !ok {
		panic("console: no template " + name)
	}
	ld := layoutData{Title: title, Nav: name, V: v, Content: data}
	if v != nil && v.sess != nil {
		ld.CSRF = v.sess.csrf
	}
	ld.Flash = takeFlash(w, r)
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", ld); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

type errorData struct {
	Status  int
	Message string
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, v *viewer, status int, msg string) {
	c.render(w, r, v, status, "error", fmt.Sprintf("%d %s", status, http.StatusText(status)), errorData{status, msg})
}

// storeError renders err: not found as 404, anything else as 500 (logged).
func (c *Console) storeError(w http.ResponseWriter, r *http.Request, v *viewer, what string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		c.renderError(w, r, v, http.StatusNotFound, "No "+what+" with that id (or it belongs to another tenant).")
		return
	}
	c.cfg.Log.ErrorContext(r.Context(), "console: store", "what", what, "err", err)
	c.renderError(w, r, v, http.StatusInternalServerError, "The store failed; the log says why.")
}

func (c *Console) parse() error {
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("console: parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return fmt.Errorf("console: parse %s: %w", n, err)
		}
		c.pages[name] = t
	}
	return nil
}
