package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// offlineScopes asks for a refresh token; authproxy then adds
// prompt=consent, which oidc-provider requires before it grants
// offline_access.
const offlineScopes = "openid profile email offline_access"

// newRefreshStack starts a stack whose client may use refresh tokens, with
// the given provider lifetimes (seconds). The provider rotates refresh
// tokens on every use (so a token used twice revokes its grant), accepts
// expired tokens for 1 s only, logs every request, and has the test-only
// admin endpoint.
func newRefreshStack(t *testing.T, ttl map[string]int, env map[string]string) *stack {
	t.Helper()
	proxyEnv := map[string]string{"AUTHPROXY_SCOPES": offlineScopes}
	for k, v := range env {
		proxyEnv[k] = v
	}
	return newCustomStack(t, customStackOptions{
		Provider: func(c *providerConfig) {
			c.TTL = ttl
			c.Clients[0].GrantTypes = []string{"authorization_code", "refresh_token"}
			c.RotateRefreshToken = true
			c.Admin = true
			c.LogRequests = true
			c.ClockTolerance = 1 // not 15 s: the provider refuses expired access tokens promptly
		},
		ProxyEnv: proxyEnv,
	})
}

// grantCounts is what the provider's token endpoint did so far.
type grantCounts struct {
	Code           int // authorization_code grants issued
	Refresh        int // refresh_token grants issued
	Rotated        int // of which rotated the refresh token
	RefreshRefused int // refresh_token grants refused
	TokenRequests  int // POST /oauth/token, whatever the outcome
}

func (p *provider) grantCounts() grantCounts {
	var c grantCounts
	for _, ev := range p.Events("grant.success") {
		switch ev.String("grant_type") {
		case "authorization_code":
			c.Code++
		case "refresh_token":
			c.Refresh++
			if ev["rotated"] == true {
				c.Rotated++
			}
		}
	}
	for _, ev := range p.Events("grant.error") {
		if ev.String("grant_type") == "refresh_token" {
			c.RefreshRefused++
		}
	}
	for _, ev := range p.Events("request") {
		if ev.String("method") == http.MethodPost && ev.String("path") == "/oauth/token" {
			c.TokenRequests++
		}
	}
	return c
}

// waitGrants fails t unless the provider's counts equal want once every
// request answered so far has been read from its output (provider.Mark):
// an extra grant that is slow to reach the suite counts too.
func waitGrants(t *testing.T, p *provider, what string, want grantCounts) {
	t.Helper()
	p.Mark(t)
	if got := p.grantCounts(); got != want {
		t.Fatalf("%s: provider's token endpoint counts %+v, want %+v", what, got, want)
	}
}

// sessionCookies returns the proxy's session cookies (whole or chunks) that
// b would send to the proxy. The jar also returns the provider's cookies:
// cookies are not bound to a port.
func sessionCookies(b *browser, s *stack) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range b.Jar.Cookies(s.Proxy.URL) {
		if c.Name == "_authproxy" || strings.HasPrefix(c.Name, "_authproxy_") && !strings.HasPrefix(c.Name, "_authproxy_login_") {
			out = append(out, c)
		}
	}
	return out
}

func cookieNames(cs []*http.Cookie) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// answer is what rawGet got back.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

// setsSession reports whether the answer saved a session (a live
// _authproxy or _authproxy_N cookie).
func (a answer) setsSession() bool {
	for _, c := range (&http.Response{Header: a.Header}).Cookies() {
		if (c.Name == "_authproxy" || strings.HasPrefix(c.Name, "_authproxy_")) && c.MaxAge > 0 && c.Value != "" {
			return true
		}
	}
	return false
}

