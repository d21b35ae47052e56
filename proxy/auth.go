package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/claim"
	"github.com/authproxy/authproxy/proxy/assertion"
	"github.com/authproxy/authproxy/proxy/page"
)

// Rules decides who may pass. Paths are the request's escaped path; the
// query is never consulted.
type Rules interface {
	// Public reports whether the path needs no login.
	Public(method, escapedPath string) bool
	// Allowed reports whether a logged-in user with these claims may pass,
	// and which rule decided (for the log and the 403 page).
	Allowed(method, escapedPath string, claims map[string]any) (ok bool, reason string)
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
	for _, h := range []string{c.Headers.Email, c.Headers.Name, c.Headers.Groups, c.Headers.AccessToken} {
		if h != "" {
			hs = append(hs, h)
		}
	}
	return hs
}

// authenticate finds the caller: a bearer token when bearer tokens are on
// and the request carries one, else the session cookie. On failure it has
// written the answer (redirect, 401 or 503) and returns false.
func (p *handler) authenticate(w http.ResponseWriter, r *http.Request, redirect bool) (cookie.Session, bool) {
	info := infoOf(r)
	if p.cfg.Bearer != nil {
		if token, ok := bearerToken(r); ok {
			sess, err := p.cfg.Bearer(r, token)
			if err == nil {
				return sess, true
			}
			p.cfg.Logger.Info("bearer token refused", "path", r.URL.Path, "err", err)
			if isTemporary(err) {
				info.outcome = OutcomeError
				page.WriteJSON(w, page.Page{Status: http.StatusServiceUnavailable, Code: "provider_unavailable",
					Detail: "Tokens cannot be checked until the identity provider has been reached."})
				return cookie.Session{}, false
			}
			info.outcome = OutcomeUnauth
			w.Header().Set("WWW-Authenticate", `Bearer realm="authproxy", error="invalid_token"`)
			page.WriteJSON(w, page.Page{Status: http.StatusUnauthorized, Code: "invalid_token",
				Detail: "The bearer token is invalid or expired."})
			return cookie.Session{}, false
		}
	}
	sess, err := p.cfg.Sessions.Load(r)
	if err == nil {
		return p.renew(w, r, sess, redirect)
	}
	if !errors.Is(err, cookie.ErrNoSession) {
		info.outcome = OutcomeError
		p.cfg.Logger.Error("load session", "err", err)
		if isTemporary(err) { // the session store is down: the session may well be fine
			page.Write(w, r, page.Page{Status: http.StatusServiceUnavailable, Code: "session_store_unavailable",
				Title: "Temporarily unavailable", Detail: "authproxy cannot reach its session store. Please try again in a moment.",
				Links: []page.Link{{Href: r.URL.RequestURI(), Text: "Try again"}}})
			return cookie.Session{}, false
		}
		page.Write(w, r, page.Page{Status: http.StatusInternalServerError, Code: "internal_error",
			Title: "Something went wrong", Detail: "authproxy could not read the session."})
		return cookie.Session{}, false
	}
	p.unauthenticated(w, r, returnTo(r), redirect)
	return cookie.Session{}, false
}

func returnTo(r *http.Request) string { return r.URL.RequestURI() }

// renew refreshes the session's tokens when they are about to expire and
// records its use for the idle timeout, saving the session when either
// changed it. A provider that refuses the refresh token has ended the
// session; one that cannot be reached leaves it as it is, so logged-in users
// keep working through a provider outage.
func (p *handler) renew(w http.ResponseWriter, r *http.Request, sess cookie.Session, redirect bool) (cookie.Session, bool) {
	save := false
	if p.cfg.Refresher != nil && p.cfg.Refresher.NeedsRefresh(sess) {
		next, err := p.refresh(r, sess)
		switch {
		case err == nil:
			sess, save = next, next.TokenExpiry != sess.TokenExpiry || next.RefreshToken != sess.RefreshToken
		case isTemporary(err):
			p.cfg.Logger.Warn("token refresh postponed: provider unreachable", "user", sess.User, "err", err)
		default:
			p.cfg.Logger.Info("session ended: the provider refused its refresh token", "user", sess.User, "err", err)
			p.cfg.Sessions.Clear(w, r)
			p.unauthenticated(w, r, returnTo(r), redirect)
			return cookie.Session{}, false
		}
	}
	if p.cfg.Sessions.Touch(&sess) {
		save = true
	}
	if save {
		err := p.cfg.Sessions.Save(w, r, sess)
		if errors.Is(err, cookie.ErrNoSession) {
			// Revoked (logout, admin, back-channel) while the provider
			// answered: the new tokens belong to an ended session.
			p.cfg.Logger.Info("session ended while it was being renewed", "user", sess.User)
			p.cfg.Sessions.Clear(w, r)
			p.unauthenticated(w, r, returnTo(r), redirect)
			return cookie.Session{}, false
		}
		if err != nil {
			p.cfg.Logger.Error("save session", "err", err)
		}
	}
	return sess, true
}

// refreshLocker is a session store shared by replicas, which takes turns
// refreshing a session so that the provider sees one refresh, not one per
// replica.
type refreshLocker interface {
	LockRefresh(context.Context, cookie.Session) (unlock func(), err error)
}

