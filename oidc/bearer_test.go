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
