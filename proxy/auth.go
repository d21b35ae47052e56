package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/authproxy/authproxy/internal/claim"
	"github.com/authproxy/authproxy/page"
	"github.com/authproxy/authproxy/proxy/assertion"
	"github.com/authproxy/authproxy/session"
)

// Rules decides who may pass. Hosts are the request's host name as
// route.HostName reads it ("" when the request named none); paths are the
// request's escaped path; the query is never consulted. A Rules that
// scopes rules to hosts may say which with a method Hosts() []string
// (*rules.Rules does): then forward auth believes an X-Forwarded-Host only
// from a trusted proxy.
type Rules interface {
	// Public reports whether the path needs no login.
	Public(method, host, escapedPath string) bool
	// Allowed reports whether a logged-in user with these claims may pass,
	// and which rule decided (for the log and the 403 page).
	Allowed(method, host, escapedPath string, claims map[string]any) (ok bool, reason string)
}

// Asserter signs the identity assertion for the upstream (an
// *assertion.Signer).
type Asserter interface {
	Assertion(assertion.Identity) (string, error)
}

// AssertionHeader carries the signed identity to the upstream.
const AssertionHeader = assertion.Header

// Headers names the optional identity headers; empty names are not sent.
// Every one of them is stripped from client requests like UserHeader.
type Headers struct {
	Email  string
	Name   string
	Groups string
	// GroupsClaim is the claim read for Groups (a list or a string).
	GroupsClaim string
	// AccessToken passes the user's access token (opt-in).
	AccessToken string
}

// identityHeaders lists every header the proxy sets about the user.
func (c Config) identityHeaders() []string {
	hs := []string{c.UserHeader, AssertionHeader}
	if c.BasicPassword != "" {
		hs = append(hs, "Authorization")
	}
	for _, h := range []string{c.Headers.Email, c.Headers.Name, c.Headers.Groups, c.Headers.AccessToken} {
		if h != "" {
			hs = append(hs, h)
		}
	}
	return hs
}

// target is the request admit decides on: the request itself, or, for
// forward auth, the original request an ingress asks about.
type target struct {
	method string
	// host is the request's host name (route.HostName), which the rules
	// decide on with the path.
	host string
	// url's path is what the rules see; its path and query are where the
	// login page returns to.
	url *url.URL
	// redirect tells whether the request, unauthenticated, is sent to the
	// login page (a browser's) instead of answered 401; nil: never. It is
	// asked only then: most requests carry a session.
	redirect func(*http.Request) bool
}

// admit decides whether t may pass: on a public path anonymously, else if
// the caller is authenticated and the rules allow it. It returns the
// outcome and, once the caller is known, leaves the session in *sess (also
// when refused, for the log; else *sess is zero). Unless the outcome is
// OutcomePublic or OutcomeProxied, it has written the refusal.
//
// The session is filled in place, in the request's state, all the way
// down: a Session is about 200 bytes, and one taken by address for
// Store.Touch (an interface call) would be moved to the heap on every
// request.
func (p *handler) admit(w http.ResponseWriter, r *http.Request, t target, sess *session.Session) string {
	var path string
	var buf [4]string // on the stack: no allocation unless a request names more methods
	var methods []string
	if p.cfg.Rules != nil { // without rules, neither matters
		path = ruleTarget(t.url)
		methods = methodsOf(buf[:0], t.method, r.Header, t.url.RawQuery)
		if allPublic(p.cfg.Rules, methods, t.host, path) {
			*sess = session.Session{}
			return OutcomePublic
		}
	}
	if refused := p.authenticate(w, r, t, sess); refused != "" {
		return refused
	}
	if refused := p.authorize(w, r, sess, methods, t.host, path); refused != "" {
		return refused
	}
	return OutcomeProxied
}

// authenticate finds the caller: a bearer token when bearer tokens are on
// and the request carries one, else the session cookie. On failure it has
// written the answer (redirect, 401 or 503), zeroed *sess and returns its
// outcome as refused; on success it has set *sess and refused is empty.
func (p *handler) authenticate(w http.ResponseWriter, r *http.Request, t target, sess *session.Session) (refused string) {
	if p.cfg.Bearer != nil {
		if token, ok := bearerToken(r); ok {
			*sess, refused = p.authenticateBearer(w, r, t, token)
			return refused
		}
	}
	var err error
	if *sess, err = p.cfg.Sessions.Load(r); err != nil {
		*sess = session.Session{}
		return p.noSession(w, r, t, err)
	}
	return p.renew(w, r, sess, t)
}

