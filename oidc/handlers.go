package oidc

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/claim"
	"github.com/authproxy/authproxy/page"
	"github.com/authproxy/authproxy/session"
)

// Login starts the authorization-code flow: a fresh state, nonce and PKCE
// verifier go into a login cookie of their own, the browser to the provider.
// The proxy routes GET and HEAD here.
func (h *Handler) Login(w http.ResponseWriter, r *http.Request) {
	p := h.provider.Load()
	if p == nil {
		h.providerDown(w, r)
		return
	}
	// 128 random bits each: unguessable, and every byte saved counts, since
	// the login cookie rides along on every request for ten minutes.
	l := cookie.Login{
		State:       randomString(16),
		Nonce:       randomString(16),
		Verifier:    oauth2.GenerateVerifier(),
		ReturnTo:    h.returnTo(r),
		RedirectURL: h.redirectURL(r),
	}
	if h.cfg.RedirectURL != "" {
		l.RedirectURL = "" // the callback knows it too; the cookie is smaller without it
	}
	err := h.logins.SaveLogin(w, r, l)
	if errors.Is(err, cookie.ErrTooLarge) {
		// A return path too long for the login cookie: land on / after the
		// login rather than not log in at all.
		l.ReturnTo = "/"
		err = h.logins.SaveLogin(w, r, l)
	}
	if err != nil {
		h.log.Error("save login cookie", "err", err)
		h.internalError(w, r)
		return
	}
	conf := p.oauth2
	conf.RedirectURL = h.redirectURL(r)
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", l.Nonce), oauth2.S256ChallengeOption(l.Verifier)}
	if h.cfg.Audience != "" && h.cfg.Auth0Domain != "" {
		// Auth0 issues a JWT access token for the API only when asked.
		opts = append(opts, oauth2.SetAuthURLParam("audience", h.cfg.Audience))
	}
	if slices.Contains(h.cfg.Scopes, "offline_access") && h.cfg.Auth0Domain == "" {
		// OpenID Connect Core 11: offline_access is ignored unless the user
		// is asked to consent. Auth0 issues the refresh token without it.
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	target := conf.AuthCodeURL(l.State, opts...)
	h.cfg.Observer.LoginStarted()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// returnTo is where the login started on r returns to: the checked
// returnTarget. A path is made absolute on the request's own host when the
// login started on a routed host other than the callback's (the browser
// must come back to the host it left, not land on the callback host).
func (h *Handler) returnTo(r *http.Request) string {
	returns := h.returns.Load()
	t := returns.Target(returnTarget(r))
	if t == "" || t[0] != '/' || h.cfg.Origin.Fixed == nil || returns.Scheme == "" {
		return t
	}
	host := h.cfg.Origin.requestHost(r)
	if strings.EqualFold(host, h.cfg.Origin.Fixed.Host) {
		return t
	}
	if abs := returns.Scheme + "://" + host + t; returns.Target(abs) == abs {
		return abs
	}
	return t
}

// returnTarget is where to land after the login: the rd parameter, or, for
// an ingress that sends the browser here with the original URL in a header
// (nginx auth_request, oauth2-proxy's convention), X-Auth-Request-Redirect.
// Either is user input and goes through ReturnPath.
func returnTarget(r *http.Request) string {
	if rd := r.URL.Query().Get("rd"); rd != "" {
		return rd
	}
	return r.Header.Get("X-Auth-Request-Redirect")
}

// callbackError is a login that cannot be completed, with what to tell the
// user and why, for the log.
type callbackError struct {
	status int
	code   string
	detail string
	err    error
}

func (e *callbackError) Error() string { return e.code + ": " + e.err.Error() }

// Callback completes the flow: state, code exchange with the PKCE verifier,
// ID-token verification, nonce, then the session cookie.
func (h *Handler) Callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	l, loginErr := h.logins.LoadLogin(r, state)
	// Every outcome consumes the login, a failure too (whatever its cookie
	// held): a state is good for one try, and a dead login cookie must not
	// ride along on every request until it expires.
	h.logins.ClearLogin(w, r, state)
	sess, err := h.complete(r, l, loginErr)
	if err != nil {
		var ce *callbackError
		if !errors.As(err, &ce) {
			ce = &callbackError{status: http.StatusInternalServerError, code: "internal_error",
				detail: "The login could not be completed.", err: err}
		}
		attrs := []any{"reason", ce.code, "err", ce.err}
		if e := q.Get("error"); e != "" {
			// The provider's words are anyone's words (a callback URL is
			// easy to forge): the log gets them bounded (slog escapes
			// them), the page never.
			attrs = append(attrs, "provider_error", logText(redact(e), 64), "provider_error_description",
				logText(redact(q.Get("error_description")), 256))
		}
		h.log.Warn("login failed", attrs...)
		h.cfg.Observer.LoginFailed(ce.code)
		if errors.Is(ce.err, errProviderDown) {
			h.cfg.Observer.ProviderError("token")
		}
		page.Write(w, r, page.Page{Status: ce.status, Code: ce.code, Title: "Sign-in failed", Detail: ce.detail,
			Links: []page.Link{{Href: "/auth/login?rd=" + url.QueryEscape(l.ReturnTo), Text: "Try again"}}})
		return
	}
	err = h.store.Save(w, r, sess)
	if errors.Is(err, cookie.ErrTooLarge) && sess.IDToken != "" {
		// The raw ID token is kept only as a logout hint; without it the
		// provider may ask the user to confirm the logout.
		h.log.Warn("session too large for cookies: dropping the ID token kept for logout; "+
			"consider AUTHPROXY_SESSION_STORE=redis", "user", sess.User)
		sess.IDToken = ""
		err = h.store.Save(w, r, sess)
	}
	if errors.Is(err, cookie.ErrTooLarge) {
		h.log.Error("session too large for cookies even without the ID token: use AUTHPROXY_SESSION_STORE=redis, "+
			"or keep fewer claims (access rules, AUTHPROXY_GROUPS_HEADER)", "user", sess.User, "err", err)
		h.cfg.Observer.LoginFailed("session_too_large")
		page.Write(w, r, page.Page{Status: http.StatusInternalServerError, Code: "session_too_large", Title: "Sign-in failed",
			Detail: "Your account carries more information (groups, roles) than fits in browser cookies. The administrator needs to switch authproxy to its Redis session store."})
		return
	}
	if err != nil {
		h.log.Error("save session", "err", err)
		if errors.Is(err, session.ErrUnavailable) { // the session store is down; the login itself was fine
			h.cfg.Observer.LoginFailed("session_store_unavailable")
			page.Write(w, r, page.Page{Status: http.StatusServiceUnavailable, Code: "session_store_unavailable",
				Title: "Sign-in is temporarily unavailable", Detail: "authproxy cannot reach its session store. Please sign in again in a moment.",
				Links: []page.Link{{Href: "/auth/login?rd=" + url.QueryEscape(l.ReturnTo), Text: "Sign in again"}}})
			return
		}
		h.internalError(w, r)
		return
	}
	h.log.Info("login", "user", sess.User)
	h.cfg.Observer.LoginCompleted()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, h.returns.Load().Target(l.ReturnTo), http.StatusFound)
}

