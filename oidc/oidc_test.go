package oidc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/oidc/oidctest"
	"github.com/authproxy/authproxy/session"
)

const (
	clientID    = "authproxy-test"
	secret      = "test-secret"
	callbackURL = "http://proxy.test/auth/callback"
)

type fixture struct {
	idp   *oidctest.Provider
	store *cookie.Store
	h     *Handler
}

func newFixture(t *testing.T, mutate ...func(*Config)) *fixture {
	t.Helper()
	return newFixtureIDP(t, oidctest.Options{}, mutate...)
}

// newFixtureIDP is newFixture with options for the development provider.
func newFixtureIDP(t *testing.T, opts oidctest.Options, mutate ...func(*Config)) *fixture {
	t.Helper()
	opts.ClientID, opts.ClientSecret = clientID, secret
	if opts.Claims == nil {
		opts.Claims = func(user string) map[string]any {
			return map[string]any{"email": user + "@example.test", "email_verified": true}
		}
	}
	idp, err := oidctest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	store, err := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := Config{
		Issuer: idp.Issuer(), ClientID: clientID, ClientSecret: secret, RedirectURL: callbackURL,
		Scopes: []string{"openid", "email"}, SessionLifetime: time.Hour,
		PostLogoutURL: "/bye", HTTPClient: &http.Client{Timeout: 5 * time.Second},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	h, err := New(ctx, cfg, store, store)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, h)
	return &fixture{idp, store, h}
}

// waitReady polls until h's discovery has succeeded. The deadline only
// bounds a hang: discovery retries with a backoff that grows to 30 s, and
// on a loaded machine an attempt may fail on the fault tests' short client
// timeout, so a few attempts may be needed.
func waitReady(t *testing.T, h *Handler) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !h.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("discovery did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// browser is the cookies of one user agent.
type browser struct{ cookies []*http.Cookie }

// serve calls the method of h that proxy's route table sends r's path to.
func serve(h *Handler, w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/auth/login":
		h.Login(w, r)
	case "/auth/callback":
		h.Callback(w, r)
	case "/auth/logout":
		h.Logout(w, r)
	default:
		panic("no route for " + r.URL.Path)
	}
}

func (b *browser) do(h *Handler, target string) *http.Response {
	return b.request(h, "GET", target, nil)
}

// request sends method target with the headers hdr and the browser's
// cookies, and keeps the cookies the answer sets.
func (b *browser) request(h *Handler, method, target string, hdr map[string]string) *http.Response {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	serve(h, w, r)
	resp := w.Result()
	for _, set := range resp.Cookies() {
		kept := b.cookies[:0]
		for _, c := range b.cookies {
			if c.Name != set.Name {
				kept = append(kept, c)
			}
		}
		b.cookies = kept
		if set.MaxAge >= 0 && set.Value != "" {
			b.cookies = append(b.cookies, &http.Cookie{Name: set.Name, Value: set.Value})
		}
	}
	return resp
}

// startLogin begins a login and returns the authorize URL.
func (f *fixture) startLogin(t *testing.T, b *browser, rd string) *url.URL {
	t.Helper()
	resp := b.do(f.h, "/auth/login?rd="+url.QueryEscape(rd))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: status %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// authorize signs in at the development provider and returns the callback
// URL it redirects to.
func (f *fixture) authorize(t *testing.T, authz *url.URL, user string) *url.URL {
	t.Helper()
	form := authz.Query()
	form.Set("username", user)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(f.idp.Issuer()+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d %v", resp.StatusCode, err)
	}
	return cb
}

func callbackPath(cb *url.URL) string { return cb.Path + "?" + cb.RawQuery }

func TestLoginFlow(t *testing.T) {
	f := newFixture(t)
	b := &browser{}
	authz := f.startLogin(t, b, "/reports?year=2026")
	q := authz.Query()
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(p) == "" {
			t.Errorf("authorize URL lacks %s: %s", p, authz)
		}
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") != callbackURL || q.Get("client_id") != clientID {
		t.Errorf("authorize URL = %s", authz)
	}

	resp := b.do(f.h, callbackPath(f.authorize(t, authz, "alice")))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/reports?year=2026" {
		t.Fatalf("callback: %d to %q, want 302 to the saved path", resp.StatusCode, resp.Header.Get("Location"))
	}
	sess, err := f.store.Load(requestWith(b))
	if err != nil || sess.User != "alice" || sess.Email != "alice@example.test" || sess.IDToken == "" {
		t.Fatalf("session after login = %+v, %v", sess, err)
	}
	for _, c := range b.cookies {
		if strings.Contains(c.Name, "_login_") {
			t.Errorf("login cookie %s left behind after the callback", c.Name)
		}
	}

	// Logout: session gone, browser sent to the provider's end_session.
	resp = b.do(f.h, "/auth/logout")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), f.idp.Issuer()+"/end_session") {
		t.Fatalf("logout: %d to %s", resp.StatusCode, loc)
	}
	lq := loc.Query()
	if lq.Get("id_token_hint") != sess.IDToken || lq.Get("client_id") != clientID || lq.Get("post_logout_redirect_uri") != "http://proxy.test/bye" {
		t.Errorf("logout URL query = %v", lq)
	}
	if _, err := f.store.Load(requestWith(b)); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("session survived logout: %v", err)
	}
}

