package e2e

import (
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestLoginFlow drives the whole authorization-code flow through the proxy
// and oidc-provider, from a page load without a session to the upstream
// answering as the user: X-User is the provider's sub (the login name typed)
// and the original path and query come back intact.
func TestLoginFlow(t *testing.T) {
	s := newStack(t, stackOptions{})

	tests := []struct {
		name      string
		user      string // typed into the provider's login form; oidc-provider makes it the sub
		pathQuery string // the page first opened, as sent on the wire
	}{
		{"path and query", "alice", "/some/path?a=1&b=two"},
		{"root, Auth0-style sub", "auth0|5f7c8ec7c33c6c004bbafe82", "/"},
		{"repeated and escaped query", "bob.smith@example.test", "/search?q=hello%20world&tag=a&tag=b&empty="},
		{"escaped path", "carol", "/files/report%202026.pdf?download=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t, s.PKI)
			start := s.ProxyURL(tc.pathQuery)
			p := b.Login(start, tc.user)

			if p.Status != http.StatusOK || p.URL.String() != start {
				t.Fatalf("landed on %d %s, want 200 %s; hops:\n%s", p.Status, p.URL, start, b.HopsString())
			}
			if want := `<h1 id="user">` + html.EscapeString(tc.user) + `</h1>`; !strings.Contains(p.Body, want) {
				t.Errorf("upstream page does not show the user %q:\n%s", tc.user, p.Body)
			}

			// The provider issued the tokens for this sub.
			s.Provider.WaitEvent(t, "grant.success", func(ev providerEvent) bool {
				return ev.String("sub") == tc.user && ev.String("client_id") == s.Client.ClientID
			})

			seen := s.Upstream.ByRequestURI(tc.pathQuery)
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests for %s, want 1; all: %+v", len(seen), tc.pathQuery, s.Upstream.Requests())
			}
			if got := seen[0].Header.Values("X-User"); !slices.Equal(got, []string{tc.user}) {
				t.Errorf("upstream X-User = %q, want [%q]", got, tc.user)
			}

			// The proxy sent the user to /auth/login with the page to come back to.
			login := b.FirstHop(func(u *url.URL) bool { return u.Host == s.Proxy.URL.Host && u.Path == "/auth/login" })
			if got := login.URL.Query().Get("rd"); got != tc.pathQuery {
				t.Errorf("/auth/login rd = %q, want %q", got, tc.pathQuery)
			}

			// The authorization request asked for a code with state, nonce and PKCE S256.
			authz := b.FirstHop(func(u *url.URL) bool { return u.Host == s.Provider.URL.Host && u.Path == "/authorize" })
			q := authz.URL.Query()
			checks := []struct{ param, got, want string }{
				{"response_type", q.Get("response_type"), "code"},
				{"client_id", q.Get("client_id"), s.Client.ClientID},
				{"redirect_uri", q.Get("redirect_uri"), s.Client.RedirectURIs[0]},
				{"code_challenge_method", q.Get("code_challenge_method"), "S256"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("authorize %s = %q, want %q", c.param, c.got, c.want)
				}
			}
			if !slices.Contains(strings.Fields(q.Get("scope")), "openid") {
				t.Errorf("authorize scope = %q, want it to include openid", q.Get("scope"))
			}
			if len(q.Get("code_challenge")) != 43 { // base64url of a SHA-256
				t.Errorf("authorize code_challenge = %q, want 43 characters", q.Get("code_challenge"))
			}
			for _, param := range []string{"state", "nonce"} {
				if len(q.Get(param)) < 16 {
					t.Errorf("authorize %s = %q, want an unguessable value", param, q.Get(param))
				}
			}
		})
	}
}