// clearsSession reports whether the answer expired the _authproxy cookie.
func (a answer) clearsSession() bool {
	for _, c := range (&http.Response{Header: a.Header}).Cookies() {
		if c.Name == "_authproxy" && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

// rawClient sends requests without a jar and without following redirects;
// safe for concurrent use, unlike browser. Its timeout only bounds a hang.
func rawClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       hangTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// rawGet sends GET rawURL with exactly these cookies and headers. It
// returns an error rather than failing t, so goroutines may call it.
func rawGet(c *http.Client, rawURL string, cookies []*http.Cookie, header http.Header) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = append([]string(nil), v...)
	}
	for _, ck := range cookies {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, fmt.Errorf("GET %s: read body: %w", rawURL, err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, nil
}

// checkServedAs checks that the upstream saw exactly one request for
// pathQuery, as user.
func checkServedAs(t *testing.T, s *stack, pathQuery, user string) {
	t.Helper()
	seen := s.Upstream.ByRequestURI(pathQuery)
	if len(seen) != 1 {
		t.Errorf("upstream saw %d requests for %s, want 1", len(seen), pathQuery)
		return
	}
	if got := seen[0].Header.Values("X-User"); len(got) != 1 || got[0] != user {
		t.Errorf("upstream X-User for %s = %q, want [%q]", pathQuery, got, user)
	}
}

// TestRefreshOutlivesIDToken runs a session past the expiry of the ID token
// it logged in with, on refresh tokens that oidc-provider rotates on every
// use. ID and access tokens live 15 s, inside authproxy's one-minute
// refresh margin, so every request that carries a not yet refreshed token
// refreshes it: the count of refresh grants at the provider is exact.
//
// Sequential requests each refresh once and the browser's cookie follows.
// Twenty concurrent requests carrying one cookie refresh once. Requests
// that still carry the pre-refresh cookie afterwards are served without a
// second grant: had the proxy sent the consumed token again, oidc-provider
// would have revoked the grant, and the next refresh with the new token
// would fail. It succeeds, after the first ID token has expired, and the
// ID token the cookie now carries (logout's id_token_hint) is a later one.
func TestRefreshOutlivesIDToken(t *testing.T) {
	const tokenTTL = 15
	s := newRefreshStack(t, map[string]int{"IdToken": tokenTTL, "AccessToken": tokenTTL}, nil)
	const user = "rita"
	b := newBrowser(t, s.PKI)
	raw := rawClient(t)

	// The login grants offline_access at the consent screen; the landing
	// request already refreshes (the new tokens expire within the margin).
	if p := b.Login(s.ProxyURL("/start"), user); p.Status != http.StatusOK || p.URL.String() != s.ProxyURL("/start") {
		t.Fatalf("login: landed on %d %s, want 200 %s; hops:\n%s", p.Status, p.URL, s.ProxyURL("/start"), b.HopsString())
	}
	loggedIn := time.Now()
	firstIDTokenExpired := loggedIn.Add(tokenTTL*time.Second + time.Second)
	auth := b.FirstHop(func(u *url.URL) bool { return u.Path == "/authorize" })
	if q := auth.URL.Query(); q.Get("prompt") != "consent" || !strings.Contains(q.Get("scope"), "offline_access") {
		t.Errorf("authorize request scope=%q prompt=%q, want offline_access with prompt=consent", q.Get("scope"), q.Get("prompt"))
	}
	checkServedAs(t, s, "/start", user)
	want := grantCounts{Code: 1, Refresh: 1, Rotated: 1, TokenRequests: 2}
	waitGrants(t, s.Provider, "login and landing", want)

	// Sequential page loads: one refresh each, and a new cookie each time.
	for i := range 3 {
		time.Sleep(500 * time.Millisecond)
		pathQuery := fmt.Sprintf("/seq/%d", i)
		p := b.Do(http.MethodGet, s.ProxyURL(pathQuery), navigationHeaders(), nil)
		if p.Status != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200; body:\n%s", pathQuery, p.Status, p.Body)
		}
		if !(answer{Header: p.Header}).setsSession() {
			t.Errorf("GET %s refreshed the tokens but set no session cookie; Set-Cookie: %q", pathQuery, p.Header.Values("Set-Cookie"))
		}
		checkServedAs(t, s, pathQuery, user)
		want.Refresh++
		want.Rotated++
		want.TokenRequests++
		waitGrants(t, s.Provider, "GET "+pathQuery, want)
	}

	// Twenty requests at once with the same cookie: one refresh.
	before := sessionCookies(b, s)
	if len(before) == 0 {
		t.Fatalf("the browser holds no session cookie; jar: %v", b.Jar.Cookies(s.Proxy.URL))
	}
	const burst = 20
	answers := make([]answer, burst)
	errs := make([]error, burst)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i], errs[i] = rawGet(raw, s.ProxyURL(fmt.Sprintf("/burst/%d", i)), before, apiHeaders())
		}()
	}
	close(start)
	wg.Wait()
	var after []*http.Cookie
	for i := range burst {
		if errs[i] != nil {
			t.Fatalf("burst request %d: %v", i, errs[i])
		}
		a := answers[i]
		if a.Status != http.StatusOK {
			t.Errorf("burst request %d: status %d, want 200; body:\n%s", i, a.Status, a.Body)
			continue
		}
		if !a.setsSession() {
			t.Errorf("burst request %d: no refreshed session cookie; Set-Cookie: %q", i, a.Header.Values("Set-Cookie"))
		} else if after == nil {
			after = (&http.Response{Header: a.Header}).Cookies()
		}
		checkServedAs(t, s, fmt.Sprintf("/burst/%d", i), user)
	}
	want.Refresh++
	want.Rotated++
	want.TokenRequests++
	waitGrants(t, s.Provider, fmt.Sprintf("%d concurrent requests with one cookie", burst), want)
	if t.Failed() {
		t.FailNow()
	}
	// The browser keeps what the proxy answered.
	b.Jar.SetCookies(s.Proxy.URL, after)

	// Late requests with the pre-refresh cookie: served, no second grant.
	for i := range 5 {
		pathQuery := fmt.Sprintf("/late/%d", i)
		a, err := rawGet(raw, s.ProxyURL(pathQuery), before, apiHeaders())
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != http.StatusOK {
			t.Errorf("GET %s with the pre-refresh cookie: status %d, want 200; body:\n%s", pathQuery, a.Status, a.Body)
			continue
		}
		checkServedAs(t, s, pathQuery, user)
		time.Sleep(100 * time.Millisecond)
	}
	waitGrants(t, s.Provider, "late requests with the pre-refresh cookie", want)

	// Past the first ID token's expiry, the session works on, with a
	// refresh that the provider accepts: the rotated family is intact.
	time.Sleep(time.Until(firstIDTokenExpired))
	p := b.Do(http.MethodGet, s.ProxyURL("/after-expiry"), navigationHeaders(), nil)
	if p.Status != http.StatusOK {
		t.Fatalf("GET /after-expiry, %s after login: status %d, want 200; Location %q; body:\n%s",
			time.Since(loggedIn).Round(time.Second), p.Status, p.Header.Get("Location"), p.Body)
	}
	checkServedAs(t, s, "/after-expiry", user)
	want.Refresh++
	want.Rotated++
	want.TokenRequests++
	waitGrants(t, s.Provider, "after the first ID token expired", want)

	// The cookie carries an ID token issued after the login's.
	logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
	loc, err := url.Parse(logout.Header.Get("Location"))
	if err != nil || !isRedirect(logout.Status) {
		t.Fatalf("GET /auth/logout: status %d, Location %q", logout.Status, logout.Header.Get("Location"))
	}
	claims, err := jwtClaims(loc.Query().Get("id_token_hint"))
	if err != nil {
		t.Fatalf("logout id_token_hint: %v", err)
	}
	exp, _ := claims["exp"].(float64)
	if got := time.Unix(int64(exp), 0); !got.After(firstIDTokenExpired) {
		t.Errorf("the session's ID token expires at %s, want after the login's ID token (%s): the cookie was not updated",
			got.Format(time.TimeOnly), firstIDTokenExpired.Format(time.TimeOnly))
	}
	if claims["sub"] != user {
		t.Errorf("the session's ID token names %v, want %q", claims["sub"], user)
	}
	t.Logf("%d refresh grants (all rotated), %d refused, %d token requests in %s",
		want.Refresh, want.RefreshRefused, want.TokenRequests, time.Since(loggedIn).Round(100*time.Millisecond))
}

