package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// frontEnd is one shipped forward-auth example: a real ingress program in
// front of the app, asking authproxy at /auth/check.
type frontEnd struct {
	name  string
	start func(t *testing.T, p *pki, port int, authProxy, app string) *url.URL
	// manyRuns: what a request whose authproxy cookies come in more
	// separate runs than the example removes gets. nginx removes a fixed
	// number of runs and refuses the rest (400); Caddy removes them all.
	manyRuns int
}

func forwardAuthFronts() []frontEnd {
	return []frontEnd{
		{
			name: "nginx",
			start: func(t *testing.T, p *pki, port int, authProxy, app string) *url.URL {
				requireNginx(t)
				return startNginx(t, p, nginxConfig{Port: port, AuthProxy: authProxy, App: app, CertFile: p.CertFile, KeyFile: p.KeyFile}).URL
			},
			manyRuns: http.StatusBadRequest,
		},
		{
			name: "caddy",
			start: func(t *testing.T, p *pki, port int, authProxy, app string) *url.URL {
				return startCaddy(t, p, caddyConfig{Port: port, AuthProxy: authProxy, App: app, CertFile: p.CertFile, KeyFile: p.KeyFile})
			},
			manyRuns: http.StatusOK,
		},
	}
}

// TestForwardAuthStripsProxyCookies runs the shipped nginx and Caddy
// forward-auth examples for real, in front of the recording app, with
// authproxy (forward-auth mode: the ingress proxies to the app itself) and
// the real provider. Without a session, a page load is redirected to the
// login and an API call gets 401, and the app sees nothing. After a login
// through the ingress, the app sees X-User and none of authproxy's cookies
// (session, chunks, login cookies, under the current and the older name),
// in any arrangement a client sends them (several Cookie headers, odd
// spacing, mixed with the app's own), while the app's own cookies pass in
// order; a client's own X-User, in any spelling, never reaches it.
func TestForwardAuthStripsProxyCookies(t *testing.T) {
	requireE2E(t)
	for _, front := range forwardAuthFronts() {
		t.Run(front.name, func(t *testing.T) {
			testForwardAuthFront(t, front)
		})
	}
}