func (h *Handler) complete(r *http.Request, l cookie.Login, loginErr error) (session.Session, error) {
	q := r.URL.Query()
	fail := func(status int, code, detail string, err error) (session.Session, error) {
		return session.Session{}, &callbackError{status, code, detail, err}
	}
	// RFC 9207: a provider that names itself in its authorization responses
	// must have named itself in this one, or the response may come from
	// another provider (a mix-up attack). Checked first: it covers error
	// responses too.
	if p := h.provider.Load(); p != nil && (p.issParam || q.Has("iss")) {
		if iss := q["iss"]; len(iss) != 1 || iss[0] != h.cfg.Issuer {
			return fail(http.StatusBadRequest, "issuer_mismatch",
				"The answer to this sign-in does not come from the expected identity provider. Please start again.",
				fmt.Errorf("callback iss %q, want the issuer (advertised: %t)", logText(strings.Join(iss, ","), 128), p.issParam))
		}
	}
	if e := q.Get("error"); e != "" {
		status := http.StatusBadRequest
		if e == "access_denied" {
			status = http.StatusForbidden
		}
		return fail(status, "provider_error", providerErrorText(e), errors.New("the provider returned an error"))
	}
	if loginErr != nil {
		return fail(http.StatusBadRequest, "invalid_state",
			"This sign-in link is not valid in this browser, or it has expired. Please start again.", loginErr)
	}
	if now := h.cfg.Now(); !h.used.Add(l.State, struct{}{}, now.Add(cookie.DefaultLoginTTL), now) {
		return fail(http.StatusBadRequest, "state_reused", "This sign-in was already completed. Please start again.",
			errors.New("state used twice"))
	}
	code := q.Get("code")
	if code == "" {
		return fail(http.StatusBadRequest, "missing_code", "The identity provider sent no authorization code.",
			errors.New("no code in callback"))
	}
	p := h.provider.Load()
	if p == nil {
		return fail(http.StatusServiceUnavailable, "provider_unavailable",
			"The identity provider cannot be reached right now. Please try again in a moment.", errProviderDown)
	}
	ctx := gooidc.ClientContext(withCall(r.Context(), CallToken), h.cfg.HTTPClient)
	conf := p.oauth2
	conf.RedirectURL = l.RedirectURL
	if conf.RedirectURL == "" {
		conf.RedirectURL = h.cfg.RedirectURL
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(l.Verifier))
	err = h.fromProvider(err, code, l.Verifier)
	if err != nil {
		if err := classify(err); errors.Is(err, errProviderDown) {
			return fail(http.StatusServiceUnavailable, "provider_unavailable",
				"The identity provider cannot be reached right now. Please try again in a moment.", err)
		}
		return fail(http.StatusBadRequest, "exchange_failed",
			"The identity provider did not accept the sign-in. Please start again.", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return fail(http.StatusBadGateway, "no_id_token", "The identity provider returned no ID token.",
			errors.New("token response without id_token"))
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err = h.fromProvider(err, code, l.Verifier); err != nil {
		return fail(http.StatusBadRequest, "invalid_id_token", "The identity provider's answer could not be verified.", err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return fail(http.StatusBadRequest, "invalid_id_token", "The identity provider's answer could not be read.", err)
	}
	// go-oidc leaves azp to the caller: with several audiences, the token
	// must name us as the party it was issued to.
	azp, _ := claims["azp"].(string)
	if (len(idt.Audience) > 1 || azp != "") && azp != h.cfg.ClientID {
		return fail(http.StatusBadRequest, "invalid_id_token", "The identity provider's answer was issued to another application.",
			fmt.Errorf("azp %q is not our client id (aud %v)", azp, idt.Audience))
	}
	if idt.Nonce == "" || idt.Nonce != l.Nonce {
		return fail(http.StatusBadRequest, "invalid_nonce", "The identity provider's answer does not belong to this sign-in.",
			errors.New("nonce mismatch"))
	}
	sess, err := h.identify(claims)
	if err != nil {
		code := "invalid_claim"
		if errors.Is(err, claim.ErrMissing) {
			code = "missing_claim"
		}
		return fail(http.StatusBadRequest, code,
			fmt.Sprintf("The identity provider did not say who you are in a form authproxy can use (the %q claim).", h.cfg.UserClaim),
			fmt.Errorf("ID token: %w; set AUTHPROXY_USER_CLAIM or fix the claim at the provider", err))
	}
	sess.IDToken = raw
	sess.Expiry = h.cfg.Now().Add(h.cfg.SessionLifetime)
	sess.SID = claimString(claims["sid"])
	sess.Seen = h.cfg.Now()
	if h.cfg.KeepAccessToken {
		sess.AccessToken = tok.AccessToken
	}
	if tok.RefreshToken != "" {
		sess.RefreshToken, sess.TokenExpiry = tok.RefreshToken, idt.Expiry
		if !tok.Expiry.IsZero() && tok.Expiry.Before(idt.Expiry) {
			sess.TokenExpiry = tok.Expiry
		}
	}
	return sess, nil
}

// Logout ends the session here, then at the provider. Only a request from
// the proxy's own pages (or typed by the user) signs out at once; one that
// another site made (a link, an image, a form) gets a page with a sign-out
// button instead, so no site can end a session behind the user's back.
// (The route table admits GET and POST; the button POSTs.)
func (h *Handler) Logout(w http.ResponseWriter, r *http.Request) {
	if !h.fromOwnOrigin(r) {
		page.Write(w, r, page.Page{Status: http.StatusOK, Code: "confirm_logout", Title: "Sign out?",
			Detail:      "Another site sent you here to sign out. Sign out only if you meant to.",
			Form:        &page.Form{Action: "/auth/logout", Button: "Sign out"},
			FormTargets: h.logoutOrigins(r),
			Links:       []page.Link{{Href: "/", Text: "Cancel"}}})
		return
	}
	sess, _ := h.store.Load(r) // an unreadable session still gets cleared
	h.store.Clear(w, r)
	if sess.User != "" {
		h.log.Info("logout", "user", sess.User)
	}
	h.cfg.Observer.Logout()
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	// Not http.Redirect: for a GET it writes an HTML body repeating the URL,
	// and with it the ID token of id_token_hint. No Referer either.
	hdr := w.Header()
	hdr.Set("Location", h.logoutURL(r, sess))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
}

// fromOwnOrigin reports whether r came from a page of the proxy's own
// origin, or from the user (typed, bookmarked), rather than from another
// site. Fetch Metadata (Sec-Fetch-Site) says so in every current browser;
// without it, a POST needs our Origin, and a GET is refused only when its
// Origin or Referer names another origin (old browsers, curl).
func (h *Handler) fromOwnOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default: // cross-site, same-site (a sibling subdomain may be anyone's)
		return false
	}
	own := h.cfg.Origin.Of(r).String()
	// A page of a routed host sharing the login is one of ours too.
	isOwn := func(o string) bool { return strings.EqualFold(o, own) || h.returns.Load().IsOrigin(o) }
	origin := r.Header.Get("Origin")
	if r.Method == http.MethodPost {
		return origin != "" && isOwn(origin)
	}
	if origin != "" {
		return isOwn(origin)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && isOwn(u.Scheme+"://"+u.Host)
	}
	return true
}

// logoutOrigins are the origins a sign-out may pass through after its POST
// (the provider's logout endpoint, the post-logout page): browsers check
// the redirects that follow a form submission against form-action.
func (h *Handler) logoutOrigins(r *http.Request) []string {
	var out []string
	for _, raw := range []string{h.logoutURL(r, session.Session{}), h.postLogoutURL(r)} {
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			if o := u.Scheme + "://" + u.Host; !slices.Contains(out, o) {
				out = append(out, o)
			}
		}
	}
	return out
}