// TestRefreshWaitsForMargin checks the other side: tokens with more than a
// minute to live are not refreshed, and they are once inside the minute.
func TestRefreshWaitsForMargin(t *testing.T) {
	// The margin is 60 s: refreshes start 10 s after login, time enough
	// for the login and the early requests on a loaded machine.
	const tokenTTL = 70
	s := newRefreshStack(t, map[string]int{"IdToken": tokenTTL, "AccessToken": tokenTTL}, nil)
	const user = "molly"
	b := newBrowser(t, s.PKI)
	loginStarted := time.Now()
	if p := b.Login(s.ProxyURL("/start"), user); p.Status != http.StatusOK {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	for i := range 3 {
		pathQuery := fmt.Sprintf("/early/%d", i)
		if p := b.Do(http.MethodGet, s.ProxyURL(pathQuery), navigationHeaders(), nil); p.Status != http.StatusOK {
			t.Fatalf("GET %s: status %d", pathQuery, p.Status)
		}
		checkServedAs(t, s, pathQuery, user)
	}
	if time.Since(loginStarted) >= (tokenTTL-60)*time.Second {
		t.Skipf("login and early requests took %s: too slow to tell the margin", time.Since(loginStarted))
	}
	waitGrants(t, s.Provider, "early requests", grantCounts{Code: 1, TokenRequests: 1})

	// The login's tokens expire at most tokenTTL after loginStarted; 1 s
	// more and they are inside the margin for sure.
	time.Sleep(time.Until(loginStarted.Add((tokenTTL-60+1)*time.Second + 500*time.Millisecond)))
	for i := range 3 {
		pathQuery := fmt.Sprintf("/late/%d", i)
		if p := b.Do(http.MethodGet, s.ProxyURL(pathQuery), navigationHeaders(), nil); p.Status != http.StatusOK {
			t.Fatalf("GET %s: status %d", pathQuery, p.Status)
		}
		checkServedAs(t, s, pathQuery, user)
	}
	// One refresh; the new tokens have tokenTTL to live again.
	waitGrants(t, s.Provider, "requests inside the margin", grantCounts{Code: 1, Refresh: 1, Rotated: 1, TokenRequests: 2})
}

// revokeGrants revokes every grant of user at the provider, through
// server.mjs's test-only admin endpoint, and returns how many there were.
func revokeGrants(t *testing.T, s *stack, user string) int {
	t.Helper()
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: s.PKI.TLSConfig()}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(s.Provider.Issuer+"e2e/revoke-grants?sub="+url.QueryEscape(user), "text/plain", nil)
	if err != nil {
		t.Fatalf("revoke grants: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Grants int `json:"grants"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke grants: status %d, decode: %v", resp.StatusCode, err)
	}
	return out.Grants
}

