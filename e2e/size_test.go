package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// maxCookieBytes is what browsers accept for one cookie's name and value
// (RFC 6265bis; Chromium and Firefox enforce it).
const maxCookieBytes = 4096

// manyGroups returns n group names made by format from 0..n-1.
func manyGroups(n int, format string) []string {
	groups := make([]string, n)
	for i := range groups {
		groups[i] = fmt.Sprintf(format, i)
	}
	return groups
}

// forgetProviderSession drops the cookies the provider set in b (its login
// session), as if it had expired, and keeps all others: cookies are not
// bound to a port, so the provider's, the proxy's and the app's all sit in
// the jar under 127.0.0.1.
func forgetProviderSession(b *browser, s *stack) {
	var expired []*http.Cookie
	for _, name := range b.CookiesSetBy(strings.TrimSuffix(s.Provider.Issuer, "/")) {
		expired = append(expired, &http.Cookie{Name: name, Path: "/", MaxAge: -1})
	}
	b.Jar.SetCookies(s.Provider.URL, expired)
}

// checkNoProxyCookies checks that a request the upstream saw carried none
// of the proxy's cookies, and the app's own cookie if want is not empty.
func checkNoProxyCookies(t *testing.T, seen seenRequest, wantAppCookie string) {
	t.Helper()
	req := &http.Request{Header: seen.Header}
	var names []string
	for _, c := range req.Cookies() {
		names = append(names, c.Name)
		if strings.HasPrefix(c.Name, "_authproxy") {
			t.Errorf("upstream got the proxy's cookie %s (%d bytes) with %s", c.Name, len(c.Value), seen.RequestURI)
		}
	}
	if wantAppCookie != "" && !slices.Contains(names, wantAppCookie) {
		t.Errorf("upstream got cookies %q with %s, want the app's %s kept", names, seen.RequestURI, wantAppCookie)
	}
}