// refresh renews sess, under the store's cross-replica lock when it has one:
// once the lock is taken, the session is read again, and if another replica
// has renewed it meanwhile, that renewal is used.
func (p *handler) refresh(r *http.Request, sess cookie.Session) (cookie.Session, error) {
	if l, ok := p.cfg.Sessions.(refreshLocker); ok && sess.Ticket != "" {
		unlock, err := l.LockRefresh(r.Context(), sess)
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
	return p.cfg.Refresher.Refresh(r.Context(), sess)
}

// isTemporary reports whether err says a dependency could not be reached,
// rather than that the request or session is bad.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}

// authorize applies the rules to the authenticated user of r. On refusal
// it has written a 403 that says who the user is and offers logout, never a
// redirect (which would loop).
func (p *handler) authorize(w http.ResponseWriter, r *http.Request, method, escapedPath string) bool {
	if p.cfg.Rules == nil {
		return true
	}
	info := infoOf(r)
	ok, reason := p.cfg.Rules.Allowed(method, escapedPath, claimsOf(info.sess))
	if ok {
		return true
	}
	info.outcome = OutcomeForbidden
	p.cfg.Logger.Info("access denied", "user", info.sess.User, "method", method, "path", pathOnly(escapedPath), "rule", reason)
	who := info.sess.User
	if info.sess.Email != "" {
		who = info.sess.Email
	}
	w.Header().Set("Cache-Control", "no-store")
	page.Write(w, r, page.Page{Status: http.StatusForbidden, Code: "forbidden", Title: "Access denied",
		Detail: fmt.Sprintf("You are signed in as %s, who may not open this page.", who),
		Links:  []page.Link{{Href: "/auth/logout", Text: "Sign out"}, {Href: "/", Text: "Home"}},
		Extra:  map[string]string{"user": info.sess.User}})
	return false
}

// claimsOf is what rules see: the kept claims, with the session's email.
func claimsOf(sess cookie.Session) map[string]any {
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
	sess := info.sess
	if sess.User == "" {
		return
	}
	info.userValue[0] = sess.User
	h[p.cfg.UserHeader] = info.userValue[:]
	hs := p.cfg.Headers
	// oidc kept email (when verified) and name only if they passed
	// claim.Check; checked again here for sessions saved before it did.
	email := sess.Email
	if claim.CheckString(email) != nil {
		email = ""
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

// groups renders a groups claim as a comma-separated list. Names that
// break claim.Check (white space at either end, control characters, line
// breaks, over-long) or hold a comma are dropped, never trimmed: they could
// forge list entries or read as another group.
func groups(v any) string {
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
	kept := list[:0:0]
	for _, g := range list {
		if claim.CheckString(g) == nil && !strings.Contains(g, ",") {
			kept = append(kept, g)
		}
	}
	return strings.Join(kept, ",")
}

// check answers an ingress's authorization sub-request (nginx auth_request,
// Traefik ForwardAuth, ingress-nginx auth-url). The original request is
// described by X-Forwarded-Uri/X-Original-URL and X-Forwarded-Method/
// X-Original-Method, which only this endpoint reads: its caller is the
// ingress. 2xx carries the identity headers in the response; 401 means no
// valid session (with ?redirect=1, browsers get the 302 to the login page
// instead, for ingresses that pass the auth response to the client); 403
// means logged in but not allowed.
func (p *handler) check(w http.ResponseWriter, r *http.Request) {
	info := infoOf(r)
	w.Header().Set("Cache-Control", "no-store")
	orig, method, err := originalRequest(r)
	if err != nil {
		// Fail closed: deciding on a guess could let the real request pass.
		info.outcome = OutcomeError
		p.cfg.Logger.Warn("forward-auth request refused", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "bad_forward_auth_request", Detail: err.Error()})
		return
	}
	if p.cfg.Rules != nil && p.cfg.Rules.Public(method, orig.EscapedPath()) {
		info.outcome = OutcomePublic
		w.WriteHeader(http.StatusOK)
		return
	}
	redirect := r.URL.Query().Get("redirect") == "1" && page.IsNavigation(r)
	// authenticate builds the login URL from the request; point it at the
	// original one.
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = orig.Path, orig.RawPath, orig.RawQuery
	sess, ok := p.authenticate(w, r2, redirect)
	if !ok {
		return
	}
	info.sess = sess
	if !p.authorize(w, r, method, orig.EscapedPath()) {
		return
	}
	info.outcome = OutcomeProxied
	p.setIdentity(w.Header(), info)
	w.WriteHeader(http.StatusOK)
}

// originalRequest is the request the ingress is asking about. Ingresses
// name it in different headers (Traefik X-Forwarded-Uri/-Method, nginx and
// ingress-nginx X-Original-URL/-Method), and some pass the client's own
// headers along, so a client could add the header its ingress does not set.
// Hence: every header present must agree, and a missing or unparsable URL
// is an error, never a default.
func originalRequest(r *http.Request) (*url.URL, string, error) {
	var orig *url.URL
	for _, h := range []string{"X-Forwarded-Uri", "X-Original-Url", "X-Original-Uri"} {
		vs := r.Header.Values(h)
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			return nil, "", fmt.Errorf("%s appears %d times", h, len(vs))
		}
		u, err := url.Parse(vs[0])
		if err != nil || (u.Path == "" && u.Opaque == "") || u.Opaque != "" || (u.Path != "" && u.Path[0] != '/') {
			return nil, "", fmt.Errorf("%s is not a URL or absolute path", h)
		}
		this := &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
		if orig != nil && orig.RequestURI() != this.RequestURI() {
			return nil, "", errors.New("the original-URL headers disagree")
		}
		orig = this
	}
	if orig == nil {
		return nil, "", errors.New("no X-Forwarded-Uri or X-Original-URL header: the ingress must say which request to check")
	}
	method := ""
	for _, h := range []string{"X-Forwarded-Method", "X-Original-Method"} {
		for _, v := range r.Header.Values(h) {
			if method != "" && v != method {
				return nil, "", errors.New("the original-method headers disagree")
			}
			method = v
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	return orig, method, nil
}
