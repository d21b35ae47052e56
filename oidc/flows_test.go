package oidc

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/oidc/oidctest"
	"github.com/authproxy/authproxy/session"
)

// send makes one request from browser b with extra headers and returns
// the response, its body read.
func (b *browser) send(h *Handler, method, target string, hdr map[string]string) (*http.Response, string) {
	resp := b.request(h, method, target, hdr)
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// login signs alice in and returns her browser.
func (f *fixture) login(t *testing.T) *browser {
	t.Helper()
	b := &browser{}
	if resp := b.do(f.h, callbackPath(f.authorize(t, f.startLogin(t, b, "/"), "alice"))); resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	return b
}

func loginCookieCount(b *browser) int {
	n := 0
	for _, c := range b.cookies {
		if strings.HasPrefix(c.Name, "_authproxy_login_") {
			n++
		}
	}
	return n
}

// TestLoginCookieBomb: another site opening /auth/login again and again
// leaves the browser a few small login cookies, not a header too large to
// send; a return path too long for the login cookie lands on / instead of
// failing the login with a 500.
func TestLoginCookieBomb(t *testing.T) {
	f := newFixture(t)
	b := &browser{}
	for range 25 {
		f.startLogin(t, b, "/"+strings.Repeat("x", 500))
	}
	if n := loginCookieCount(b); n > 3 {
		t.Errorf("after 25 logins the browser holds %d login cookies, want at most 3", n)
	}
	header := requestWith(b).Header.Get("Cookie")
	if len(header) > 4200 {
		t.Errorf("after 25 logins the Cookie header is %d bytes, want at most ~4 KiB", len(header))
	}

	for _, tt := range []struct {
		rd, want string
	}{
		{"/" + strings.Repeat("a", 800), "/" + strings.Repeat("a", 800)},
		{"/" + strings.Repeat("a", 1200), "/"},
		{"/" + strings.Repeat("%41", 680), "/"}, // 2 KiB escaped
		{"/search?q=" + strings.Repeat("x", 2030), "/"},
		{"/" + strings.Repeat("a", 5000), "/"}, // beyond ReturnPath's own limit
	} {
		b := &browser{}
		resp := b.do(f.h, "/auth/login?rd="+url.QueryEscape(tt.rd))
		if resp.StatusCode != http.StatusFound {
			t.Errorf("login with a %d-byte rd: %d, want 302 to the provider", len(tt.rd), resp.StatusCode)
			continue
		}
		authz, _ := url.Parse(resp.Header.Get("Location"))
		resp = b.do(f.h, callbackPath(f.authorize(t, authz, "alice")))
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || got != tt.want {
			t.Errorf("login with a %d-byte rd: landed %d on %.40q, want %.40q", len(tt.rd), resp.StatusCode, got, tt.want)
		}
	}
}

// TestFailedCallbackExpiresLoginCookie: whatever makes a callback fail,
// the login cookie its state names is expired in the answer.
func TestFailedCallbackExpiresLoginCookie(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		callback func(cb *url.URL, b *browser)
		token    func(nonce string) string
	}{
		{name: "provider error", callback: func(cb *url.URL, _ *browser) {
			cb.RawQuery = url.Values{"error": {"access_denied"}, "state": {cb.Query().Get("state")}, "iss": {f.idp.Issuer()}}.Encode()
		}},
		{name: "state with the cookie's prefix but another tail", callback: func(cb *url.URL, _ *browser) {
			st := cb.Query().Get("state")
			setQuery(cb, "state", st[:16]+strings.Repeat("Z", len(st)-16))
		}},
		{name: "tampered login cookie", callback: func(_ *url.URL, b *browser) {
			for _, c := range b.cookies {
				c.Value = "x" + c.Value[1:]
			}
		}},
		{name: "login cookie sealed with another key", callback: func(cb *url.URL, b *browser) {
			other, _ := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: 1}, Secrets: [][]byte{bytes.Repeat([]byte{1}, 32)}})
			w := httptest.NewRecorder()
			_ = other.SaveLogin(w, httptest.NewRequest("GET", "/", nil), cookie.Login{State: cb.Query().Get("state")})
			b.cookies = w.Result().Cookies()[:1]
		}},
		{name: "missing code", callback: func(cb *url.URL, _ *browser) { setQuery(cb, "code", "") }},
		{name: "forged code (exchange fails)", callback: func(cb *url.URL, _ *browser) { setQuery(cb, "code", "forged") }},
		{name: "wrong iss", callback: func(cb *url.URL, _ *browser) { setQuery(cb, "iss", "https://evil.example") }},
		{name: "bad token", token: func(string) string { return "not.a.jwt" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &browser{}
			authz := f.startLogin(t, b, "/")
			if tt.token != nil {
				tok := tt.token(authz.Query().Get("nonce"))
				atTokenEndpoint(f.idp, idTokenAnswer(tok))
				defer f.idp.SetFault(nil)
			}
			cb := f.authorize(t, authz, "alice")
			name := "_authproxy_login_" + cb.Query().Get("state")[:16]
			if tt.callback != nil {
				tt.callback(cb, b)
			}
			resp := b.do(f.h, callbackPath(cb))
			if resp.StatusCode < 400 {
				t.Fatalf("callback: %d, want a failure", resp.StatusCode)
			}
			expired := false
			for _, c := range resp.Cookies() {
				expired = expired || (c.Name == name && c.MaxAge < 0)
			}
			if !expired {
				t.Errorf("the failed callback left the login cookie %s (Set-Cookie %q)", name, resp.Header.Values("Set-Cookie"))
			}
		})
	}
}

