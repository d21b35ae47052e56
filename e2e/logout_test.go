package e2e

import (
	"net/http"
	"testing"
)

// TestLogout logs in, logs out through the proxy and follows the browser to
// the provider's end-session endpoint and back to the post-logout page: the
// proxy's session is gone, the provider accepted the id_token_hint, and the
// provider's own session ended too.
func TestLogout(t *testing.T) {
	s := newStack(t, stackOptions{})
	b := newBrowser(t, s.PKI)
	const user = "dave"

	if p := b.Login(s.ProxyURL("/before-logout"), user); p.Status != http.StatusOK {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	if got := s.Upstream.ByRequestURI("/before-logout"); len(got) != 1 || got[0].Header.Get("X-User") != user {
		t.Fatalf("before logout, upstream saw %+v, want one request with X-User %q", got, user)
	}

	logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
	if !isRedirect(logout.Status) {
		t.Fatalf("GET /auth/logout: status %d, want a redirect to the provider; body:\n%s", logout.Status, logout.Body)
	}
	endSession, err := logout.URL.Parse(logout.Header.Get("Location"))
	if err != nil {
		t.Fatalf("GET /auth/logout: bad Location %q: %v", logout.Header.Get("Location"), err)
	}
	// server.mjs puts end_session at Auth0's /oidc/logout.
	if got, want := endSession.Scheme+"://"+endSession.Host+endSession.Path, s.Provider.Issuer+"oidc/logout"; got != want {
		t.Errorf("logout redirects to %s, want the end_session_endpoint %s", got, want)
	}
	q := endSession.Query()
	if got, want := q.Get("post_logout_redirect_uri"), s.Client.PostLogoutRedirectURIs[0]; got != want {
		t.Errorf("post_logout_redirect_uri = %q, want %q", got, want)
	}
	if got := q.Get("client_id"); got != s.Client.ClientID {
		t.Errorf("client_id = %q, want %q", got, s.Client.ClientID)
	}
	claims, err := jwtClaims(q.Get("id_token_hint"))
	if err != nil {
		t.Fatalf("id_token_hint %q: %v", q.Get("id_token_hint"), err)
	}
	if claims["sub"] != user || claims["iss"] != s.Provider.Issuer || !audienceIs(claims["aud"], s.Client.ClientID) {
		t.Errorf("id_token_hint claims sub=%v iss=%v aud=%v, want %q, %q, %q",
			claims["sub"], claims["iss"], claims["aud"], user, s.Provider.Issuer, s.Client.ClientID)
	}

	// The proxy's session is gone, before the provider is even reached.
	if p := b.Do(http.MethodGet, s.ProxyURL("/after-logout"), navigationHeaders(), nil); p.Status != http.StatusFound {
		t.Errorf("page load after logout: status %d, want 302 to /auth/login", p.Status)
	} else {
		checkLoginRedirect(t, p, "/after-logout")
	}
	if p := b.Do(http.MethodGet, s.ProxyURL("/after-logout"), apiHeaders(), nil); p.Status != http.StatusUnauthorized {
		t.Errorf("API call after logout: status %d, want 401", p.Status)
	}
	if got := s.Upstream.ByPath("/after-logout"); len(got) != 0 {
		t.Errorf("upstream saw %d requests after logout, want none", len(got))
	}

	// The provider validates the hint and asks the user to confirm.
	confirm := b.Follow(logout)
	ev := s.Provider.WaitEvent(t, "end_session", nil)
	if ev["id_token_hint"] != true || ev.String("id_token_hint_sub") != user || ev["status"] != float64(http.StatusOK) {
		t.Errorf("provider's end_session saw %v, want a valid id_token_hint for %q and status 200", ev, user)
	}
	f, ok := findForm(confirm, func(f form) bool { return f.ID == "op.logoutForm" })
	if !ok {
		t.Fatalf("no logout confirmation at %s (status %d):\n%s", confirm.URL, confirm.Status, confirm.Body)
	}
	fields := cloneValues(f.Fields)
	fields.Set("logout", "yes") // the "Yes, sign me out" button
	landed := b.Submit(confirm, f, fields)

	landedAt := landed.URL.Scheme + "://" + landed.URL.Host + landed.URL.Path
	if landed.Status != http.StatusOK || landedAt != s.Client.PostLogoutRedirectURIs[0] {
		t.Errorf("after the provider's logout, landed on %d %s, want 200 %s; hops:\n%s",
			landed.Status, landed.URL, s.Client.PostLogoutRedirectURIs[0], b.HopsString())
	}
	if got := s.Landing.ByPath("/signed-out"); len(got) != 1 {
		t.Errorf("post-logout page saw %d requests, want 1", len(got))
	}
	s.Provider.WaitEvent(t, "end_session.success", nil)

	// The provider's session ended too: logging in again asks for the login form.
	again := b.Navigate(s.ProxyURL("/again"))
	if _, ok := findForm(again, providerForm("login")); !ok {
		t.Errorf("after logout, opening a page did not reach the provider's login form; landed on %d %s; hops:\n%s",
			again.Status, again.URL, b.HopsString())
	}
}

// audienceIs reports whether an aud claim (string or array) is exactly id.
func audienceIs(aud any, id string) bool {
	switch a := aud.(type) {
	case string:
		return a == id
	case []any:
		return len(a) == 1 && a[0] == id
	}
	return false
}