func requestWith(b *browser) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	return r
}

func TestParallelLogins(t *testing.T) {
	f := newFixture(t)
	b := &browser{}
	tab1 := f.startLogin(t, b, "/one")
	tab2 := f.startLogin(t, b, "/two")
	cb2 := f.authorize(t, tab2, "alice")
	cb1 := f.authorize(t, tab1, "alice")
	for _, tc := range []struct {
		cb   *url.URL
		want string
	}{{cb2, "/two"}, {cb1, "/one"}} {
		resp := b.do(f.h, callbackPath(tc.cb))
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.want {
			t.Errorf("callback: %d to %q, want %s", resp.StatusCode, resp.Header.Get("Location"), tc.want)
		}
	}
}

// TestCallbackRefuses is the list of attacks on the callback. Each must end
// without a session and with a 4xx page.
func TestCallbackRefuses(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	good := func(nonce string) map[string]any {
		return map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sub": "mallory", "nonce": nonce,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	with := withClaims
	signed := func(c map[string]any) string { return f.sign(t, c) }
	tests := []struct {
		name string
		// token returns the ID token the token endpoint will answer with,
		// given the login's nonce; nil keeps the provider's real answer.
		token func(nonce string) string
		// callback rewrites the callback URL or the browser before it is used.
		callback func(cb *url.URL, b *browser)
		status   int
	}{
		{name: "missing state", callback: func(cb *url.URL, _ *browser) { setQuery(cb, "state", "") }, status: 400},
		{name: "unknown state", callback: func(cb *url.URL, _ *browser) {
			setQuery(cb, "state", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		}, status: 400},
		{name: "state from another browser", callback: func(cb *url.URL, b *browser) { b.cookies = nil }, status: 400},
		{name: "provider error", callback: func(cb *url.URL, _ *browser) {
			cb.RawQuery = url.Values{"error": {"access_denied"}, "state": {cb.Query().Get("state")}, "iss": {f.idp.Issuer()}}.Encode()
		}, status: 403},
		{name: "missing code", callback: func(cb *url.URL, _ *browser) { setQuery(cb, "code", "") }, status: 400},
		{name: "forged code", callback: func(cb *url.URL, _ *browser) { setQuery(cb, "code", "forged") }, status: 400},
		{name: "missing nonce", token: func(n string) string { return signed(with(good(n), "nonce", nil)) }, status: 400},
		{name: "wrong nonce", token: func(n string) string { return signed(with(good(n), "nonce", "other")) }, status: 400},
		{name: "alg none", token: func(n string) string { return unsigned(good(n)) }, status: 400},
		{name: "HS256 with the provider's public key", token: func(n string) string {
			return hs256(t, good(n), f.idp.PublicKey())
		}, status: 400},
		{name: "wrong iss", token: func(n string) string { return signed(with(good(n), "iss", "https://evil.example/")) }, status: 400},
		{name: "wrong aud", token: func(n string) string { return signed(with(good(n), "aud", "other-client")) }, status: 400},
		{name: "several audiences, no azp", token: func(n string) string {
			return signed(with(good(n), "aud", []string{clientID, "other"}))
		}, status: 400},
		{name: "several audiences, other azp", token: func(n string) string {
			return signed(with(good(n), "aud", []string{clientID, "other"}, "azp", "other"))
		}, status: 400},
		{name: "expired", token: func(n string) string {
			return signed(with(good(n), "exp", now.Add(-time.Minute).Unix(), "iat", now.Add(-time.Hour).Unix()))
		}, status: 400},
		{name: "not yet valid", token: func(n string) string {
			return signed(with(good(n), "nbf", now.Add(time.Hour).Unix()))
		}, status: 400},
		{name: "no user claim", token: func(n string) string { return signed(with(good(n), "sub", nil)) }, status: 400},
		{name: "garbage token", token: func(string) string { return "not.a.jwt" }, status: 400},
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
			if tt.callback != nil {
				tt.callback(cb, b)
			}
			resp := b.do(f.h, callbackPath(cb))
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if sess, err := f.store.Load(requestWith(b)); err == nil {
				t.Errorf("a session was created: %+v", sess)
			}
		})
	}
}