// TestIssParameter is RFC 9207: a provider that advertises
// authorization_response_iss_parameter_supported must name itself, exactly
// and once, in every authorization response (errors too); one that does
// not may leave iss out but must not name someone else.
func TestIssParameter(t *testing.T) {
	advertised := newFixture(t)
	silent := newFixtureIDP(t, oidctest.Options{NoIssParameter: true})
	set := func(v ...string) func(*url.URL, string) {
		return func(cb *url.URL, _ string) {
			q := cb.Query()
			q.Del("iss")
			for _, s := range v {
				q.Add("iss", s)
			}
			cb.RawQuery = q.Encode()
		}
	}
	keep := func(*url.URL, string) {}
	tests := []struct {
		name     string
		f        *fixture
		callback func(cb *url.URL, issuer string)
		status   int
	}{
		{"advertised: sent by the provider", advertised, keep, http.StatusFound},
		{"advertised: missing", advertised, set(), http.StatusBadRequest},
		{"advertised: empty", advertised, set(""), http.StatusBadRequest},
		{"advertised: another provider", advertised, set("https://evil.example"), http.StatusBadRequest},
		{"advertised: trailing slash added", advertised, func(cb *url.URL, iss string) { set(iss+"/")(cb, iss) }, http.StatusBadRequest},
		{"advertised: other case", advertised, func(cb *url.URL, iss string) { set(strings.ToUpper(iss))(cb, iss) }, http.StatusBadRequest},
		{"advertised: twice, ours first", advertised, func(cb *url.URL, iss string) { set(iss, "https://evil.example")(cb, iss) }, http.StatusBadRequest},
		{"advertised: twice, ours second", advertised, func(cb *url.URL, iss string) { set("https://evil.example", iss)(cb, iss) }, http.StatusBadRequest},
		{"advertised: error response from another provider", advertised, func(cb *url.URL, _ string) {
			cb.RawQuery = url.Values{"error": {"access_denied"}, "state": {cb.Query().Get("state")}, "iss": {"https://evil.example"}}.Encode()
		}, http.StatusBadRequest},
		{"not advertised: absent", silent, keep, http.StatusFound},
		{"not advertised: ours", silent, func(cb *url.URL, iss string) { set(iss)(cb, iss) }, http.StatusFound},
		{"not advertised: another provider", silent, set("https://evil.example"), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &browser{}
			cb := tt.f.authorize(t, tt.f.startLogin(t, b, "/"), "alice")
			tt.callback(cb, tt.f.idp.Issuer())
			resp, body := b.send(tt.f.h, "GET", callbackPath(cb), map[string]string{"Accept": "application/json"})
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status != http.StatusFound && !strings.Contains(body, "issuer_mismatch") {
				t.Errorf("body %s, want issuer_mismatch", body)
			}
			if _, err := tt.f.store.Load(requestWith(b)); (err == nil) != (tt.status == http.StatusFound) {
				t.Errorf("session after the callback: %v", err)
			}
		})
	}
}

