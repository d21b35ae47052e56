package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// customStackOptions is newStack's set-up with the provider's configuration
// in the test's hands: accounts with claims, APIs, more clients.
type customStackOptions struct {
	// Provider changes the provider's configuration before it starts; the
	// proxy's client is already in Clients.
	Provider func(*providerConfig)
	ProxyEnv map[string]string // extra or overriding AUTHPROXY_* variables
}

// newCustomStack starts what newStack starts, from the same parts, after
// opts.Provider has changed the provider's configuration.
func newCustomStack(t *testing.T, opts customStackOptions) *stack {
	t.Helper()
	requireE2E(t)
	s := &stack{PKI: newPKI(t), Upstream: newRecorder(t), Landing: newRecorder(t)}
	proxyPort := freePort(t)
	proxyBase := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	postLogout := s.Landing.URL.String() + "/signed-out"

	s.Client = providerClient{
		ClientID:                "e2e-proxy",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{proxyBase + "/auth/callback"},
		PostLogoutRedirectURIs:  []string{postLogout},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	cfg := providerConfig{
		Clients:  []providerClient{s.Client},
		Features: providerFeatures{RPInitiatedLogout: true},
	}
	if opts.Provider != nil {
		opts.Provider(&cfg)
	}
	s.Provider = startProvider(t, s.PKI, cfg)
	s.Proxy = startProxy(t, s.PKI, proxyConfig{
		Port:          proxyPort,
		Upstream:      s.Upstream.URL.String(),
		Issuer:        s.Provider.Issuer,
		ClientID:      s.Client.ClientID,
		ClientSecret:  s.Client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: postLogout,
		Env:           opts.ProxyEnv,
	})
	return s
}

// writeTestFile writes data to name in a fresh temporary directory and
// returns its path.
func writeTestFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// rolesClaim is an Auth0-style namespaced custom claim: a list of roles.
const rolesClaim = "https://example.com/roles"

// accessRules is the rules file of TestAccessRules: a public prefix, a group,
// a namespaced claim, and an email domain for the rest.
const accessRules = `# kind  methods   path       conditions
public  GET,HEAD  /status/
allow   *         /admin/    group:admins
allow   *         /reports/  claim:https://example.com/roles=analyst
allow   *         /          email-domain:example.test
`

// TestAccessRules runs a rules file against users whose claims come from
// oidc-provider's ID tokens: groups and an Auth0-style namespaced roles
// claim (lists), email and email_verified. Visitors reach the public prefix
// only, with no identity header, and are sent to log in elsewhere. A
// logged-in user who is refused gets a 403 page that names them and offers
// logout, and the upstream never sees the request; one who is allowed
// reaches the upstream with X-User, X-Email and X-Groups from the provider,
// whatever identity headers the client sent.
func TestAccessRules(t *testing.T) {
	s := newCustomStack(t, customStackOptions{
		Provider: func(c *providerConfig) {
			c.Accounts = map[string]map[string]any{
				"admin-ann": {"groups": []string{"admins", "staff"}, rolesClaim: []string{"viewer"}},
				"bob":       {"groups": []string{"staff"}, rolesClaim: []string{"viewer", "analyst"}},
				"dora":      {"groups": []string{"admins"}, rolesClaim: []string{"analyst"}, "email_verified": false},
				"eve":       {"email": "eve@elsewhere.test"},
				// carol has only the defaults: carol@example.test, verified.
			}
		},
		ProxyEnv: map[string]string{
			"AUTHPROXY_RULES_FILE":    writeTestFile(t, "rules.txt", accessRules),
			"AUTHPROXY_EMAIL_HEADER":  "X-Email",
			"AUTHPROXY_GROUPS_HEADER": "X-Groups",
		},
	})

	// What a client forges on every request; none of it may reach the upstream.
	forged := func(h http.Header) http.Header {
		h["X-User"] = []string{"mallory"}
		h["X-Email"] = []string{"root@example.test"}
		h["X-Groups"] = []string{"admins"}
		h["X_Groups"] = []string{"admins"}
		h["x-email"] = []string{"root@example.test"}
		return h
	}

	t.Run("visitor", func(t *testing.T) {
		b := newBrowser(t, s.PKI)
		p := b.Do(http.MethodGet, s.ProxyURL("/status/health?probe=1"), forged(apiHeaders()), nil)
		if p.Status != http.StatusOK {
			t.Fatalf("GET /status/health without a session: status %d, want 200 (public); body:\n%s", p.Status, p.Body)
		}
		seen := s.Upstream.ByRequestURI("/status/health?probe=1")
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d requests for the public path, want 1", len(seen))
		}
		if got := headersNamed(seen[0].Header, "X-User", "X-Email", "X-Groups", assertionHeader); len(got) != 0 {
			t.Errorf("upstream got identity headers on a public path without a session: %q, want none", got)
		}

		// Everything else needs a login, even paths that look public to a
		// careless matcher, and the query never counts.
		for _, pathQuery := range []string{
			"/admin/users", "/reports/q3?fmt=pdf", "/", "/home", "/statusx", "/admin?next=/status/",
			"/status/%2e%2e/admin/users", "/status/..%2fadmin/users", "/status/%2E%2E/admin/users",
		} {
			p := b.Do(http.MethodGet, s.ProxyURL(pathQuery), forged(navigationHeaders()), nil)
			if p.Status != http.StatusFound {
				t.Errorf("visitor GET %s: status %d, want 302 to the login; body:\n%s", pathQuery, p.Status, p.Body)
				continue
			}
			checkLoginRedirect(t, p, pathQuery)
		}
		// Go's mux sends an unclean path to its clean form first; that one
		// needs a login.
		p = b.Do(http.MethodGet, s.ProxyURL("//status/../admin/"), forged(navigationHeaders()), nil)
		if loc := p.Header.Get("Location"); !isRedirect(p.Status) || loc != "/admin/" {
			t.Errorf("visitor GET //status/../admin/: %d to %q, want a redirect to /admin/", p.Status, loc)
		} else {
			checkLoginRedirect(t, b.Do(http.MethodGet, s.ProxyURL(loc), navigationHeaders(), nil), "/admin/")
		}
		if seen := s.Upstream.Requests(); len(seen) != 1 {
			t.Errorf("upstream saw %d of the visitor's requests, want only the public one: %+v", len(seen), seen)
		}
		// public covers GET and HEAD only.
		if p := b.Do(http.MethodPost, s.ProxyURL("/status/health"), apiHeaders(), url.Values{"a": {"b"}}); p.Status != http.StatusUnauthorized {
			t.Errorf("visitor POST /status/health: status %d, want 401 (the public rule is GET,HEAD)", p.Status)
		}
	})

	// The users, and the pages the rules let them open.
	users := []struct {
		login  string
		email  string // X-Email the upstream gets
		groups string // X-Groups the upstream gets; "" for none
		home   bool   // may open / (email-domain:example.test, verified)
		admin  bool   // may open /admin/ (group:admins)
		report bool   // may open /reports/ (claim roles=analyst)
	}{
		{"admin-ann", "admin-ann@example.test", "admins,staff", true, true, false},
		{"bob", "bob@example.test", "staff", true, false, true},
		{"carol", "carol@example.test", "", true, false, false},
		// A group and a role, but the email is unverified: / needs a
		// verified address, the others don't look at it, and the
		// address is not forwarded.
		{"dora", "", "admins", false, true, true},
		{"eve", "eve@elsewhere.test", "", false, false, false},
	}
	for _, u := range users {
		t.Run(u.login, func(t *testing.T) {
			b := newBrowser(t, s.PKI)
			start := "/welcome?u=" + u.login
			landed := b.Login(s.ProxyURL(start), u.login)
			if landed.URL.String() != s.ProxyURL(start) {
				t.Fatalf("login landed on %d %s, want %s; hops:\n%s", landed.Status, landed.URL, s.ProxyURL(start), b.HopsString())
			}
			checkAccess(t, s, landed, start, u.home, u.login, u.email, u.groups)

			for _, c := range []struct {
				path    string
				allowed bool
			}{
				{"/", u.home},
				{"/admin/users", u.admin},
				{"/reports/q3", u.report},
				{"/status/health", true}, // public, and so without identity headers
			} {
				pathQuery := c.path + "?u=" + u.login
				p := b.Do(http.MethodGet, s.ProxyURL(pathQuery), forged(navigationHeaders()), nil)
				if c.path == "/status/health" {
					if p.Status != http.StatusOK {
						t.Errorf("GET %s: status %d, want 200", pathQuery, p.Status)
					}
					continue
				}
				checkAccess(t, s, p, pathQuery, c.allowed, u.login, u.email, u.groups)
			}

			// A program gets the refusal as JSON, naming the user.
			if !u.admin {
				p := b.Do(http.MethodGet, s.ProxyURL("/admin/api?u="+u.login), apiHeaders(), nil)
				var body struct{ Error, User string }
				if p.Status != http.StatusForbidden || decodeJSON(p.Body, &body) != nil || body.Error != "forbidden" || body.User != u.login {
					t.Errorf("API GET /admin/api: %d %s, want 403 JSON with error forbidden and user %q", p.Status, p.Body, u.login)
				}
			}
		})
	}

	// The 403 page's logout link ends the session: the next page load goes
	// to the login, not to another 403.
	t.Run("logout from the 403 page", func(t *testing.T) {
		b := newBrowser(t, s.PKI)
		b.Login(s.ProxyURL("/"), "carol")
		denied := b.Do(http.MethodGet, s.ProxyURL("/admin/"), navigationHeaders(), nil)
		if denied.Status != http.StatusForbidden {
			t.Fatalf("GET /admin/: status %d, want 403", denied.Status)
		}
		logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
		if !isRedirect(logout.Status) {
			t.Fatalf("GET /auth/logout: status %d, want a redirect", logout.Status)
		}
		// The ID token the proxy got carries the claims the rules read.
		loc, _ := url.Parse(logout.Header.Get("Location"))
		claims, err := jwtClaims(loc.Query().Get("id_token_hint"))
		if err != nil {
			t.Fatalf("id_token_hint: %v", err)
		}
		if claims["email"] != "carol@example.test" || claims["email_verified"] != true {
			t.Errorf("ID token email = %v, email_verified = %v, want carol@example.test, true", claims["email"], claims["email_verified"])
		}
		if p := b.Do(http.MethodGet, s.ProxyURL("/admin/"), navigationHeaders(), nil); p.Status != http.StatusFound {
			t.Errorf("GET /admin/ after logout: status %d, want 302 to the login", p.Status)
		} else {
			checkLoginRedirect(t, p, "/admin/")
		}
	})
}