// logoutURL picks the provider's end-session endpoint, else Auth0's
// /v2/logout, else the post-logout URL itself.
func (h *Handler) logoutURL(r *http.Request, sess session.Session) string {
	after := h.postLogoutURL(r)
	if p := h.provider.Load(); p != nil && p.endSession != "" {
		u, err := url.Parse(p.endSession)
		if err == nil {
			q := u.Query()
			if sess.IDToken != "" {
				q.Set("id_token_hint", sess.IDToken)
			}
			q.Set("post_logout_redirect_uri", after)
			q.Set("client_id", h.cfg.ClientID)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	if h.cfg.Auth0Domain != "" {
		q := url.Values{"returnTo": {after}, "client_id": {h.cfg.ClientID}}
		return (&url.URL{Scheme: "https", Host: h.cfg.Auth0Domain, Path: "/v2/logout", RawQuery: q.Encode()}).String()
	}
	return after
}

// postLogoutURL is the configured post-logout URL, made absolute: a path
// (query included) is resolved against the proxy's origin.
func (h *Handler) postLogoutURL(r *http.Request) string {
	if u, err := url.Parse(h.cfg.PostLogoutURL); err == nil && u.IsAbs() {
		return u.String()
	}
	ref, err := url.Parse(ReturnPath(h.cfg.PostLogoutURL))
	if err != nil { // ReturnPath only returns what url.Parse accepts
		ref = &url.URL{Path: "/"}
	}
	return h.cfg.Origin.Of(r).ResolveReference(ref).String()
}

func (h *Handler) redirectURL(r *http.Request) string {
	if h.cfg.RedirectURL != "" {
		return h.cfg.RedirectURL
	}
	u := h.cfg.Origin.Of(r)
	u.Path = "/auth/callback"
	return u.String()
}

func (h *Handler) providerDown(w http.ResponseWriter, r *http.Request) {
	page.Write(w, r, page.Page{Status: http.StatusServiceUnavailable, Code: "provider_unavailable",
		Title:  "Sign-in is unavailable",
		Detail: "The identity provider cannot be reached right now. Please try again in a moment.",
		Links:  []page.Link{{Href: r.URL.RequestURI(), Text: "Try again"}}})
}

func (h *Handler) internalError(w http.ResponseWriter, r *http.Request) {
	page.Write(w, r, page.Page{Status: http.StatusInternalServerError, Code: "internal_error",
		Title: "Something went wrong", Detail: "authproxy could not complete the request."})
}

// claimString renders a claim that identifies someone: strings as they are,
// numbers (some providers use numeric ids) in plain decimal.
func claimString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
	}
	return ""
}

// logText bounds text from a request for the log: at most n bytes, valid
// UTF-8. (The handlers quote and escape it.)
func logText(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "\ufffd")
}

// providerErrorText is what the error page says for an error code of an
// authorization response (RFC 6749 4.1.2.1, OpenID Connect Core 3.1.2.6):
// fixed text per code, never the code or the provider's description, which
// whoever crafted the callback URL chose.
func providerErrorText(code string) string {
	switch code {
	case "access_denied":
		return "The identity provider did not allow this sign-in, or it was cancelled."
	case "login_required", "interaction_required", "consent_required", "account_selection_required":
		return "The identity provider needs you to sign in again. Please start again."
	case "temporarily_unavailable", "server_error":
		return "The identity provider could not complete the sign-in right now. Please try again in a moment."
	default:
		return "The identity provider refused the sign-in request. If this keeps happening, tell the administrator."
	}
}