// TestProviderErrorPage: the callback's error and error_description are
// whatever the sender of the link wrote. The page shows fixed text per
// error code; the log gets both, escaped and bounded.
func TestProviderErrorPage(t *testing.T) {
	logs := &syncBuffer{}
	f := newFixture(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	tests := []struct {
		name, code, desc string
		status           int
		want             string // on the page
	}{
		{"phishing text", "access_denied", "Your account is locked. Call +1-555-0100 to unlock it.", 403, "did not allow this sign-in"},
		{"markup", "access_denied", `<script>alert(1)</script><a href="https://evil.example">here</a>`, 403, "did not allow"},
		{"markup in the code", `<img src=x onerror=alert(1)>`, "x", 400, "refused the sign-in request"},
		{"text as the code", "Call +1-555-0100 now", "", 400, "refused the sign-in request"},
		{"log injection", "server_error", "x\nlevel=ERROR msg=\"forged entry\" user=admin", 400, "could not complete"},
		{"log injection in the code", "x\r\nlevel=ERROR msg=forged", "", 400, "refused"},
		{"huge description", "login_required", strings.Repeat("A", 100_000), 400, "sign in again"},
		{"invalid UTF-8", "interaction_required", "\xff\xfe\xc0\xaf", 400, "sign in again"},
		{"terminal escapes", "temporarily_unavailable", "\x1b[2J\x1b[31mPWNED", 400, "right now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			b := &browser{}
			cb := f.authorize(t, f.startLogin(t, b, "/"), "alice")
			cb.RawQuery = url.Values{"error": {tt.code}, "error_description": {tt.desc}, "state": {cb.Query().Get("state")},
				"iss": {f.idp.Issuer()}}.Encode()
			for _, accept := range []string{"text/html", "application/json"} {
				resp, body := b.send(f.h, "GET", callbackPath(cb), map[string]string{"Accept": accept})
				if resp.StatusCode != tt.status {
					t.Errorf("%s: status %d, want %d", accept, resp.StatusCode, tt.status)
				}
				if !strings.Contains(body, tt.want) {
					t.Errorf("%s: page lacks the fixed text %q:\n%s", accept, tt.want, body)
				}
				for _, attacker := range []string{tt.code, tt.desc, "555", "evil", "script", "PWNED", "forged"} {
					if len(attacker) > 3 && strings.Contains(body, attacker) {
						t.Errorf("%s: page repeats the attacker's %.40q:\n%.600s", accept, attacker, body)
					}
				}
			}
			out := logs.String()
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			for _, l := range lines {
				if !strings.HasPrefix(l, "time=") {
					t.Errorf("log line not written by the logger (injected?): %.120q", l)
				}
				if len(l) > 2000 {
					t.Errorf("log line of %d bytes, want the description bounded", len(l))
				}
				if strings.ContainsAny(l, "\x1b\r") {
					t.Errorf("log line carries raw control characters: %.120q", l)
				}
			}
			if !strings.Contains(out, "provider_error_description=") {
				t.Errorf("the description is not logged:\n%s", out)
			}
		})
	}
}

// ownOrigin is the fixture's public origin (from its redirect URL).
const ownOrigin = "http://proxy.test"