// authenticateBearer is authenticate for a request with a bearer token.
func (p *handler) authenticateBearer(w http.ResponseWriter, r *http.Request, t target, token string) (_ session.Session, refused string) {
	sess, err := p.cfg.Bearer(r, token)
	if err == nil {
		infoOf(r).bearer = true // watch leaves revalidation to the token's expiry
		return sess, ""
	}
	p.cfg.Logger.Info("bearer token refused", "path", t.url.Path, "err", err)
	if errors.Is(err, session.ErrUnavailable) {
		page.WriteJSON(w, page.Page{Status: http.StatusServiceUnavailable, Code: "provider_unavailable",
			Detail: "Tokens cannot be checked until the identity provider has been reached."})
		return session.Session{}, OutcomeError
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="authproxy", error="invalid_token"`)
	page.WriteJSON(w, page.Page{Status: http.StatusUnauthorized, Code: "invalid_token",
		Detail: "The bearer token is invalid or expired."})
	return session.Session{}, OutcomeUnauth
}

// noSession answers a request whose session the store did not load (err)
// and returns the outcome. (Functions of their own, the failures keep
// authenticate's stack frame small: see handler.finish.)
func (p *handler) noSession(w http.ResponseWriter, r *http.Request, t target, err error) (refused string) {
	if !errors.Is(err, session.ErrNoSession) {
		p.cfg.Logger.Error("load session", "err", err)
		if errors.Is(err, session.ErrUnavailable) { // the session store is down: the session may well be fine
			page.Write(w, r, page.Page{Status: http.StatusServiceUnavailable, Code: "session_store_unavailable",
				Title: "Temporarily unavailable", Detail: "authproxy cannot reach its session store. Please try again in a moment.",
				Links: []page.Link{{Href: t.url.RequestURI(), Text: "Try again"}}})
			return OutcomeError
		}
		page.Write(w, r, page.Page{Status: http.StatusInternalServerError, Code: "internal_error",
			Title: "Something went wrong", Detail: "authproxy could not read the session."})
		return OutcomeError
	}
	return p.unauthenticated(w, r, t)
}

// renew refreshes the session's tokens when they are about to expire and
// records its use for the idle timeout, saving the session when either
// changed it. A provider that refuses the refresh token has ended the
// session; one that cannot be reached leaves it as it is, so logged-in users
// keep working through a provider outage.
func (p *handler) renew(w http.ResponseWriter, r *http.Request, sess *session.Session, t target) (refused string) {
	if p.cfg.Refresher != nil && p.cfg.Refresher.NeedsRefresh(*sess) {
		if refused := p.renewTokens(w, r, sess, t); refused != "" {
			return refused
		}
	}
	if p.cfg.Sessions.Touch(sess) {
		if err := p.cfg.Sessions.Save(w, r, *sess); errors.Is(err, session.ErrNoSession) {
			// Revoked (logout, admin, back-channel) since it was loaded.
			return p.ended(w, r, sess, t)
		} else if err != nil {
			p.cfg.Logger.Error("save session", "err", err)
		}
	}
	return ""
}

// renewTokens is renew's refresh of the tokens: it updates *sess, or ends
// the session and returns the outcome. (Apart, to keep the common path's
// stack frame small: see handler.finish.)
func (p *handler) renewTokens(w http.ResponseWriter, r *http.Request, sess *session.Session, t target) (refused string) {
	next, err := p.refresh(w, r, *sess)
	switch {
	case err == nil:
		*sess = next
	case errors.Is(err, errRevokedWhileRenewing):
		p.cfg.Logger.Info("session ended while it was being renewed", "user", sess.User)
		return p.ended(w, r, sess, t)
	case errors.Is(err, session.ErrUnavailable):
		p.cfg.Logger.Warn("token refresh postponed: provider unreachable", "user", sess.User, "err", err)
	default:
		p.cfg.Logger.Info("session ended: the provider refused its refresh token", "user", sess.User, "err", err)
		return p.ended(w, r, sess, t)
	}
	return ""
}

// ended clears the cookie of a session that ended while it was renewed,
// zeroes *sess and answers as for a request without a session.
func (p *handler) ended(w http.ResponseWriter, r *http.Request, sess *session.Session, t target) (refused string) {
	*sess = session.Session{}
	p.cfg.Sessions.Clear(w, r)
	return p.unauthenticated(w, r, t)
}

// errRevokedWhileRenewing: the session was revoked (logout, admin,
// back-channel) while the provider renewed its tokens, which belong to an
// ended session now.
var errRevokedWhileRenewing = fmt.Errorf("%w: revoked while its tokens were renewed", session.ErrNoSession)

// refresh renews sess and saves the renewal. With a Locker and a
// server-side session it does both under the cross-replica lock, so that
// the next replica to take the lock reads the renewed session (saving after
// the unlock would let it send the rotated-away refresh token again): once
// the lock is taken, the session is read again, and if another replica has
// renewed it meanwhile, that renewal is used.
func (p *handler) refresh(w http.ResponseWriter, r *http.Request, sess session.Session) (session.Session, error) {
	if p.cfg.Locker != nil && sess.ID != "" {
		unlock, err := p.cfg.Locker.LockRefresh(r.Context(), sess)
		if err != nil {
			return sess, err
		}
		defer unlock()
		// Renewed by another replica (or request) while we waited: use that.
		again, err := p.cfg.Sessions.Load(r)
		if err == nil && (again.RefreshToken != sess.RefreshToken || again.TokenExpiry.After(sess.TokenExpiry)) {
			return again, nil
		}
	}
	next, err := p.cfg.Refresher.Refresh(r.Context(), sess)
	if err != nil {
		return sess, err
	}
	if next.TokenExpiry == sess.TokenExpiry && next.RefreshToken == sess.RefreshToken {
		return next, nil // nothing renewed, nothing to save
	}
	if err := p.cfg.Sessions.Save(w, r, next); errors.Is(err, session.ErrNoSession) {
		return session.Session{}, errRevokedWhileRenewing
	} else if err != nil {
		p.cfg.Logger.Error("save session", "err", err)
	}
	return next, nil
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}

// authorize applies the rules to sess, the authenticated user. On refusal
// it has written a 403 that says who the user is and offers logout, never a
// redirect (which would loop), and returns OutcomeForbidden; else "".
func (p *handler) authorize(w http.ResponseWriter, r *http.Request, sess *session.Session, methods []string, host, escapedPath string) (refused string) {
	if p.cfg.Rules == nil {
		return ""
	}
	ok, reason, method := true, "", ""
	claims := claimsOf(sess)
	for _, method = range methods {
		if ok, reason = p.cfg.Rules.Allowed(method, host, escapedPath, claims); !ok {
			break
		}
	}
	if ok {
		return ""
	}
	p.cfg.Logger.Info("access denied", "user", sess.User, "method", method, "host", host, "path", pathOnly(escapedPath), "rule", reason)
	who := sess.User
	if sess.Email != "" {
		who = sess.Email
	}
	w.Header().Set("Cache-Control", "no-store")
	page.Write(w, r, page.Page{Status: http.StatusForbidden, Code: "forbidden", Title: "Access denied",
		Detail: fmt.Sprintf("You are signed in as %s, who may not open this page.", who),
		Links:  []page.Link{{Href: "/auth/logout", Text: "Sign out"}, {Href: "/", Text: "Home"}},
		Extra:  map[string]string{"user": sess.User}})
	return OutcomeForbidden
}

// claimsOf is what rules see: the kept claims, with the session's email.
func claimsOf(sess *session.Session) map[string]any {
	if sess.Email == "" || sess.Claims["email"] != nil {
		return sess.Claims
	}
	c := make(map[string]any, len(sess.Claims)+1)
	for k, v := range sess.Claims {
		c[k] = v
	}
	c["email"] = sess.Email
	return c
}

func pathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

// setIdentity writes the identity headers for the request's user into h.
// Anonymous requests (public paths) get none; the caller has stripped any
// the client sent.
func (p *handler) setIdentity(h http.Header, info *reqInfo) {
	sess := &info.sess
	if sess.User == "" {
		return
	}
	info.userValue[0] = sess.User
	h[p.cfg.UserHeader] = info.userValue[:]
	hs := p.cfg.Headers
	// oidc kept email (when verified) and name only if they passed
	// claim.Check; checked again here for sessions saved before it did,
	// where they are sent.
	email := ""
	if (hs.Email != "" || p.cfg.Assertion != nil) && claim.CheckString(sess.Email) == nil {
		email = sess.Email
	}
	if hs.Email != "" && email != "" {
		h.Set(hs.Email, email)
	}
	if hs.Name != "" && claim.CheckString(sess.Name) == nil {
		h.Set(hs.Name, sess.Name)
	}
	if hs.Groups != "" {
		if g := groups(sess.Claims[hs.GroupsClaim]); g != "" {
			h.Set(hs.Groups, g)
		}
	}
	if hs.AccessToken != "" && sess.AccessToken != "" {
		h.Set(hs.AccessToken, sess.AccessToken)
	}
	if p.cfg.Assertion != nil {
		// The assertion depends only on who the user is, so all sessions of
		// a user share one cached token: no SessionID.
		if a, err := p.cfg.Assertion.Assertion(assertion.Identity{Subject: sess.User, Email: email}); err == nil {
			h[AssertionHeader] = []string{a}
		} else {
			p.cfg.Logger.Error("sign identity assertion", "err", err)
		}
	}
}

// groups renders a groups claim as a comma-separated list; a name holding
// a comma is dropped too, since it could forge list entries.
func groups(v any) string {
	list := groupList(v)
	kept := list[:0]
	for _, g := range list {
		if !strings.Contains(g, ",") {
			kept = append(kept, g)
		}
	}
	return strings.Join(kept, ",")
}

// groupList reads a groups claim (a list or a string). Names that break
// claim.Check (white space at either end, control characters, line breaks,
// over-long) are dropped, never trimmed: they could read as another group.
func groupList(v any) []string {
	var list []string
	switch v := v.(type) {
	case string:
		list = []string{v}
	case []any:
		for _, g := range v {
			if s, ok := g.(string); ok {
				list = append(list, s)
			}
		}
	case []string:
		list = v
	}
	var kept []string
	for _, g := range list {
		if claim.CheckString(g) == nil {
			kept = append(kept, g)
		}
	}
	return kept
}

// methodsOf appends to dst method and every method an upstream may run in its
// place: the values of the headers in which frameworks let a POST name
// the method they run (Express method-override, ASP.NET Core, Rack,
// Symfony, Google APIs), in any spelling, and of the query's _method
// (Symfony, Laravel; & or ; separated), upper-cased as frameworks do. The
// rules must let each of them pass. (A _method in a form body, which Rack,
// Spring and Laravel also read, is not seen here.)
func methodsOf(dst []string, method string, h http.Header, rawQuery string) []string {
	methods := append(dst, method)
	add := func(v string) {
		for _, m := range strings.Split(v, ",") {
			if m = strings.ToUpper(strings.TrimSpace(m)); m != "" && !slices.Contains(methods, m) {
				methods = append(methods, m)
			}
		}
	}
	for name, vs := range h {
		for _, o := range [...]string{"x-http-method-override", "x-http-method", "x-method-override"} {
			if sameHeader(name, o) {
				for _, v := range vs {
					add(v)
				}
			}
		}
	}
	for rawQuery != "" {
		var pair string
		if i := strings.IndexAny(rawQuery, "&;"); i >= 0 {
			pair, rawQuery = rawQuery[:i], rawQuery[i+1:]
		} else {
			pair, rawQuery = rawQuery, ""
		}
		k, v, _ := strings.Cut(pair, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if !strings.EqualFold(strings.TrimSpace(k), "_method") {
			continue
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		add(v)
	}
	return methods
}

// allPublic reports whether path on host is public for every one of
// methods.
func allPublic(rs Rules, methods []string, host, path string) bool {
	for _, m := range methods {
		if !rs.Public(m, host, path) {
			return false
		}
	}
	return true
}
