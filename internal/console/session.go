package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/auth"
)

// cookieName holds the session id; loginCookie the login form's CSRF token
// (before there is a session).
const (
	cookieName  = "agentd_console"
	loginCookie = "agentd_console_login"
)

// maxSessions bounds the sessions one process holds; past it the oldest
// expire first (a login flood cannot grow memory without bound).
const maxSessions = 10000

// session is one logged-in browser. Sessions live in this process's memory:
// behind a load balancer with several API instances, the console needs
// sticky sessions (or a login per instance).
type session struct {
	id   string
	csrf string
	// token is the API key the operator logged in with: kept in memory
	// only, never rendered, re-checked on every request.
	token     string
	principal auth.Principal
	expires   time.Time

	mu sync.Mutex
	// flash is shown once by the next page (after a redirect).
	flash string
}

func (s *session) setFlash(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flash = msg
}

func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := s.flash
	s.flash = ""
	return msg
}

func (s *session) validCSRF(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}

type sessions struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[string]*session{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (ss *sessions) create(token string, p auth.Principal) *session {
	s := &session{id: randomToken(), csrf: randomToken(), token: token, principal: p, expires: ss.now().Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for id, o := range ss.m {
		if !now.Before(o.expires) {
			delete(ss.m, id)
		}
	}
	if len(ss.m) >= maxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(ss.m, oldest.id)
	}
	ss.m[s.id] = s
	return s
}

// fromRequest returns the request's live session, or nil (none, unknown or
// expired).
func (ss *sessions) fromRequest(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[ck.Value]
	if !ok {
		return nil
	}
	if !ss.now().Before(s.expires) {
		delete(ss.m, s.id)
		return nil
	}
	return s
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// secure: the cookie is Secure when the request came over TLS (directly or,
// as the proxy says, before it).
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, s *session) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/console", HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode, Expires: s.expires})
}

func clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/console", HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

type loginData struct {
	Next  string
	CSRF  string
	Error string
}

// safeNext keeps a post-login redirect on the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || (u.Path != "/console" && !hasPrefix(u.Path, "/console/")) {
		return "/console"
	}
	return u.RequestURI()
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func (c *Console) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Auth == nil {
		http.Redirect(w, r, "/console", http.StatusSeeOther)
		return
	}
	c.loginForm(w, r, http.StatusOK, "")
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// Double-submit token: the form's hidden field must equal the cookie.
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/console", HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	c.render(w, r, nil, status, "login", "Log in", loginData{Next: safeNext(r.URL.Query().Get("next")), CSRF: tok, Error: msg})
}

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Auth == nil {
		http.Redirect(w, r, "/console", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.renderError(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	ck, err := r.Cookie(loginCookie)
	tok := r.PostFormValue("csrf")
	if err != nil || tok == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(tok)) != 1 {
		c.renderError(w, r, nil, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the login page and try again.")
		return
	}
	key := r.PostFormValue("key")
	p, err := c.cfg.Auth.Authenticate(r.Context(), auth.TokenFrom("", key))
	if err != nil {
		status, msg := http.StatusUnauthorized, "That key is unknown, malformed or revoked."
		if !errors.Is(err, auth.ErrInvalidKey) && !errors.Is(err, auth.ErrNoKey) {
			c.cfg.Log.ErrorContext(r.Context(), "console: login", "err", err)
			status, msg = http.StatusInternalServerError, "The store could not be asked; try again."
		}
		r.URL.RawQuery = url.Values{"next": {r.PostFormValue("next")}}.Encode()
		c.loginForm(w, r, status, msg)
		return
	}
	s := c.sessions.create(key, p)
	clearCookie(w, r, loginCookie)
	c.setCookie(w, r, s)
	c.cfg.Log.InfoContext(r.Context(), "console login", "tenant", p.Tenant, "key_prefix", p.KeyPrefix)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request, v viewer) {
	c.sessions.delete(v.sess.id)
	clearCookie(w, r, cookieName)
	if v.AuthOff {
		http.Redirect(w, r, "/console", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}