// TestLogoutFromOtherSites: a request another site made (a link, an image,
// a form, a fetch) must not end the session; it gets a page whose button
// signs out with a same-origin POST. Requests from the proxy's own origin,
// or typed by the user, sign out as before.
func TestLogoutFromOtherSites(t *testing.T) {
	f := newFixture(t)
	html := "text/html,application/xhtml+xml"
	tests := []struct {
		name    string
		method  string
		hdr     map[string]string
		signOut bool
	}{
		// Refused: shown the confirmation page.
		{"link on another site", "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Accept": html}, false},
		{"image on another site", "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image", "Accept": "image/*"}, false},
		{"sibling subdomain", "GET", map[string]string{"Sec-Fetch-Site": "same-site", "Accept": html}, false},
		{"cross-site with our Referer", "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": ownOrigin + "/app", "Accept": html}, false},
		{"unknown Sec-Fetch-Site", "GET", map[string]string{"Sec-Fetch-Site": "same-origin, cross-site", "Accept": html}, false},
		{"old browser, foreign Origin", "GET", map[string]string{"Origin": "https://evil.example", "Accept": html}, false},
		{"old browser, foreign Referer", "GET", map[string]string{"Referer": "https://evil.example/page", "Accept": html}, false},
		{"old browser, look-alike Referer", "GET", map[string]string{"Referer": ownOrigin + ".evil.example/", "Accept": html}, false},
		{"old browser, userinfo Referer", "GET", map[string]string{"Referer": "http://proxy.test@evil.example/", "Accept": html}, false},
		{"form on another site", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Accept": html}, false},
		{"form on another site claiming our Origin", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": ownOrigin, "Accept": html}, false},
		{"POST, old browser, no Origin", "POST", map[string]string{"Accept": html}, false},
		{"POST, old browser, Origin null", "POST", map[string]string{"Origin": "null", "Accept": html}, false},
		{"POST, old browser, look-alike Origin", "POST", map[string]string{"Origin": ownOrigin + ".evil.example", "Accept": html}, false},
		{"POST, old browser, other scheme", "POST", map[string]string{"Origin": "https://proxy.test", "Accept": html}, false},
		{"fetch from another site", "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Origin": "https://evil.example"}, false},
		// Accepted: signed out.
		{"link on our own page", "GET", map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": html}, true},
		{"typed or bookmarked", "GET", map[string]string{"Sec-Fetch-Site": "none", "Accept": html}, true},
		{"the confirmation page's button", "POST", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "null", "Accept": html}, true},
		{"POST, old browser, our Origin", "POST", map[string]string{"Origin": ownOrigin, "Accept": html}, true},
		{"old browser, our Referer", "GET", map[string]string{"Referer": ownOrigin + "/app", "Accept": html}, true},
		{"curl", "GET", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.login(t)
			resp, body := b.send(f.h, tt.method, "/auth/logout", tt.hdr)
			_, err := f.store.Load(requestWith(b))
			if tt.signOut {
				if err == nil || (resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther) {
					t.Errorf("status %d, session error %v; want signed out and redirected", resp.StatusCode, err)
				}
				return
			}
			if err != nil || resp.StatusCode != http.StatusOK || len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("status %d, Set-Cookie %q, session error %v; want the session kept and a confirmation",
					resp.StatusCode, resp.Header.Values("Set-Cookie"), err)
			}
			if !strings.Contains(body, "confirm_logout") {
				t.Errorf("body does not ask for confirmation:\n%s", body)
			}
			if strings.Contains(tt.hdr["Accept"], "text/html") &&
				!strings.Contains(body, `<form method="post" action="/auth/logout"><button type="submit">Sign out</button></form>`) {
				t.Errorf("confirmation page has no sign-out button:\n%s", body)
			}
		})
	}
}

// TestLogoutRedirect: the redirect to the provider carries the ID token in
// its URL only, not in a body, and sends no Referer along.
func TestLogoutRedirect(t *testing.T) {
	f := newFixture(t)
	for _, method := range []string{"GET", "POST"} {
		b := f.login(t)
		sess, err := f.store.Load(requestWith(b))
		if err != nil || sess.IDToken == "" {
			t.Fatalf("session %+v, %v", sess, err)
		}
		resp, body := b.send(f.h, method, "/auth/logout", map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": "text/html"})
		want := map[string]int{"GET": http.StatusFound, "POST": http.StatusSeeOther}[method]
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != want || loc.Query().Get("id_token_hint") != sess.IDToken {
			t.Errorf("%s: %d to %s, want %d with the id_token_hint", method, resp.StatusCode, loc, want)
		}
		if body != "" || strings.Contains(body, sess.IDToken[:20]) {
			t.Errorf("%s: the redirect has a body: %.200q", method, body)
		}
		if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", method, got)
		}
	}
}