// TestLargeSession logs in a user whose ID token carries 300 groups. The
// session (raw ID token for logout, plus the groups claim for X-Groups) is
// far over one cookie: the proxy splits it into numbered chunks, each
// within what a browser accepts, and joins them on every request; the
// upstream gets all the groups and none of the chunks. A later login as a
// user with a small token in the same browser expires every stale chunk,
// and logout clears a chunked session entirely.
//
// A session bigger than the chunks allow (200 GUID groups, Entra ID's
// ID-token limit) drops the raw ID token it keeps as a logout hint and
// fits. One too large even without it (900 GUID groups) cannot be stored in
// cookies: the login fails with a page naming the cause (session_too_large)
// and leaves no cookie behind.
func TestLargeSession(t *testing.T) {
	// 16-byte names: 300 of them fit the proxy's 8 chunks; 20-byte ones no
	// longer do (the ID token is kept whole, and the groups claim again).
	bigGroups := manyGroups(300, "eng-team-%03d-rw")
	guidGroups := manyGroups(200, "6f1c2a4e-9b7d-4c3f-8e21-%012d")
	hugeGroups := manyGroups(900, "6f1c2a4e-9b7d-4c3f-8e21-%012d")
	s := newCustomStack(t, customStackOptions{
		Provider: func(c *providerConfig) {
			c.Accounts = map[string]map[string]any{
				"bigbob": {"groups": bigGroups},
				"entra":  {"groups": guidGroups},
				"huge":   {"groups": hugeGroups},
				// sam has no groups: a small token.
			}
			// The browser sends the proxy's chunks to the provider too
			// (same host), over Node's 16 KiB default.
			c.MaxHeaderSize = 128 << 10
		},
		ProxyEnv: map[string]string{"AUTHPROXY_GROUPS_HEADER": "X-Groups"},
	})
	wantGroups := strings.Join(bigGroups, ",")

	// loginBig logs bigbob in with b and checks the chunked session.
	loginBig := func(t *testing.T, b *browser, pathQuery string) []*http.Cookie {
		t.Helper()
		if p := b.Login(s.ProxyURL(pathQuery), "bigbob"); p.Status != http.StatusOK || p.URL.String() != s.ProxyURL(pathQuery) {
			t.Fatalf("login as bigbob: landed on %d %s, want 200 %s; body:\n%s\nhops:\n%s",
				p.Status, p.URL, s.ProxyURL(pathQuery), p.Body, b.HopsString())
		}
		chunks := sessionCookies(b, s)
		var names []string
		total := 0
		for i, c := range chunks {
			names = append(names, c.Name)
			total += len(c.Value)
			if want := fmt.Sprintf("_authproxy_%d", i); c.Name != want {
				t.Errorf("session cookie %d is %s, want %s", i, c.Name, want)
			}
			if n := len(c.Name) + len(c.Value); n > maxCookieBytes {
				t.Errorf("%s: name and value are %d bytes, over the %d browsers accept", c.Name, n, maxCookieBytes)
			}
		}
		if len(chunks) < 2 {
			t.Fatalf("bigbob's session is in cookies %q, want numbered chunks _authproxy_0, _authproxy_1, ...", names)
		}
		var sizes []int
		for _, c := range chunks {
			sizes = append(sizes, len(c.Name)+len(c.Value))
		}
		t.Logf("bigbob's session: %d chunks, %d bytes of values; name+value per chunk: %v", len(chunks), total, sizes)
		return chunks
	}

	t.Run("chunks, then a small session", func(t *testing.T) {
		b := newBrowser(t, s.PKI)
		chunks := loginBig(t, b, "/big?x=1")
		// The app's own cookie goes through; the proxy's do not.
		b.Jar.SetCookies(s.Proxy.URL, []*http.Cookie{{Name: "app_pref", Value: "dark", Path: "/"}})

		for i, h := range []http.Header{navigationHeaders(), apiHeaders(), apiHeaders()} {
			pathQuery := fmt.Sprintf("/big/%d", i)
			if p := b.Do(http.MethodGet, s.ProxyURL(pathQuery), h, nil); p.Status != http.StatusOK {
				t.Fatalf("GET %s with the chunked session: status %d, want 200; body:\n%s", pathQuery, p.Status, p.Body)
			}
		}
		for _, pathQuery := range []string{"/big?x=1", "/big/0", "/big/1", "/big/2"} {
			seen := s.Upstream.ByRequestURI(pathQuery)
			if len(seen) != 1 {
				t.Errorf("upstream saw %d requests for %s, want 1", len(seen), pathQuery)
				continue
			}
			if got := seen[0].Header.Values("X-User"); !slices.Equal(got, []string{"bigbob"}) {
				t.Errorf("upstream X-User for %s = %q, want [bigbob]", pathQuery, got)
			}
			if got := seen[0].Header.Values("X-Groups"); len(got) != 1 || got[0] != wantGroups {
				n := 0
				if len(got) == 1 {
					n = len(strings.Split(got[0], ","))
				}
				t.Errorf("upstream X-Groups for %s: %d values, %d groups, want the %d groups in one value", pathQuery, len(got), n, len(bigGroups))
			}
			appCookie := "app_pref" // set after the landing page
			if pathQuery == "/big?x=1" {
				appCookie = ""
			}
			checkNoProxyCookies(t, seen[0], appCookie)
		}

		// sam logs in in the same browser (bigbob's provider session has
		// ended): the callback expires every chunk.
		forgetProviderSession(b, s)
		p := b.Login(s.ProxyURL("/auth/login?rd=/small"), "sam")
		if p.Status != http.StatusOK || p.URL.String() != s.ProxyURL("/small") {
			t.Fatalf("login as sam: landed on %d %s, want 200 %s; hops:\n%s", p.Status, p.URL, s.ProxyURL("/small"), b.HopsString())
		}
		if got := cookieNames(sessionCookies(b, s)); !slices.Equal(got, []string{"_authproxy"}) {
			t.Errorf("after sam's login the browser holds %q, want only _authproxy (bigbob had %d chunks)", got, len(chunks))
		}
		seen := s.Upstream.ByRequestURI("/small")
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d requests for /small, want 1", len(seen))
		}
		if got := seen[0].Header.Values("X-User"); !slices.Equal(got, []string{"sam"}) {
			t.Errorf("upstream X-User for /small = %q, want [sam]", got)
		}
		if got := seen[0].Header.Values("X-Groups"); len(got) != 0 {
			t.Errorf("upstream X-Groups for sam = %d values, want none", len(got))
		}
		checkNoProxyCookies(t, seen[0], "app_pref")

		logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
		if !isRedirect(logout.Status) {
			t.Fatalf("GET /auth/logout: status %d, want a redirect", logout.Status)
		}
		if got := sessionCookies(b, s); len(got) != 0 {
			t.Errorf("after logout the browser holds %q, want no session cookie", cookieNames(got))
		}
	})

	t.Run("logout clears the chunks", func(t *testing.T) {
		b := newBrowser(t, s.PKI)
		loginBig(t, b, "/big-again")
		logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
		if !isRedirect(logout.Status) {
			t.Fatalf("GET /auth/logout: status %d, want a redirect", logout.Status)
		}
		if got := sessionCookies(b, s); len(got) != 0 {
			t.Errorf("after logout the browser holds %q, want no session cookie", cookieNames(got))
		}
		t.Logf("logout redirect to the provider: %d bytes (the ID token as id_token_hint)", len(logout.Header.Get("Location")))
		if p := b.Do(http.MethodGet, s.ProxyURL("/after-logout"), apiHeaders(), nil); p.Status != http.StatusUnauthorized {
			t.Errorf("API call after logout: status %d, want 401", p.Status)
		}
	})

	t.Run("fits without the logout hint", func(t *testing.T) {
		b := newBrowser(t, s.PKI)
		if p := b.Login(s.ProxyURL("/entra"), "entra"); p.Status != http.StatusOK {
			t.Fatalf("login with %d GUID groups: landed on %d %s", len(guidGroups), p.Status, p.URL)
		}
		got := s.Upstream.ByPath("/entra")
		if len(got) != 1 || len(strings.Split(got[0].Header.Get("X-Groups"), ",")) != len(guidGroups) {
			t.Errorf("upstream saw %d requests for /entra, want 1 with all %d groups", len(got), len(guidGroups))
		}
		logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
		loc, _ := url.Parse(logout.Header.Get("Location"))
		if !isRedirect(logout.Status) || loc == nil || loc.Query().Get("id_token_hint") != "" || loc.Query().Get("client_id") == "" {
			t.Errorf("logout: %d to %v, want the provider's end-session with client_id and no id_token_hint", logout.Status, loc)
		}
	})

	t.Run("too large even without the logout hint", func(t *testing.T) {
		b := newBrowser(t, s.PKI)
		p := b.Login(s.ProxyURL("/huge"), "huge")
		if p.Status != http.StatusInternalServerError || !strings.Contains(p.Body, "session_too_large") {
			t.Errorf("login with %d GUID groups: landed on %d %s, want the session_too_large page", len(hugeGroups), p.Status, p.URL)
		}
		if got := sessionCookies(b, s); len(got) != 0 {
			t.Errorf("the failed login left %q in the browser, want no session cookie", cookieNames(got))
		}
		if got := s.Upstream.ByPath("/huge"); len(got) != 0 {
			t.Errorf("upstream saw %d requests for /huge, want none", len(got))
		}
	})
}