func TestStateIsSingleUse(t *testing.T) {
	f := newFixture(t)
	b := &browser{}
	authz := f.startLogin(t, b, "/")
	saved := append([]*http.Cookie{}, b.cookies...) // an attacker's copy of the login cookie
	cb := f.authorize(t, authz, "alice")
	if resp := b.do(f.h, callbackPath(cb)); resp.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	replay := &browser{cookies: saved}
	if resp := replay.do(f.h, callbackPath(cb)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed callback: %d, want 400", resp.StatusCode)
	}
	if _, err := f.store.Load(requestWith(replay)); err == nil {
		t.Error("replayed callback created a session")
	}
}

func TestProviderDownAtStart(t *testing.T) {
	idp, err := oidctest.Start(oidctest.Options{ClientID: clientID, ClientSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	idp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusBadGateway)
		return true
	})
	store, _ := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := New(ctx, Config{Issuer: idp.Issuer(), ClientID: clientID, ClientSecret: secret, RedirectURL: callbackURL,
		Scopes: []string{"openid"}, SessionLifetime: time.Hour, HTTPClient: &http.Client{Timeout: time.Second}}, store, store)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{}
	r := httptest.NewRequest("GET", "/auth/login", nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	h.Login(w, r)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "cannot be reached") {
		t.Errorf("login while provider down: %d %q", w.Code, w.Body.String())
	}
	// Logout still works locally and lands on the post-logout URL.
	if resp := b.do(h, "/auth/logout"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://proxy.test/" {
		t.Errorf("logout while provider down: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	idp.SetFault(nil)
	waitReady(t, h) // discovery retries and recovers
}

func TestAuth0Logout(t *testing.T) {
	h := &Handler{cfg: Config{ClientID: "cid", Auth0Domain: "tenant.eu.auth0.com", PostLogoutURL: "https://app.example/bye"}}
	got, _ := url.Parse(h.logoutURL(httptest.NewRequest("GET", "/auth/logout", nil), session.Session{}))
	if got.Host != "tenant.eu.auth0.com" || got.Path != "/v2/logout" ||
		got.Query().Get("returnTo") != "https://app.example/bye" || got.Query().Get("client_id") != "cid" {
		t.Errorf("Auth0 logout URL = %s", got)
	}
}

// withClaims sets claims in c, given as name, value pairs; a nil value
// deletes the claim. It returns c.
func withClaims(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// sign has the development provider sign claims as a token.
func (f *fixture) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok, err := f.idp.SignIDToken(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func setQuery(u *url.URL, k, v string) {
	q := u.Query()
	if v == "" {
		q.Del(k)
	} else {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func unsigned(claims map[string]any) string {
	return b64json(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64json(claims) + "."
}

// hs256 forges the classic key-confusion token: HMAC keyed with the bytes of
// the provider's RSA public key.
func hs256(t *testing.T, claims map[string]any, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	signing := b64json(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + b64json(claims)
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// atTokenEndpoint makes idp's token endpoint answer with answer, until
// SetFault(nil).
func atTokenEndpoint(idp *oidctest.Provider, answer func(http.ResponseWriter, *http.Request)) {
	idp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/token") {
			return false
		}
		answer(w, r)
		return true
	})
}

// idTokenAnswer answers a token request with the ID token tok.
func idTokenAnswer(tok string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 60, "id_token": tok})
	}
}