// TestPostLogoutURL: the post-logout URL reaches the provider whole, query
// included, as an absolute URL on the proxy's origin; a path that could
// leave the origin becomes /.
func TestPostLogoutURL(t *testing.T) {
	tests := []struct{ config, want string }{
		{"", ownOrigin + "/"},
		{"/bye", ownOrigin + "/bye"},
		{"/bye?from=logout", ownOrigin + "/bye?from=logout"},
		{"/bye?from=logout&lang=de#top", ownOrigin + "/bye?from=logout&lang=de#top"},
		{"/signed%20out?next=%2Fhome", ownOrigin + "/signed%20out?next=%2Fhome"},
		{"https://landing.example/signed-out?x=1&y=2", "https://landing.example/signed-out?x=1&y=2"},
		{"//evil.example/bye?x=1", ownOrigin + "/"},
		{"/\\evil.example/bye", ownOrigin + "/"},
		{"/%2F%2Fevil.example", ownOrigin + "/"},
		{"/..//evil.example", ownOrigin + "/"},
	}
	for _, tt := range tests {
		// The provider's end_session_endpoint: post_logout_redirect_uri.
		f := newFixture(t, func(c *Config) { c.PostLogoutURL = tt.config })
		b := f.login(t)
		resp, _ := b.send(f.h, "GET", "/auth/logout", nil)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if got := loc.Query().Get("post_logout_redirect_uri"); got != tt.want {
			t.Errorf("%q: post_logout_redirect_uri %q, want %q", tt.config, got, tt.want)
		}
		// Auth0's /v2/logout: returnTo.
		h := &Handler{cfg: Config{ClientID: "cid", Auth0Domain: "tenant.eu.auth0.com", PostLogoutURL: tt.config,
			Origin: Origin{Fixed: &url.URL{Scheme: "http", Host: "proxy.test"}}}}
		got, _ := url.Parse(h.logoutURL(httptest.NewRequest("GET", "/auth/logout", nil), session.Session{}))
		if got.Query().Get("returnTo") != tt.want {
			t.Errorf("%q: Auth0 returnTo %q, want %q", tt.config, got.Query().Get("returnTo"), tt.want)
		}
	}
	// And the provider receives it intact.
	f := newFixture(t, func(c *Config) { c.PostLogoutURL = "/bye?from=logout" })
	b := f.login(t)
	resp, _ := b.send(f.h, "GET", "/auth/logout", nil)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	end, err := noFollow.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	end.Body.Close()
	if got := f.idp.EndSessions(); len(got) != 1 || got[0].Get("post_logout_redirect_uri") != ownOrigin+"/bye?from=logout" {
		t.Errorf("provider's end_session saw %v", got)
	}
}

// TestPageHeaders: every page the oidc handlers render (callback error,
// provider down, sign-out confirmation, method not allowed) forbids
// scripts, framing, sniffing and Referers; only the confirmation page may
// submit a form, to the proxy and the origins a sign-out passes through.
func TestPageHeaders(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PostLogoutURL = "https://landing.example/bye" })
	down := newFixture(t)
	down.h.provider.Store(nil)
	b := f.login(t)
	cb := f.authorize(t, f.startLogin(t, &browser{}, "/"), "alice")
	html := map[string]string{"Accept": "text/html"}
	tests := []struct {
		name, method, target string
		h                    *Handler
		hdr                  map[string]string
		status               int
		formAction           string
	}{
		{"callback error", "GET", callbackPath(cb), f.h, html, 400, "'none'"},
		{"provider down", "GET", "/auth/login", down.h, html, 503, "'none'"},
		{"sign-out confirmation", "GET", "/auth/logout", f.h, map[string]string{"Accept": "text/html", "Sec-Fetch-Site": "cross-site"},
			200, "'self' " + f.idp.Issuer() + " https://landing.example"},
		{"callback error, JSON", "GET", callbackPath(cb), f.h, nil, 400, "'none'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := b.send(tt.h, tt.method, tt.target, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			checkPageHeaders(t, resp.Header, body, tt.formAction)
		})
	}
}

// checkPageHeaders checks the security headers of a page authproxy wrote.
func checkPageHeaders(t *testing.T, h http.Header, body, formAction string) {
	t.Helper()
	for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := map[string]string{}
	for _, d := range strings.Split(h.Get("Content-Security-Policy"), ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		csp[name] = value
	}
	for name, want := range map[string]string{"default-src": "'none'", "frame-ancestors": "'none'", "form-action": formAction, "base-uri": "'none'"} {
		if csp[name] != want {
			t.Errorf("CSP %s = %q, want %q (CSP %q)", name, csp[name], want, h.Get("Content-Security-Policy"))
		}
	}
	if s := csp["style-src"]; !strings.HasPrefix(s, "'sha256-") || strings.Contains(s, " ") {
		t.Errorf("CSP style-src = %q, want one hash", s)
	}
	if _, ok := csp["script-src"]; ok || strings.Contains(h.Get("Content-Security-Policy"), "unsafe") {
		t.Errorf("CSP allows scripts or unsafe sources: %q", h.Get("Content-Security-Policy"))
	}
	if strings.Contains(body, "<script") {
		t.Errorf("page has a script:\n%s", body)
	}
}

