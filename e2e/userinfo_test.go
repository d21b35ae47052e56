package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// userinfo is GET /auth/userinfo's body.
type userinfo struct {
	User      string   `json:"user"`
	Sub       string   `json:"sub"`
	Email     string   `json:"email"`
	Name      string   `json:"name"`
	Groups    []string `json:"groups"`
	ExpiresAt string   `json:"expires_at"`
	Auth      string   `json:"auth"`
}

// TestUserinfo asks the proxy who is logged in, as a single-page app's
// fetch('/auth/userinfo') does: before the login a 401 JSON (also for a
// page load: no redirect), after it the provider's sub, email, name and
// groups with the session's expiry, for a bearer token the token's user and
// expiry, after logout a 401 again. Every answer is no-store and nosniff
// JSON, carries no token, and none reaches the upstream.
func TestUserinfo(t *testing.T) {
	machine := providerClient{
		ClientID:                "e2e-userinfo-machine",
		ClientSecret:            newCookieSecret(t),
		GrantTypes:              []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	const lifetime = 3 * time.Hour
	s := newCustomStack(t, customStackOptions{
		Provider: func(c *providerConfig) {
			c.Clients = append(c.Clients, machine)
			c.Features.ClientCredentials = true
			c.ResourceServers = map[string]providerResourceServer{apiAudience: {}}
			c.Accounts = map[string]map[string]any{"ann": {"name": "Ann Example", "groups": []string{"admins", "staff"}}}
		},
		ProxyEnv: map[string]string{
			"AUTHPROXY_AUDIENCE":         apiAudience,
			"AUTHPROXY_GROUPS_HEADER":    "X-Groups", // keeps the groups claim in the session
			"AUTHPROXY_SESSION_LIFETIME": lifetime.String(),
		},
	})
	userinfoURL := s.ProxyURL("/auth/userinfo")
	// What fetch('/auth/userinfo') sends from a page on the proxy's origin.
	fetch := func() http.Header {
		h := apiHeaders()
		h.Set("Sec-Fetch-Mode", "cors")
		h.Set("Sec-Fetch-Dest", "empty")
		h.Set("Sec-Fetch-Site", "same-origin")
		return h
	}
	check := func(t *testing.T, pg *page, status int) {
		t.Helper()
		if pg.Status != status {
			t.Fatalf("GET /auth/userinfo: %d, want %d\n%s", pg.Status, status, pg.Body)
		}
		for h, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Content-Type": "application/json"} {
			if got := pg.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		// A JWT (ID, access or refresh token) starts with a base64 "{".
		if strings.Contains(pg.Body, "eyJ") {
			t.Errorf("body holds a token:\n%s", pg.Body)
		}
	}

	b := newBrowser(t, s.PKI)
	for _, h := range []http.Header{fetch(), navigationHeaders()} {
		pg := b.Do(http.MethodGet, userinfoURL, h, nil)
		check(t, pg, http.StatusUnauthorized)
		checkUnauthorized(t, pg, "/")
	}

	loginStart := time.Now()
	if landed := b.Login(s.ProxyURL("/app/"), "ann"); landed.Status != http.StatusOK || landed.URL.Path != "/app/" {
		t.Fatalf("login landed on %d %s; hops:\n%s", landed.Status, landed.URL, b.HopsString())
	}
	loginEnd := time.Now()
	pg := b.Do(http.MethodGet, userinfoURL, fetch(), nil)
	check(t, pg, http.StatusOK)
	var got userinfo
	if err := decodeStrict(pg.Body, &got); err != nil {
		t.Fatalf("body: %v\n%s", err, pg.Body)
	}
	exp, err := time.Parse(time.RFC3339, got.ExpiresAt)
	// The session ends its lifetime after the login; RFC 3339 here has
	// whole seconds.
	if err != nil || exp.Before(loginStart.Add(lifetime).Truncate(time.Second)) || exp.After(loginEnd.Add(lifetime)) {
		t.Errorf("expires_at %q (%v), want the login's time + %s", got.ExpiresAt, err, lifetime)
	}
	got.ExpiresAt = ""
	want := userinfo{User: "ann", Sub: "ann", Email: "ann@example.test", Name: "Ann Example", Groups: []string{"admins", "staff"}, Auth: "session"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("userinfo\n got  %+v\n want %+v", got, want)
	}
	for _, c := range b.Jar.Cookies(s.Proxy.URL) {
		if strings.Contains(pg.Body, c.Value) {
			t.Errorf("body holds the value of cookie %s", c.Name)
		}
	}
	if pg := b.Do(http.MethodHead, userinfoURL, fetch(), nil); pg.Status != http.StatusOK || pg.Body != "" {
		t.Errorf("HEAD: %d %q", pg.Status, pg.Body)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if pg := b.Do(m, userinfoURL, fetch(), url.Values{}); pg.Status != http.StatusMethodNotAllowed || pg.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q; want 405 with GET, HEAD", m, pg.Status, pg.Header.Get("Allow"))
		}
	}

	t.Run("bearer", func(t *testing.T) {
		tp := newTokenClient(t, s)
		token := tp.clientCredentials(machine, apiAudience)
		pg := tp.call(t, "/auth/userinfo", "Bearer "+token, nil)
		check(t, pg, http.StatusOK)
		var got userinfo
		if err := decodeStrict(pg.Body, &got); err != nil {
			t.Fatalf("body: %v\n%s", err, pg.Body)
		}
		exp, _ := mustClaims(t, token)["exp"].(float64)
		if got.User != machine.ClientID || got.Sub != machine.ClientID || got.Auth != "bearer" ||
			got.ExpiresAt != time.Unix(int64(exp), 0).UTC().Format(time.RFC3339) {
			t.Errorf("userinfo %+v, want user and sub %s, auth bearer, expires_at the token's exp %v", got, machine.ClientID, exp)
		}
		if pg := tp.call(t, "/auth/userinfo", "Bearer "+token+"x", nil); pg.Status != http.StatusUnauthorized || !strings.Contains(pg.Body, "invalid_token") {
			t.Errorf("tampered token: %d %s", pg.Status, pg.Body)
		}
	})

	// Logout, as the app's own sign-out link: the session cookie goes.
	h := navigationHeaders()
	h.Set("Sec-Fetch-Site", "same-origin")
	if pg := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), h, nil); pg.Status != http.StatusFound {
		t.Fatalf("logout: %d", pg.Status)
	}
	pg = b.Do(http.MethodGet, userinfoURL, fetch(), nil)
	check(t, pg, http.StatusUnauthorized)
	checkUnauthorized(t, pg, "/")

	for _, r := range s.Upstream.Requests() {
		if strings.HasPrefix(r.Path, "/auth/") {
			t.Errorf("upstream saw %s %s", r.Method, r.RequestURI)
		}
	}
}

// decodeStrict decodes s into v, refusing fields v does not have: the
// answer must hold nothing unexpected (a token, say).
func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