// TestUnauthenticated checks what the proxy answers without a session: a
// page load is sent to /auth/login with the page to come back to, anything
// else gets a 401 an API client can act on, and nothing reaches the upstream.
// Health endpoints answer without a session.
func TestUnauthenticated(t *testing.T) {
	s := newStack(t, stackOptions{})
	const pathQuery = "/private/report?id=42&fmt=html"

	fetchHTML := http.Header{
		"Accept":         {"text/html"},
		"Sec-Fetch-Mode": {"cors"},
		"Sec-Fetch-Dest": {"empty"},
		"Sec-Fetch-Site": {"same-origin"},
	}
	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
	}{
		{"page load", http.MethodGet, pathQuery, navigationHeaders(), http.StatusFound},
		{"page load, Accept only", http.MethodGet, pathQuery, http.Header{"Accept": {"text/html"}}, http.StatusFound},
		{"HEAD page load", http.MethodHead, pathQuery, navigationHeaders(), http.StatusFound},
		{"API call", http.MethodGet, pathQuery, apiHeaders(), http.StatusUnauthorized},
		{"curl", http.MethodGet, pathQuery, http.Header{"Accept": {"*/*"}}, http.StatusUnauthorized},
		{"fetch() accepting HTML", http.MethodGet, pathQuery, fetchHTML, http.StatusUnauthorized},
		{"form POST", http.MethodPost, pathQuery, navigationHeaders(), http.StatusUnauthorized},
		{"API DELETE", http.MethodDelete, pathQuery, apiHeaders(), http.StatusUnauthorized},
		{"healthz", http.MethodGet, "/healthz", apiHeaders(), http.StatusOK},
		{"readyz", http.MethodGet, "/readyz", apiHeaders(), http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t, s.PKI)
			var form url.Values
			if tc.method == http.MethodPost {
				form = url.Values{"field": {"value"}}
			}
			p := b.Do(tc.method, s.ProxyURL(tc.path), tc.header, form)
			if p.Status != tc.wantStatus {
				t.Fatalf("%s %s: status %d, want %d; body:\n%s", tc.method, tc.path, p.Status, tc.wantStatus, p.Body)
			}
			switch tc.wantStatus {
			case http.StatusFound:
				checkLoginRedirect(t, p, tc.path)
			case http.StatusUnauthorized:
				checkUnauthorized(t, p, tc.path)
			}
		})
	}
	if seen := s.Upstream.Requests(); len(seen) != 0 {
		t.Errorf("upstream saw %d requests without a session, want none: %+v", len(seen), seen)
	}
}

// checkLoginRedirect checks that p redirects to the proxy's /auth/login with
// rd = pathQuery.
func checkLoginRedirect(t *testing.T, p *page, pathQuery string) {
	t.Helper()
	loc, err := p.URL.Parse(p.Header.Get("Location"))
	if err != nil {
		t.Fatalf("bad Location %q: %v", p.Header.Get("Location"), err)
	}
	if loc.Host != p.URL.Host || loc.Path != "/auth/login" {
		t.Errorf("Location = %s, want %s/auth/login?rd=...", loc, p.URL.Host)
	}
	if got := loc.Query().Get("rd"); got != pathQuery {
		t.Errorf("Location rd = %q, want %q", got, pathQuery)
	}
}

// checkUnauthorized checks the 401 an API client gets: a Bearer challenge and
// a JSON body with the login URL.
func checkUnauthorized(t *testing.T, p *page, pathQuery string) {
	t.Helper()
	if got := p.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") || !strings.Contains(got, `realm="authproxy"`) {
		t.Errorf(`WWW-Authenticate = %q, want Bearer realm="authproxy"`, got)
	}
	if got := p.Header.Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var body struct {
		Error    string `json:"error"`
		LoginURL string `json:"login_url"`
	}
	if err := decodeJSON(p.Body, &body); err != nil {
		t.Fatalf("401 body is not JSON: %v\n%s", err, p.Body)
	}
	if body.Error != "unauthenticated" {
		t.Errorf(`401 body error = %q, want "unauthenticated"`, body.Error)
	}
	login, err := url.Parse(body.LoginURL)
	if err != nil || login.Path != "/auth/login" || login.Query().Get("rd") != pathQuery {
		t.Errorf("401 body login_url = %q, want /auth/login?rd=%s", body.LoginURL, url.QueryEscape(pathQuery))
	}
}