// TestLoginAcrossRoutedHosts: with one callback host for several routed
// hosts, a login started on a routed host returns to that host (its rd
// made absolute there), an absolute rd of a routed host survives the round
// trip, and anything else lands on a path of the callback host.
func TestLoginAcrossRoutedHosts(t *testing.T) {
	fixed, _ := url.Parse(callbackURL)
	returns := Returns{Scheme: "http", Hosts: []string{"app.test", "wiki.test"}, Suffixes: []string{".apps.test"}}
	f := newFixture(t, func(c *Config) { c.Origin.Fixed, c.Returns = fixed, returns })
	for _, tt := range []struct {
		name, start, want string
	}{
		{"path on a routed host", "http://wiki.test/auth/login?rd=%2Fpage%3Fx%3D1", "http://wiki.test/page?x=1"},
		{"routed host in another case", "http://WIKI.test/auth/login?rd=%2Fpage", "http://WIKI.test/page"},
		{"under a wildcard", "http://a.apps.test/auth/login?rd=%2Fp", "http://a.apps.test/p"},
		{"path on the callback host", "http://proxy.test/auth/login?rd=%2Fpage", "/page"},
		{"absolute rd of another routed host", "http://proxy.test/auth/login?rd=" + url.QueryEscape("http://app.test/x"), "http://app.test/x"},
		{"absolute rd from a routed host", "http://wiki.test/auth/login?rd=" + url.QueryEscape("http://app.test/x"), "http://app.test/x"},
		{"absolute rd of an unrouted host", "http://wiki.test/auth/login?rd=" + url.QueryEscape("http://evil.test/x"), "http://wiki.test/"},
		{"absolute rd with https", "http://proxy.test/auth/login?rd=" + url.QueryEscape("https://app.test/x"), "/"},
		{"unrouted Host header", "http://evil.test/auth/login?rd=%2Fpage", "/page"},
		{"Host of the callback host with a trailing dot", "http://proxy.test./auth/login?rd=%2Fpage", "/page"},
		{"hostile path on a routed host", "http://wiki.test/auth/login?rd=" + url.QueryEscape("//evil.test"), "http://wiki.test/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &browser{}
			resp := b.do(f.h, tt.start)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("login: %d", resp.StatusCode)
			}
			authz, _ := url.Parse(resp.Header.Get("Location"))
			if got := authz.Query().Get("redirect_uri"); got != callbackURL {
				t.Errorf("redirect_uri %q, want the one callback %q", got, callbackURL)
			}
			resp = b.do(f.h, callbackPath(f.authorize(t, authz, "alice")))
			if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || got != tt.want {
				t.Errorf("landed %d on %q, want %q", resp.StatusCode, got, tt.want)
			}
		})
	}
}

// TestLogoutFromRoutedHostPage: a sign-out posted from a page of a routed
// host is the proxy's own; one from an unrouted site gets the confirmation.
func TestLogoutFromRoutedHostPage(t *testing.T) {
	fixed, _ := url.Parse(callbackURL)
	f := newFixture(t, func(c *Config) {
		c.Origin.Fixed, c.Returns = fixed, Returns{Scheme: "http", Hosts: []string{"wiki.test"}}
	})
	for origin, signsOut := range map[string]bool{
		"http://wiki.test": true, "http://proxy.test": true, "http://evil.test": false, "https://wiki.test": false,
		"http://wiki.test.evil.test": false, "null": false,
	} {
		b := f.login(t)
		resp, _ := b.send(f.h, "POST", "http://wiki.test/auth/logout", map[string]string{"Origin": origin})
		if got := resp.StatusCode == http.StatusSeeOther; got != signsOut {
			t.Errorf("POST from %s: %d, want signed out = %v", origin, resp.StatusCode, signsOut)
		}
	}
}
