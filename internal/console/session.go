package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/auth"
)

// cookieName holds the session; loginCookie the login form's CSRF token
// (before there is a session); flashCookie a one-time message for the page
// after a redirect.
const (
	cookieName  = "agentd_console"
	loginCookie = "agentd_console_login"
	flashCookie = "agentd_console_flash"
)

// A session is a signed cookie, so that every instance sharing the
// session secret (console.session_secret) accepts it: the hash of the key
// the operator logged in with (never the key), the expiry and a random id,
// with an HMAC-SHA256 of them. The key is looked up again on every
// request, so a revoked key's sessions end at once. Without a configured
// secret each process draws its own: sessions then hold on the instance
// that created them only.
type session struct {
	id string
	// hash is the SHA-256 of the API key ("" with authentication off).
	hash    string
	expires time.Time
	// csrf is the session's CSRF token: an HMAC of the cookie, the same on
	// every instance.
	csrf      string
	principal auth.Principal
}

func (s *session) validCSRF(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}

type sessions struct {
	ttl    time.Duration
	now    func() time.Time
	secret []byte
	mu     sync.Mutex
	// ended are the ids of sessions logged out on this instance, until
	// they expire (another instance accepts such a cookie until its
	// expiry; the browser has dropped it).
	ended map[string]time.Time
}

func newSessions(ttl time.Duration, now func() time.Time, secret []byte) *sessions {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	return &sessions{ttl: ttl, now: now, secret: secret, ended: map[string]time.Time{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (ss *sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, ss.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// payload is the signed part of the cookie: id, expiry, key hash.
func payload(s *session) string {
	return s.id + "." + strconv.FormatInt(s.expires.Unix(), 10) + "." + s.hash
}

func (ss *sessions) fill(s *session) {
	s.csrf = ss.mac("csrf", payload(s))
}

func (ss *sessions) create(keyHash string) (*session, string) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	s := &session{id: base64.RawURLEncoding.EncodeToString(id[:]), hash: keyHash, expires: ss.now().Add(ss.ttl).Truncate(time.Second)}
	ss.fill(s)
	return s, payload(s) + "." + ss.mac("session", payload(s))
}

// fromRequest returns the request's valid session, or nil (none, forged,
// expired or logged out).
func (ss *sessions) fromRequest(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil || len(ck.Value) > 512 {
		return nil
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 4 {
		return nil
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil
	}
	s := &session{id: parts[0], hash: parts[2], expires: time.Unix(exp, 0)}
	if subtle.ConstantTimeCompare([]byte(parts[3]), []byte(ss.mac("session", payload(s)))) != 1 {
		return nil
	}
	now := ss.now()
	if !now.Before(s.expires) {
		return nil
	}
	ss.mu.Lock()
	_, ended := ss.ended[s.id]
	ss.mu.Unlock()
	if ended {
		return nil
	}
	ss.fill(s)
	return s
}

// end logs s out on this instance.
func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for id, exp := range ss.ended {
		if !now.Before(exp) {
			delete(ss.ended, id)
		}
	}
	ss.ended[s.id] = s.expires
}

// secure: the cookie is Secure when the request came over TLS (directly or,
// as the proxy says, before it).
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, s *session, value string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/console", HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode, Expires: s.expires})
}

// setFlash shows msg once, on the next page this browser gets.
func setFlash(w http.ResponseWriter, r *http.Request, msg string) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(msg)), Path: "/console",
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode, MaxAge: 60})
}

// takeFlash returns the flash message set by the previous answer and
// clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	clearCookie(w, r, flashCookie)
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(b) > 300 {
		return ""
	}
	return string(b)
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
	if err != nil || u.Scheme != "" || u.Host != "" || (u.Path != "/console" && !strings.HasPrefix(u.Path, "/console/")) {
		return "/console"
	}
	return u.RequestURI()
}

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
	s, value := c.sessions.create(auth.Hash(key))
	clearCookie(w, r, loginCookie)
	c.setCookie(w, r, s, value)
	c.cfg.Log.InfoContext(r.Context(), "console login", "tenant", p.Tenant, "key_prefix", p.KeyPrefix)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request, v viewer) {
	c.sessions.end(v.sess)
	clearCookie(w, r, cookieName)
	if v.AuthOff {
		http.Redirect(w, r, "/console", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}