func testForwardAuthFront(t *testing.T, front frontEnd) {
	p := newPKI(t)
	app := newRecorder(t)
	direct := newRecorder(t) // authproxy's own upstream, which the ingress never uses
	port := freePort(t)
	origin := fmt.Sprintf("https://127.0.0.1:%d", port)
	callback := origin + "/auth/callback"
	client := providerClient{
		ClientID:                "e2e-forward-auth-" + front.name,
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{callback},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	prov := startProvider(t, p, providerConfig{Clients: []providerClient{client}})
	ap := startProxy(t, p, proxyConfig{
		Upstream:      direct.URL.String(),
		Issuer:        prov.Issuer,
		ClientID:      client.ClientID,
		ClientSecret:  client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: "/",
		Env:           map[string]string{"AUTHPROXY_REDIRECT_URL": callback},
	})
	base := front.start(t, p, port, ap.URL.Host, app.URL.Host)
	at := func(pathQuery string) string { return base.String() + pathQuery }

	anon := newBrowser(t, p)
	if pg := anon.Do(http.MethodGet, at("/page?x=1"), navigationHeaders(), nil); pg.Status != http.StatusFound {
		t.Errorf("anonymous page load: status %d, want 302 to the login", pg.Status)
	} else {
		checkLoginRedirect(t, pg, "/page?x=1")
	}
	if pg := anon.Do(http.MethodGet, at("/api/x"), apiHeaders(), nil); pg.Status != http.StatusUnauthorized {
		t.Errorf("anonymous API call: status %d, want 401", pg.Status)
	} else {
		checkUnauthorized(t, pg, "/api/x")
	}
	// A forged identity without a session gets nowhere either.
	forged := apiHeaders()
	forged["X-User"] = []string{"mallory"}
	forged["X_User"] = []string{"mallory"}
	if pg := anon.Do(http.MethodGet, at("/api/forged"), forged, nil); pg.Status != http.StatusUnauthorized {
		t.Errorf("anonymous API call with X-User: status %d, want 401", pg.Status)
	}
	if seen := app.Requests(); len(seen) != 0 {
		t.Fatalf("app saw %d requests without a session, want none: %+v", len(seen), seen)
	}

	const user = "nina"
	b := newBrowser(t, p)
	// The app's own cookie, set for the ingress's origin like authproxy's.
	b.Jar.SetCookies(base, []*http.Cookie{{Name: "app_session", Value: "keep-me", Path: "/"}})
	if pg := b.Login(at("/start?a=1"), user); pg.Status != http.StatusOK || pg.URL.String() != at("/start?a=1") {
		t.Fatalf("login through %s landed on %d %s; hops:\n%s", front.name, pg.Status, pg.URL, b.HopsString())
	}
	seen := app.ByRequestURI("/start?a=1")
	if len(seen) != 1 {
		t.Fatalf("app saw %d requests for /start?a=1, want 1", len(seen))
	}
	// Cookies are not bound to a port: the browser sends the provider's
	// too, and they are the app's as far as the ingress can tell.
	var appCookies []string
	for _, c := range b.Jar.Cookies(base) {
		if !strings.HasPrefix(c.Name, "__Host-authproxy") && !strings.HasPrefix(c.Name, "_authproxy") {
			appCookies = append(appCookies, c.Name+"="+c.Value)
		}
	}
	if !slices.Contains(appCookies, "app_session=keep-me") {
		t.Fatalf("the browser lost the app's cookie: %q", appCookies)
	}
	checkAppSaw(t, seen[0], user, appCookies, nil)

	// authproxy's cookies as the browser holds them: the session, whole or
	// chunked (only session cookies are left after the login).
	var ours []string
	for _, c := range b.Jar.Cookies(base) {
		if strings.HasPrefix(c.Name, "__Host-authproxy") || strings.HasPrefix(c.Name, "_authproxy") {
			ours = append(ours, c.Name+"="+c.Value)
		}
	}
	if len(ours) == 0 {
		t.Fatalf("no authproxy cookie in the browser after the login: %v", b.Jar.Cookies(base))
	}
	session := strings.Join(ours, "; ")
	secrets := ours // no value of these may reach the app, under any name

	// Cookie headers as clients send them. Every case carries the session,
	// so the request is let through; the app must get exactly keep.
	type cookieCase struct {
		name   string
		header []string // Cookie header lines, sent as written
		keep   []string // the app's cookies, in order
		status int      // 0: 200
	}
	// Stale login cookies and the older name's chunks, as a browser keeps
	// them: authproxy's too.
	const stale = "_authproxy_login_Zm9v=stale1; __Host-authproxy_login_YmFy=stale2; _authproxy_3=oldchunk"
	cases := []cookieCase{
		{name: "session only", header: []string{session}},
		{name: "app cookies around", header: []string{"a=1; " + session + "; b=2"}, keep: []string{"a=1", "b=2"}},
		{name: "session first, no spaces", header: []string{strings.ReplaceAll(session, "; ", ";") + ";a=1;b=2"}, keep: []string{"a=1", "b=2"}},
		{name: "odd spacing", header: []string{"  a=1 ;   " + session + "  ;\tb=2 ; "}, keep: []string{"a=1", "b=2"}},
		{name: "several Cookie headers", header: []string{"a=1", session, "b=2; c=3"}, keep: []string{"a=1", "b=2", "c=3"}},
		{name: "session in its own header first", header: []string{session, "a=1"}, keep: []string{"a=1"}},
		{name: "stale login cookies and old chunks interleaved", header: []string{
			"a=1; " + stale + "; b=2; " + session + "; _authproxy=older; c=3; __Host-authproxy_login_cXV4=stale3",
		}, keep: []string{"a=1", "b=2", "c=3"}},
		{name: "look-alikes are the app's", header: []string{
			"x_authproxy=1; _authproxyish=2; authproxy=3; __Host-authproxyz=4; " + session + "; __host-authproxy=5",
		}, keep: []string{"x_authproxy=1", "_authproxyish=2", "authproxy=3", "__Host-authproxyz=4", "__host-authproxy=5"}},
	}
	// More runs of authproxy cookies, each between app cookies, than the
	// nginx example removes: refused by nginx rather than passed on.
	var runs []string
	for i := range 10 {
		runs = append(runs, fmt.Sprintf("k%d=v", i), fmt.Sprintf("_authproxy_login_r%d=x", i))
	}
	manyKeep := []string{}
	for i := range 10 {
		manyKeep = append(manyKeep, fmt.Sprintf("k%d=v", i))
	}
	cases = append(cases, cookieCase{name: "ten separate runs", header: []string{session + "; " + strings.Join(runs, "; ")}, keep: manyKeep, status: front.manyRuns})

	c := rawClient(t)
	c.Transport.(*http.Transport).TLSClientConfig = p.TLSConfig()
	for i, tc := range cases {
		t.Run("cookies/"+tc.name, func(t *testing.T) {
			path := fmt.Sprintf("/cookies/%d", i)
			h := apiHeaders()
			h["Cookie"] = tc.header
			got, err := rawGet(c, at(path), nil, h)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.status
			if want == 0 {
				want = http.StatusOK
			}
			if got.Status != want {
				t.Fatalf("GET %s with Cookie %q: status %d, want %d; body:\n%s", path, tc.header, got.Status, want, got.Body)
			}
			seen := app.ByPath(path)
			if want != http.StatusOK {
				if len(seen) != 0 {
					t.Errorf("app saw %d requests for a refused one", len(seen))
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("app saw %d requests for %s, want 1", len(seen), path)
			}
			checkAppSaw(t, seen[0], user, tc.keep, secrets)
		})
	}

	// With the session, a client's own identity headers never reach the
	// app, in any spelling; only the X-User from authproxy's answer.
	forgeries := []struct {
		name   string
		header [][2]string
		// mayDrop: the ingress may drop X-User altogether. Caddy's proxy
		// removes the headers a client's Connection header names (RFC
		// 9110 7.6.1), the copied X-User too: the client loses its own
		// identity, it cannot forge one.
		mayDrop bool
	}{
		{"X-User", [][2]string{{"X-User", "mallory"}}, false},
		{"x-user", [][2]string{{"x-user", "mallory"}}, false},
		{"X_User", [][2]string{{"X_User", "mallory"}}, false},
		{"x_user", [][2]string{{"x_user", "mallory"}}, false},
		{"X.User", [][2]string{{"X.User", "mallory"}}, false},
		{"two X-User", [][2]string{{"X-User", "mallory"}, {"X-User", "eve"}}, false},
		{"Connection: X-User", [][2]string{{"Connection", "X-User"}, {"X-User", "mallory"}}, true},
		{"other identity headers", [][2]string{
			{"X-Email", "mallory@example.test"}, {"X_Email", "mallory@example.test"},
			{"X-Groups", "admin"}, {"X-Authproxy-Jwt-Assertion", "forged.jwt.value"},
		}, false},
		// The ingress names the original request itself: a client's own
		// values neither reach authproxy's check nor the app.
		{"original-URL headers", [][2]string{
			{"X-Original-URL", "/admin"}, {"X-Forwarded-Uri", "/admin"}, {"X-Original-Method", "DELETE"},
			{"X-Forwarded-Method", "DELETE"}, {"X-Rewrite-URL", "/admin"}, {"X_Original_URL", "/admin"},
		}, false},
		{"every spelling at once", [][2]string{
			{"X-User", "mallory"}, {"x-user", "eve"}, {"X_User", "trudy"}, {"x_user", "oscar"}, {"X-USER", "peggy"},
		}, false},
	}
	for i, tc := range forgeries {
		t.Run("forged/"+tc.name, func(t *testing.T) {
			path := fmt.Sprintf("/forged/%d", i)
			h := apiHeaders()
			h["Cookie"] = []string{session}
			for _, f := range tc.header {
				h[f[0]] = append(h[f[0]], f[1]) // not canonicalized: sent as written
			}
			got, err := rawGet(c, at(path), nil, h)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200; body:\n%s", path, got.Status, got.Body)
			}
			seen := app.ByPath(path)
			if len(seen) != 1 {
				t.Fatalf("app saw %d requests for %s, want 1", len(seen), path)
			}
			for name := range seen[0].Header {
				switch normalize(name) {
				case "x-original-url", "x-original-uri", "x-forwarded-uri", "x-original-method", "x-forwarded-method", "x-rewrite-url":
					t.Errorf("app received the client's %s", name)
				}
			}
			if tc.mayDrop && len(forwardedIdentity(seen[0].Header)) == 0 {
				return
			}
			checkAppSaw(t, seen[0], user, nil, secrets)
		})
	}

	if n := len(direct.Requests()); n != 0 {
		t.Errorf("authproxy forwarded %d requests to its own upstream: the ingress should reach the app itself", n)
	}
}

// checkAppSaw checks a request the app received: X-User is user and no
// other identity header arrived in any spelling; its cookies are exactly
// keep, in order, with none of authproxy's; and no value of secrets
// appears in any header.
func checkAppSaw(t *testing.T, seen seenRequest, user string, keep, secrets []string) {
	t.Helper()
	identity := forwardedIdentity(seen.Header)
	if len(identity) != 1 || !slices.Equal(identity["X-User"], []string{user}) {
		t.Errorf("app received identity headers %q, want only X-User [%q]", identity, user)
	}
	var pairs []string
	for _, line := range seen.Header.Values("Cookie") {
		for pair := range strings.SplitSeq(line, ";") {
			if pair = strings.TrimSpace(pair); pair != "" {
				pairs = append(pairs, pair)
			}
		}
	}
	if keep == nil {
		keep = []string{}
	}
	if pairs == nil {
		pairs = []string{}
	}
	if !slices.Equal(pairs, keep) {
		t.Errorf("app received cookies %q (Cookie lines %q), want %q", pairs, seen.Header.Values("Cookie"), keep)
	}
	for _, pair := range pairs {
		name, _, _ := strings.Cut(pair, "=")
		for _, base := range []string{"__Host-authproxy", "_authproxy"} {
			if name == base || strings.HasPrefix(name, base+"_") {
				t.Errorf("app received authproxy's cookie %s", name)
			}
		}
	}
	for _, secret := range secrets {
		_, value, _ := strings.Cut(secret, "=")
		for name, values := range seen.Header {
			for _, v := range values {
				if strings.Contains(v, value) {
					t.Errorf("app received authproxy's cookie value in header %s", name)
				}
			}
		}
	}
}

// forwardedIdentity is every header of h that an app stack may read as one
// of authproxy's identity headers: X-User, X-Email, X-Groups and the
// assertion, in any case, with "_" or "." for "-".
func forwardedIdentity(h http.Header) map[string][]string {
	out := map[string][]string{}
	for name, values := range h {
		switch normalize(name) {
		case "x-user", "x-email", "x-groups", "x-authproxy-jwt-assertion":
			out[name] = values
		}
	}
	return out
}
