package oidc

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const apiAudience = "https://api.example.test"

// TestVerifyAccessToken: API clients' bearer tokens are checked locally;
// every forgery, and ID tokens, are refused.
func TestVerifyAccessToken(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Audience = apiAudience; c.KeepClaims = []string{"https://example.com/roles"} })
	now := time.Now()
	base := func() map[string]any {
		return map[string]any{"iss": f.idp.Issuer(), "aud": []string{apiAudience, f.idp.Issuer() + "/userinfo"}, "sub": "machine-1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "read", "https://example.com/roles": []string{"reader"}}
	}
	with := func(kv ...any) map[string]any { return withClaims(base(), kv...) }
	sign := func(c map[string]any) string { return f.sign(t, c) }
	good := sign(base())
	r := httptest.NewRequest("GET", "/api", nil)
	sess, err := f.h.VerifyAccessToken(r, good)
	if err != nil || sess.User != "machine-1" {
		t.Fatalf("valid access token: %+v, %v", sess, err)
	}
	if roles, _ := sess.Claims["https://example.com/roles"].([]any); len(roles) != 1 || roles[0] != "reader" {
		t.Errorf("kept claims = %v", sess.Claims)
	}

	parts := strings.Split(good, ".")
	for name, tok := range map[string]string{
		"expired":               sign(with("exp", now.Add(-time.Minute).Unix(), "iat", now.Add(-time.Hour).Unix())),
		"not yet valid":         sign(with("nbf", now.Add(time.Hour).Unix())),
		"wrong audience":        sign(with("aud", "https://other-api.example")),
		"client audience":       sign(with("aud", clientID)),
		"ID token with nonce":   sign(with("nonce", "n")),
		"wrong issuer":          sign(with("iss", "https://evil.example/")),
		"no subject":            sign(with("sub", nil)),
		"alg none":              unsigned(base()),
		"HS256 with public key": hs256(t, base(), f.idp.PublicKey()),
		"tampered payload":      parts[0] + "." + b64json(with("sub", "admin")) + "." + parts[2],
		"truncated":             good[:len(good)-10],
		"garbage":               "not-a-token",
		"empty":                 "",
	} {
		if sess, err := f.h.VerifyAccessToken(r, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: got %+v, %v; want ErrInvalidToken", name, sess, err)
		}
	}
}

func TestBearerDisabledWithoutAudience(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.idp.SignIDToken(map[string]any{"iss": f.idp.Issuer(), "aud": "x", "sub": "s", "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := f.h.VerifyAccessToken(httptest.NewRequest("GET", "/", nil), tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("bearer accepted without an audience configured: %v", err)
	}
}

// TestBearerIsAnAccessToken: a token for the API audience that has the
// shape of an ID token (or of another token for authproxy's own client) is
// refused; the shapes providers give access tokens pass.
func TestBearerIsAnAccessToken(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Audience = apiAudience })
	now := time.Now()
	base := func(kv ...any) map[string]any {
		return withClaims(map[string]any{"iss": f.idp.Issuer(), "aud": []any{apiAudience, f.idp.Issuer() + "/userinfo"}, "sub": "user-1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, kv...)
	}
	signTyp := func(typ string, c map[string]any) string {
		tok, err := f.idp.SignJWT(typ, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	r := httptest.NewRequest("GET", "/api", nil)
	for _, tt := range []struct {
		name string
		typ  string // JWT header typ
		c    map[string]any
		ok   bool
	}{
		// What providers send for an API (README "Bearer tokens").
		{"Auth0 default profile, another client", "JWT", base("azp", "spa-client", "scope", "read"), true},
		{"Auth0 RFC 9068 profile", "at+jwt", base("client_id", "spa-client", "jti", "j"), true},
		{"RFC 9068 token of authproxy's own client", "at+jwt", base("client_id", clientID, "jti", "j"), true},
		{"RFC 9068, media type spelling", "application/at+jwt", base("azp", clientID), true},
		{"Keycloak access token", "JWT", base("typ", "Bearer", "azp", "mobile-app"), true},
		{"Entra ID access token", "JWT", base("azp", "3f2a-client", "azpacr", "1", "ver", "2.0"), true},
		{"Okta access token", "", base("cid", "okta-client", "scp", []string{"read"}), true},
		// ID tokens and their look-alikes.
		{"nonce", "JWT", base("nonce", "n"), false},
		{"nonce, even with at+jwt", "at+jwt", base("nonce", "n"), false},
		{"at_hash", "JWT", base("at_hash", "h"), false},
		{"c_hash", "JWT", base("c_hash", "h"), false},
		{"Keycloak ID token (typ claim ID)", "JWT", base("typ", "ID", "azp", "mobile-app"), false},
		{"Keycloak ID token, lower case", "JWT", base("typ", "id"), false},
		{"Keycloak refresh token", "JWT", base("typ", "Refresh"), false},
		{"typ claim not a string", "JWT", base("typ", 1), false},
		{"issued to authproxy's own client (azp), typ JWT", "JWT", base("azp", clientID), false},
		{"issued to authproxy's own client (azp), no typ", "", base("azp", clientID), false},
		{"logout token", "logout+jwt", base("events", map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}), false},
		{"events claim under typ JWT", "JWT", base("events", map[string]any{}), false},
		{"header typ of another token", "id_token+jwt", base(), false},
		{"the client as audience", "at+jwt", base("aud", clientID), false},
	} {
		sess, err := f.h.VerifyAccessToken(r, signTyp(tt.typ, tt.c))
		if ok := err == nil; ok != tt.ok {
			t.Errorf("%s: accepted %v (%+v, %v), want %v", tt.name, ok, sess, err, tt.ok)
		} else if !ok && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", tt.name, err)
		}
	}

	// A real ID token from a login is refused.
	idt := f.loginSession(t, "alice").IDToken
	if _, err := f.h.VerifyAccessToken(r, idt); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a real ID token passed as an access token: %v", err)
	}
}