// TestRevokedRefreshTokenEndsSession revokes the user's grant at the
// provider, as an admin would. The next refresh is refused and ends the
// session: the browser's page load is sent to log in and its cookie is
// cleared; an API call that still carries the old cookie gets 401, without
// a second call to the provider. Logging in again works; after a second
// revocation an API call that is the first to refresh gets 401 too.
func TestRevokedRefreshTokenEndsSession(t *testing.T) {
	s := newRefreshStack(t, map[string]int{"IdToken": 15, "AccessToken": 15}, nil)
	const user = "victor"
	b := newBrowser(t, s.PKI)
	raw := rawClient(t)

	if p := b.Login(s.ProxyURL("/start"), user); p.Status != http.StatusOK || p.URL.String() != s.ProxyURL("/start") {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	if p := b.Do(http.MethodGet, s.ProxyURL("/before"), navigationHeaders(), nil); p.Status != http.StatusOK {
		t.Fatalf("GET /before: status %d, want 200", p.Status)
	}
	checkServedAs(t, s, "/before", user)
	want := grantCounts{Code: 1, Refresh: 2, Rotated: 2, TokenRequests: 3}
	waitGrants(t, s.Provider, "login, landing and one page", want)

	old := sessionCookies(b, s)
	if n := revokeGrants(t, s, user); n != 1 {
		t.Errorf("the provider revoked %d grants of %q, want 1", n, user)
	}

	// The browser: sent to log in, cookie cleared.
	p := b.Do(http.MethodGet, s.ProxyURL("/after-revoke?x=1"), navigationHeaders(), nil)
	if p.Status != http.StatusFound {
		t.Fatalf("page load after revocation: status %d, want 302 to /auth/login; body:\n%s", p.Status, p.Body)
	}
	checkLoginRedirect(t, p, "/after-revoke?x=1")
	if !(answer{Header: p.Header}).clearsSession() {
		t.Errorf("page load after revocation: the session cookie was not expired; Set-Cookie: %q", p.Header.Values("Set-Cookie"))
	}
	if got := sessionCookies(b, s); len(got) != 0 {
		t.Errorf("after revocation the browser still holds %v", cookieNames(got))
	}
	want.RefreshRefused++
	want.TokenRequests++
	waitGrants(t, s.Provider, "the refresh after revocation", want)

	// An API client with the old cookie: 401, no second refresh attempt.
	a, err := rawGet(raw, s.ProxyURL("/api/after-revoke"), old, apiHeaders())
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusUnauthorized {
		t.Fatalf("API call with the revoked session's cookie: status %d, want 401; body:\n%s", a.Status, a.Body)
	}
	checkUnauthorized(t, &page{Status: a.Status, Header: a.Header, Body: a.Body}, "/api/after-revoke")
	if !a.clearsSession() {
		t.Errorf("API call with the revoked session's cookie: the cookie was not expired; Set-Cookie: %q", a.Header.Values("Set-Cookie"))
	}
	waitGrants(t, s.Provider, "an API call with the old cookie", want)
	for _, path := range []string{"/after-revoke", "/api/after-revoke"} {
		if got := s.Upstream.ByPath(path); len(got) != 0 {
			t.Errorf("upstream saw %d requests for %s after revocation, want none", len(got), path)
		}
	}

	// Logging in again gives a new grant and a working session.
	if p := b.Login(s.ProxyURL("/again"), user); p.Status != http.StatusOK || p.URL.String() != s.ProxyURL("/again") {
		t.Fatalf("login again: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	checkServedAs(t, s, "/again", user)
	want.Code++
	want.Refresh++
	want.Rotated++
	want.TokenRequests += 2
	waitGrants(t, s.Provider, "login again", want)

	// Revoked again, and this time an API call is the first to find out.
	if n := revokeGrants(t, s, user); n != 1 {
		t.Errorf("the provider revoked %d grants of %q, want 1", n, user)
	}
	a, err = rawGet(raw, s.ProxyURL("/api/first"), sessionCookies(b, s), apiHeaders())
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusUnauthorized {
		t.Fatalf("first API call after the second revocation: status %d, want 401; body:\n%s", a.Status, a.Body)
	}
	checkUnauthorized(t, &page{Status: a.Status, Header: a.Header, Body: a.Body}, "/api/first")
	if !a.clearsSession() {
		t.Errorf("first API call after the second revocation: the cookie was not expired; Set-Cookie: %q", a.Header.Values("Set-Cookie"))
	}
	if got := s.Upstream.ByPath("/api/first"); len(got) != 0 {
		t.Errorf("upstream saw %d requests for /api/first, want none", len(got))
	}
	want.RefreshRefused++
	want.TokenRequests++
	waitGrants(t, s.Provider, "the first API call after the second revocation", want)
}

// userinfoStatus asks the provider's userinfo endpoint about an access
// token: 200 while it is valid, 401 once it expired or was revoked.
func userinfoStatus(t *testing.T, s *stack, accessToken string) int {
	t.Helper()
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: s.PKI.TLSConfig()}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, s.Provider.Issuer+"userinfo", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRefreshKeepsAccessTokenFresh forwards the access token to the
// upstream (AUTHPROXY_ACCESS_TOKEN_HEADER) when it lives shorter (15 s)
// than the ID token (1 h). The access token is inside the refresh margin
// from the start, so every request must refresh it, and the upstream must
// never receive one that the provider no longer accepts.
func TestRefreshKeepsAccessTokenFresh(t *testing.T) {
	const accessTTL = 15
	s := newRefreshStack(t, map[string]int{"IdToken": 3600, "AccessToken": accessTTL},
		map[string]string{"AUTHPROXY_ACCESS_TOKEN_HEADER": "X-Access-Token"})
	const user = "ada"
	b := newBrowser(t, s.PKI)
	if p := b.Login(s.ProxyURL("/start"), user); p.Status != http.StatusOK {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	loggedIn := time.Now()
	waitGrants(t, s.Provider, "login and landing", grantCounts{Code: 1, Refresh: 1, Rotated: 1, TokenRequests: 2})

	if p := b.Do(http.MethodGet, s.ProxyURL("/second"), navigationHeaders(), nil); p.Status != http.StatusOK {
		t.Fatalf("GET /second: status %d", p.Status)
	}
	s.Provider.Mark(t) // the provider's events of /second are read
	got := s.Provider.grantCounts()
	if got.Refresh != 2 {
		t.Errorf("GET /second with an access token expiring in under %d s: %d refresh grants in all, want 2 (one more): "+
			"after a refresh the session's token expiry follows the new ID token (1 h), not the access token", accessTTL, got.Refresh)
	}

	if seen := s.Upstream.ByPath("/second"); len(seen) != 1 || userinfoStatus(t, s, seen[0].Header.Get("X-Access-Token")) != http.StatusOK {
		t.Fatalf("the access token the upstream got for /second is not one the provider accepts")
	}

	// Past the expiry of every access token issued so far, and the
	// provider's 1 s tolerance.
	time.Sleep(time.Until(loggedIn.Add((accessTTL + 2) * time.Second)))
	if p := b.Do(http.MethodGet, s.ProxyURL("/late"), navigationHeaders(), nil); p.Status != http.StatusOK {
		t.Fatalf("GET /late: status %d", p.Status)
	}
	seen := s.Upstream.ByPath("/late")
	if len(seen) != 1 || seen[0].Header.Get("X-Access-Token") == "" {
		t.Fatalf("upstream saw %d requests for /late, want 1 with X-Access-Token", len(seen))
	}
	if st := userinfoStatus(t, s, seen[0].Header.Get("X-Access-Token")); st != http.StatusOK {
		t.Errorf("the access token the upstream got %s after login: the provider's userinfo answers %d, want 200 (a live token)",
			time.Since(loggedIn).Round(time.Second), st)
	}
}
