package oidctest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const redirectURI = "http://app.example/auth/callback"

// clock is a settable Options.Now, safe under -race.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func start(t *testing.T, opts Options) *Provider {
	t.Helper()
	p, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// client does not follow redirects, so tests see each 302.
func client() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func newPKCE() (verifier, challenge string) {
	verifier = rand.Text() + rand.Text() // 52 unreserved characters
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authParams is a valid authorization request.
func authParams(challenge string) url.Values {
	return url.Values{
		"client_id":             {"authproxy-demo"},
		"redirect_uri":          {redirectURI},
		"response_type":         {"code"},
		"scope":                 {"openid profile offline_access"},
		"state":                 {"st-123"},
		"nonce":                 {"n-456"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func postForm(t *testing.T, u string, form url.Values, user, pass string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return do(t, req)
}

// login submits the login form and returns the code from the redirect.
func login(t *testing.T, p *Provider, params url.Values, user string) string {
	t.Helper()
	form := url.Values{"username": {user}}
	for k, v := range params {
		form[k] = v
	}
	resp, body := postForm(t, p.Issuer()+"/authorize", form, "", "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("POST /authorize = %d, want 302; body:\n%s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Query().Get("state"); got != params.Get("state") {
		t.Errorf("state = %q, want %q", got, params.Get("state"))
	}
	if loc.Query().Get("code") == "" {
		t.Fatalf("no code in %s", loc)
	}
	return loc.Query().Get("code")
}

// tokenReq posts to /token with HTTP Basic client auth.
func tokenReq(t *testing.T, p *Provider, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, body := postForm(t, p.Issuer()+"/token", form, "authproxy-demo", "demo-secret")
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("token response %q: %v", body, err)
	}
	return resp.StatusCode, m
}

func codeForm(code, verifier string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
}

// verify checks tok's signature against the provider's /jwks.
func verify(t *testing.T, p *Provider, tok string) map[string]any {
	t.Helper()
	_, body := get(t, p.Issuer()+"/jwks")
	var keys jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &keys); err != nil {
		t.Fatalf("jwks: %v", err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	var claims map[string]any
	if err := parsed.Claims(&keys, &claims); err != nil {
		t.Fatalf("verify token against /jwks: %v", err)
	}
	return claims
}

func TestCodeFlow(t *testing.T) {
	p := start(t, Options{Claims: func(user string) map[string]any {
		return map[string]any{"email": user + "@example.com", "groups": []string{"dev"}, "iss": "evil"}
	}})

	resp, body := get(t, p.Issuer()+"/.well-known/openid-configuration")
	var disc map[string]any
	if err := json.Unmarshal([]byte(body), &disc); err != nil {
		t.Fatalf("discovery: %v", err)
	}
	for k, want := range map[string]string{
		"issuer":                 p.Issuer(),
		"authorization_endpoint": p.Issuer() + "/authorize",
		"token_endpoint":         p.Issuer() + "/token",
		"jwks_uri":               p.Issuer() + "/jwks",
		"userinfo_endpoint":      p.Issuer() + "/userinfo",
		"end_session_endpoint":   p.Issuer() + "/end_session",
	} {
		if disc[k] != want {
			t.Errorf("discovery %s = %v, want %q", k, disc[k], want)
		}
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("discovery Content-Type = %q", got)
	}

	verifier, challenge := newPKCE()
	params := authParams(challenge)
	params.Set("state", `"><script>x</script>`)
	resp, body = get(t, p.Issuer()+"/authorize?"+params.Encode())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /authorize = %d; body:\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{
		"Sign in to the development provider",
		banner,
		`name="username"`,
		`name="cancel"`,
		`type="hidden" name="code_challenge" value="` + challenge + `"`,
		`type="hidden" name="nonce" value="n-456"`,
		`method="post" action="` + p.Issuer() + `/authorize"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("login page does not escape state")
	}

	code := login(t, p, params, "  alice  ")
	status, tok := tokenReq(t, p, codeForm(code, verifier))
	if status != http.StatusOK {
		t.Fatalf("token = %d %v", status, tok)
	}
	if tok["token_type"] != "Bearer" || tok["expires_in"] != float64(3600) || tok["refresh_token"] == nil || tok["scope"] != "openid profile offline_access" {
		t.Errorf("token response = %v", tok)
	}

	id := verify(t, p, tok["id_token"].(string))
	for k, want := range map[string]any{
		"iss": p.Issuer(), "sub": "alice", "aud": "authproxy-demo", "nonce": "n-456",
		"name": "alice", "email": "alice@example.com",
	} {
		if id[k] != want {
			t.Errorf("id_token %s = %v, want %v", k, id[k], want)
		}
	}
	for _, k := range []string{"exp", "iat", "auth_time", "sid", "at_hash"} {
		if id[k] == nil {
			t.Errorf("id_token lacks %s", k)
		}
	}

	at := verify(t, p, tok["access_token"].(string))
	if at["aud"] != p.Issuer()+"/userinfo" || at["client_id"] != "authproxy-demo" || at["sub"] != "alice" {
		t.Errorf("access token claims = %v", at)
	}

	req, _ := http.NewRequest(http.MethodGet, p.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, body = do(t, req)
	var info map[string]any
	if err := json.Unmarshal([]byte(body), &info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo = %d %s", resp.StatusCode, body)
	}
	if info["sub"] != "alice" || info["email"] != "alice@example.com" {
		t.Errorf("userinfo = %v", info)
	}

	for path, want := range map[string]int{"/.well-known/openid-configuration": 1, "/token": 1, "/authorize": 2, "/jwks": 2} {
		if got := p.Requests(path); got != want {
			t.Errorf("Requests(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestAuthorizeRejects(t *testing.T) {
	p := start(t, Options{})
	_, challenge := newPKCE()
	tests := []struct {
		name   string
		change func(url.Values)
	}{
		{"missing PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }},
		{"malformed challenge", func(v url.Values) { v.Set("code_challenge", "short") }},
		{"unknown client", func(v url.Values) { v.Set("client_id", "other") }},
		{"token response type", func(v url.Values) { v.Set("response_type", "token") }},
		{"relative redirect_uri", func(v url.Values) { v.Set("redirect_uri", "/callback") }},
		{"javascript redirect_uri", func(v url.Values) { v.Set("redirect_uri", "javascript:alert(1)") }},
		{"no openid scope", func(v url.Values) { v.Set("scope", "profile") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := authParams(challenge)
			tt.change(params)
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				var resp *http.Response
				var body string
				if method == http.MethodGet {
					resp, body = get(t, p.Issuer()+"/authorize?"+params.Encode())
				} else {
					params.Set("username", "alice")
					resp, body = postForm(t, p.Issuer()+"/authorize", params, "", "")
				}
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%s = %d, want 400", method, resp.StatusCode)
				}
				if !strings.Contains(body, banner) {
					t.Errorf("%s error page lacks the banner", method)
				}
			}
		})
	}
}

func TestLoginForm(t *testing.T) {
	p := start(t, Options{})
	_, challenge := newPKCE()
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantQuery  url.Values // on redirect; "" means the key must be absent
	}{
		{"empty name", url.Values{"username": {"   "}}, http.StatusBadRequest, nil},
		{"long name", url.Values{"username": {strings.Repeat("é", 65)}}, http.StatusBadRequest, nil},
		{"control character", url.Values{"username": {"a\nX-User: root"}}, http.StatusBadRequest, nil},
		{"64 characters", url.Values{"username": {strings.Repeat("é", 64)}}, http.StatusFound, url.Values{"state": {"st-123"}, "error": {""}}},
		{"cancel", url.Values{"cancel": {"1"}}, http.StatusFound, url.Values{"error": {"access_denied"}, "state": {"st-123"}, "code": {""}}},
		{"prompt none", url.Values{"prompt": {"none"}}, http.StatusFound, url.Values{"error": {"login_required"}, "state": {"st-123"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := authParams(challenge)
			for k, v := range tt.form {
				form[k] = v
			}
			resp, body := postForm(t, p.Issuer()+"/authorize", form, "", "")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body:\n%s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != http.StatusFound {
				if !strings.Contains(body, `name="username"`) || !strings.Contains(body, banner) {
					t.Errorf("rejected login does not show the form again:\n%s", body)
				}
				return
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), redirectURI+"?") {
				t.Fatalf("Location = %q", resp.Header.Get("Location"))
			}
			for k, want := range tt.wantQuery {
				if got := loc.Query().Get(k); got != want[0] {
					t.Errorf("%s = %q, want %q", k, got, want[0])
				}
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := start(t, Options{Now: clk.Now})
	tests := []struct {
		name       string
		setup      func(t *testing.T, code, verifier string) (form url.Values, user, pass string)
		wantStatus int
		wantError  string
	}{
		{"basic auth ok", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			return codeForm(code, verifier), "authproxy-demo", "demo-secret"
		}, http.StatusOK, ""},
		{"post auth ok", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			f := codeForm(code, verifier)
			f.Set("client_id", "authproxy-demo")
			f.Set("client_secret", "demo-secret")
			return f, "", ""
		}, http.StatusOK, ""},
		{"wrong verifier", func(t *testing.T, code, _ string) (url.Values, string, string) {
			other, _ := newPKCE()
			return codeForm(code, other), "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_grant"},
		{"missing verifier", func(t *testing.T, code, _ string) (url.Values, string, string) {
			return codeForm(code, ""), "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_grant"},
		{"reused code", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			if status, m := tokenReq(t, p, codeForm(code, verifier)); status != http.StatusOK {
				t.Fatalf("first exchange = %d %v", status, m)
			}
			return codeForm(code, verifier), "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_grant"},
		{"wrong client secret", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			return codeForm(code, verifier), "authproxy-demo", "nope"
		}, http.StatusUnauthorized, "invalid_client"},
		{"wrong client secret post", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			f := codeForm(code, verifier)
			f.Set("client_id", "authproxy-demo")
			f.Set("client_secret", "nope")
			return f, "", ""
		}, http.StatusUnauthorized, "invalid_client"},
		{"no client auth", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			return codeForm(code, verifier), "", ""
		}, http.StatusUnauthorized, "invalid_client"},
		{"two auth methods", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			f := codeForm(code, verifier)
			f.Set("client_secret", "demo-secret")
			return f, "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_request"},
		{"wrong redirect_uri", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			f := codeForm(code, verifier)
			f.Set("redirect_uri", "http://evil.example/cb")
			return f, "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_grant"},
		{"expired code", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			clk.Add(61 * time.Second)
			return codeForm(code, verifier), "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_grant"},
		{"unknown code", func(t *testing.T, _, verifier string) (url.Values, string, string) {
			return codeForm("nope", verifier), "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "invalid_grant"},
		{"unknown grant type", func(t *testing.T, code, verifier string) (url.Values, string, string) {
			f := codeForm(code, verifier)
			f.Set("grant_type", "password")
			return f, "authproxy-demo", "demo-secret"
		}, http.StatusBadRequest, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifier, challenge := newPKCE()
			code := login(t, p, authParams(challenge), "bob")
			form, user, pass := tt.setup(t, code, verifier)
			resp, body := postForm(t, p.Issuer()+"/token", form, user, pass)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body: %s", resp.StatusCode, tt.wantStatus, body)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if tt.wantError == "" {
				if m["id_token"] == nil || m["access_token"] == nil {
					t.Errorf("response lacks tokens: %v", m)
				}
				return
			}
			if m["error"] != tt.wantError {
				t.Errorf("error = %v, want %q", m["error"], tt.wantError)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	tests := []struct {
		name          string
		rotate        bool
		wantReuseCode int
	}{
		{"rotation", true, http.StatusBadRequest},
		{"no rotation", false, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, Options{RotateRefreshTokens: tt.rotate})
			verifier, challenge := newPKCE()
			_, tok := tokenReq(t, p, codeForm(login(t, p, authParams(challenge), "carol"), verifier))
			old, _ := tok["refresh_token"].(string)
			if old == "" {
				t.Fatalf("no refresh token: %v", tok)
			}
			refresh := func(rt string) (int, map[string]any) {
				return tokenReq(t, p, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			}

			status, first := refresh(old)
			if status != http.StatusOK {
				t.Fatalf("first refresh = %d %v", status, first)
			}
			id := verify(t, p, first["id_token"].(string))
			if id["sub"] != "carol" || id["nonce"] != nil {
				t.Errorf("refreshed id_token = %v", id)
			}
			newRT, _ := first["refresh_token"].(string)
			if tt.rotate == (newRT == "") || newRT == old {
				t.Errorf("rotate=%v but refresh_token = %q (old %q)", tt.rotate, newRT, old)
			}

			if status, m := refresh(old); status != tt.wantReuseCode {
				t.Errorf("second use of old token = %d %v, want %d", status, m, tt.wantReuseCode)
			}

			p.RevokeRefreshTokens("carol")
			for _, rt := range []string{old, newRT} {
				if status, m := refresh(rt); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
					t.Errorf("revoked token = %d %v, want 400 invalid_grant", status, m)
				}
			}
		})
	}
}

func TestNoRefreshTokenWithoutOfflineAccess(t *testing.T) {
	p := start(t, Options{})
	verifier, challenge := newPKCE()
	params := authParams(challenge)
	params.Set("scope", "openid")
	_, tok := tokenReq(t, p, codeForm(login(t, p, params, "dave"), verifier))
	if tok["refresh_token"] != nil {
		t.Errorf("refresh_token issued without offline_access: %v", tok)
	}
}

func TestRotateKey(t *testing.T) {
	for _, keepOld := range []bool{true, false} {
		t.Run(map[bool]string{true: "keep old", false: "drop old"}[keepOld], func(t *testing.T) {
			p := start(t, Options{})
			oldKID := p.KeyID()
			oldTok, err := p.SignIDToken(map[string]any{"sub": "x"})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.RotateKey(keepOld); err != nil {
				t.Fatal(err)
			}
			if p.KeyID() == oldKID {
				t.Fatal("KeyID unchanged after RotateKey")
			}
			_, body := get(t, p.Issuer()+"/jwks")
			var set jose.JSONWebKeySet
			if err := json.Unmarshal([]byte(body), &set); err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range set.Keys {
				kids = append(kids, k.KeyID)
				if k.Use != "sig" || k.Algorithm != "RS256" {
					t.Errorf("key %s: use %q alg %q", k.KeyID, k.Use, k.Algorithm)
				}
			}
			if !slices.Contains(kids, p.KeyID()) {
				t.Errorf("JWKS %v lacks new kid %s", kids, p.KeyID())
			}
			if slices.Contains(kids, oldKID) != keepOld {
				t.Errorf("JWKS %v: old kid present = %v, want %v", kids, !keepOld, keepOld)
			}

			newTok, err := p.SignIDToken(map[string]any{"sub": "y"})
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.ParseSigned(newTok, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Headers[0].KeyID != p.KeyID() {
				t.Errorf("new token kid = %s, want %s", parsed.Headers[0].KeyID, p.KeyID())
			}
			var c map[string]any
			if err := parsed.Claims(p.PublicKey(), &c); err != nil || c["sub"] != "y" {
				t.Errorf("new token against PublicKey: %v %v", c, err)
			}
			oldParsed, err := jwt.ParseSigned(oldTok, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			if err := oldParsed.Claims(&set, &c); (err == nil) != keepOld {
				t.Errorf("old token verifies against JWKS: err = %v, keepOld %v", err, keepOld)
			}
		})
	}
}

func TestSignIDTokenExact(t *testing.T) {
	p := start(t, Options{})
	claims := map[string]any{"iss": "https://evil.example", "aud": []any{"a", "b"}, "exp": float64(1), "custom": "v"}
	tok, err := p.SignIDToken(claims)
	if err != nil {
		t.Fatal(err)
	}
	got := verify(t, p, tok)
	if len(got) != len(claims) {
		t.Errorf("claims = %v, want exactly %v", got, claims)
	}
	for k, v := range claims {
		if b1, _ := json.Marshal(got[k]); string(b1) != mustJSON(t, v) {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSetFault(t *testing.T) {
	p := start(t, Options{})
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/jwks") {
			return false
		}
		http.Error(w, "boom", http.StatusInternalServerError)
		return true
	})
	tests := []struct {
		path string
		want int
	}{
		{"/jwks", http.StatusInternalServerError},
		{"/.well-known/openid-configuration", http.StatusOK},
	}
	for _, tt := range tests {
		if resp, _ := get(t, p.Issuer()+tt.path); resp.StatusCode != tt.want {
			t.Errorf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
		}
	}
	p.SetFault(nil)
	if resp, _ := get(t, p.Issuer()+"/jwks"); resp.StatusCode != http.StatusOK {
		t.Errorf("after SetFault(nil): GET /jwks = %d", resp.StatusCode)
	}
	if got := p.Requests("/jwks"); got != 2 {
		t.Errorf("Requests(/jwks) = %d, want 2 (faults count)", got)
	}
}

func TestFaultHangDoesNotBlockClose(t *testing.T) {
	p, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	})
	done := make(chan error, 1)
	go func() {
		_, err := http.Get(p.Issuer() + "/jwks")
		done <- err
	}()
	for p.Requests("/jwks") == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; err == nil {
		t.Error("hung request succeeded after Close")
	}
}

func TestEndSession(t *testing.T) {
	p := start(t, Options{})
	tests := []struct {
		name         string
		query        url.Values
		wantStatus   int
		wantLocation string
	}{
		{"redirect", url.Values{"id_token_hint": {"tok"}, "post_logout_redirect_uri": {"http://app.example/bye?x=1"}, "state": {"s1"}, "client_id": {"authproxy-demo"}},
			http.StatusFound, "http://app.example/bye?state=s1&x=1"},
		{"signed out page", url.Values{"id_token_hint": {"tok2"}}, http.StatusOK, ""},
		{"bad redirect", url.Values{"post_logout_redirect_uri": {"//evil.example"}}, http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, p.Issuer()+"/end_session?"+tt.query.Encode())
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location = %q, want %q", got, tt.wantLocation)
			}
			if tt.wantStatus == http.StatusOK && (!strings.Contains(body, "You are signed out") || !strings.Contains(body, banner)) {
				t.Errorf("signed-out page:\n%s", body)
			}
			got := p.EndSessions()
			if last := got[len(got)-1]; last.Encode() != tt.query.Encode() {
				t.Errorf("EndSessions last = %v, want %v", last, tt.query)
			}
		})
	}
	if got := len(p.EndSessions()); got != len(tests) {
		t.Errorf("len(EndSessions) = %d, want %d", got, len(tests))
	}
}

func TestUserinfoRejects(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := start(t, Options{Now: clk.Now})
	verifier, challenge := newPKCE()
	_, tok := tokenReq(t, p, codeForm(login(t, p, authParams(challenge), "erin"), verifier))
	tests := []struct {
		name  string
		auth  string
		after time.Duration
	}{
		{"no token", "", 0},
		{"id token as bearer", "Bearer " + tok["id_token"].(string), 0},
		{"garbage", "Bearer abc.def.ghi", 0},
		{"expired access token", "Bearer " + tok["access_token"].(string), 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Add(tt.after)
			req, _ := http.NewRequest(http.MethodGet, p.Issuer()+"/userinfo", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if resp, body := do(t, req); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401; body %s", resp.StatusCode, body)
			}
		})
	}
}

// TestIssuerPath serves New's handler under a path, as tests of tenants do.
func TestIssuerPath(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String() + "/tenant/"
	p, err := New(issuer, Options{ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p
	srv.Start()
	defer srv.Close()
	if err := p.Close(); err != nil {
		t.Errorf("Close of a New provider: %v", err)
	}

	_, body := get(t, srv.URL+"/tenant/.well-known/openid-configuration")
	var disc map[string]any
	if err := json.Unmarshal([]byte(body), &disc); err != nil {
		t.Fatal(err)
	}
	if disc["issuer"] != issuer || disc["token_endpoint"] != srv.URL+"/tenant/token" {
		t.Errorf("discovery issuer %v token_endpoint %v", disc["issuer"], disc["token_endpoint"])
	}
	if resp, _ := get(t, srv.URL+"/tenant/jwks"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /tenant/jwks = %d", resp.StatusCode)
	}
	if got := p.Requests("/jwks"); got != 1 {
		t.Errorf("Requests(/jwks) = %d, want 1", got)
	}

	for _, bad := range []string{"", "ftp://x", "/relative", "http://x?q=1"} {
		if _, err := New(bad, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
}

// TestIssParameter: RFC 9207 is on by default (advertised, and iss in every
// authorization response, errors too) and NoIssParameter turns it off.
func TestIssParameter(t *testing.T) {
	for _, off := range []bool{false, true} {
		p := start(t, Options{NoIssParameter: off})
		_, body := get(t, p.Issuer()+"/.well-known/openid-configuration")
		var disc map[string]any
		if err := json.Unmarshal([]byte(body), &disc); err != nil {
			t.Fatal(err)
		}
		if got := disc["authorization_response_iss_parameter_supported"] == true; got == off {
			t.Errorf("NoIssParameter %t: advertised %t", off, got)
		}
		want := p.Issuer()
		if off {
			want = ""
		}
		_, challenge := newPKCE()
		for _, extra := range []url.Values{{"username": {"alice"}}, {"cancel": {"1"}}} {
			form := authParams(challenge)
			for k, v := range extra {
				form[k] = v
			}
			resp, _ := postForm(t, p.Issuer()+"/authorize", form, "", "")
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if got := loc.Query().Get("iss"); got != want || len(loc.Query()["iss"]) > 1 {
				t.Errorf("NoIssParameter %t: redirect %s, want iss %q", off, loc, want)
			}
		}
	}
}