// checkAccess checks the answer p to a page load of pathQuery by a logged-in
// user: when allowed, the upstream saw it once with the user's identity
// headers (and no forged ones); otherwise a 403 page names the user, offers
// logout, and the upstream never saw the request.
func checkAccess(t *testing.T, s *stack, p *page, pathQuery string, allowed bool, login, email, groups string) {
	t.Helper()
	seen := s.Upstream.ByRequestURI(pathQuery)
	if !allowed {
		if p.Status != http.StatusForbidden {
			t.Errorf("%s GET %s: status %d, want 403; body:\n%s", login, pathQuery, p.Status, p.Body)
			return
		}
		who := email
		if who == "" {
			who = login
		}
		if want := "signed in as " + html.EscapeString(who); !strings.Contains(p.Body, want) {
			t.Errorf("%s GET %s: the 403 page does not say %q:\n%s", login, pathQuery, want, p.Body)
		}
		if !strings.Contains(p.Body, `href="/auth/logout"`) {
			t.Errorf("%s GET %s: the 403 page offers no logout link:\n%s", login, pathQuery, p.Body)
		}
		if !strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") || p.Header.Get("Location") != "" {
			t.Errorf("%s GET %s: 403 with Content-Type %q and Location %q, want an HTML page and no redirect",
				login, pathQuery, p.Header.Get("Content-Type"), p.Header.Get("Location"))
		}
		if len(seen) != 0 {
			t.Errorf("%s GET %s: refused, but the upstream saw it %d times", login, pathQuery, len(seen))
		}
		return
	}
	if p.Status != http.StatusOK {
		t.Errorf("%s GET %s: status %d, want 200; body:\n%s", login, pathQuery, p.Status, p.Body)
		return
	}
	if len(seen) != 1 {
		t.Errorf("%s GET %s: upstream saw it %d times, want 1", login, pathQuery, len(seen))
		return
	}
	want := map[string][]string{"X-User": {login}}
	if email != "" { // only a verified address is forwarded
		want["X-Email"] = []string{email}
	}
	if groups != "" {
		want["X-Groups"] = []string{groups}
	}
	got := headersNamed(seen[0].Header, "X-User", "X-Email", "X-Groups")
	if len(got) != len(want) {
		t.Errorf("%s GET %s: upstream identity headers %q, want %q", login, pathQuery, got, want)
		return
	}
	for name, values := range want {
		if !slices.Equal(got[name], values) {
			t.Errorf("%s GET %s: upstream identity headers %q, want %q", login, pathQuery, got, want)
			return
		}
	}
}

// headersNamed returns the headers of h whose names an upstream may read as
// one of names: any case, "-" or "_".
func headersNamed(h http.Header, names ...string) map[string][]string {
	out := map[string][]string{}
	for name, values := range h {
		for _, n := range names {
			if normalize(name) == normalize(n) {
				out[name] = values
			}
		}
	}
	return out
}
