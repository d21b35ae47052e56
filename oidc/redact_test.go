package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

const (
	testJWT    = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	testSecret = "s3cr3t-V4lue_xyz"
)

// secretForms are the ways a provider's echo may carry a named secret.
var secretForms = []struct {
	name string
	f    func(param, v string) string
}{
	{"form", func(p, v string) string { return "grant_type=x&" + p + "=" + url.QueryEscape(v) + "&state=s" }},
	{"form, last", func(p, v string) string { return "a=b&" + p + "=" + url.QueryEscape(v) }},
	{"form, upper-case name", func(p, v string) string { return strings.ToUpper(p) + "=" + url.QueryEscape(v) }},
	{"URL query", func(p, v string) string {
		return "https://idp.example/token?" + p + "=" + url.QueryEscape(v) + "#frag"
	}},
	{"URL in a URL", func(p, v string) string {
		return "redirect=" + url.QueryEscape("https://app.example/cb?"+p+"="+url.QueryEscape(v)+"&x=1")
	}},
	{"JSON", func(p, v string) string { b, _ := json.Marshal(map[string]string{p: v}); return string(b) }},
	{"JSON, spaced", func(p, v string) string { b, _ := json.Marshal(v); return `{ "` + p + `" : ` + string(b) + ` }` }},
	{"JSON in a JSON string", func(p, v string) string {
		inner, _ := json.Marshal(map[string]string{p: v})
		outer, _ := json.Marshal(map[string]string{"error_description": string(inner)})
		return string(outer)
	}},
	{"JSON in JSON in JSON", func(p, v string) string {
		b, _ := json.Marshal(map[string]string{p: v})
		for range 2 {
			b, _ = json.Marshal(map[string]string{"d": string(b)})
		}
		return string(b)
	}},
	{"percent-encoded JSON", func(p, v string) string {
		b, _ := json.Marshal(map[string]string{p: v})
		return "x=" + url.QueryEscape(string(b))
	}},
	{"Go %q", func(p, v string) string { return fmt.Sprintf("%s=%q", p, v) }},
	{"YAML-ish", func(p, v string) string { return p + ": " + url.QueryEscape(v) }},
	{"single quotes", func(p, v string) string { return p + "='" + strings.ReplaceAll(v, "'", "") + "'" }},
}

func jsonString(v string) string { b, _ := json.Marshal(v); return string(b) }

// encodings of v that must not survive redaction.
func encodings(v string) []string {
	return []string{v, url.QueryEscape(v), strings.Trim(jsonString(v), `"`)}
}

// TestRedact: every named secret, in every form a provider may echo it,
// and every JWT and credential header is removed; the rest stays readable.
func TestRedact(t *testing.T) {
	values := []string{testSecret, "a b+c/d=e&f\"g'h\\i}j]k", `ends with a backslash \`, "with\nnewline-and-more", "ünïcödé-sécret-value"}
	for _, name := range secretNames {
		for _, form := range secretForms {
			for _, v := range values {
				if form.name == "single quotes" && strings.ContainsAny(v, "'") {
					continue
				}
				in := "oauth2: cannot fetch token: 400 Bad Request\nResponse: " + form.f(name, v)
				out := redact(in)
				for _, enc := range encodings(v) {
					if strings.Contains(out, enc) || strings.Contains(out, v[:len(v)/2+1]) {
						t.Errorf("%s, %s, %q: left in %q", name, form.name, v, out)
						break
					}
				}
				if !strings.Contains(out, "400 Bad Request") {
					t.Errorf("%s, %s: the message itself was lost: %q", name, form.name, out)
				}
			}
		}
	}
	for _, tt := range []struct{ name, in, gone string }{
		{"JWT", "id token " + testJWT + " refused", testJWT[20:]},
		{"JWT, alg none", "token eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9. x", "eyJzdWIiOiJhZG1pbiJ9"},
		{"JWE", "a.b eyJhbGciOiJSU0EtT0FFUCJ9.ZW5jcnlwdGVkLWtleQ.aXYtaXYtaXY.Y2lwaGVydGV4dA.dGFnLXRhZw", "Y2lwaGVydGV4dA"},
		{"JWT header with a space", "eyAiYWxnIjogIlJTMjU2In0.eyJzdWIiOiJhbGljZSJ9.c2ln", "eyJzdWIiOiJhbGljZSJ9"},
		{"Basic", "Authorization: Basic YXV0aHByb3h5OnMzY3IzdA==\r\n", "YXV0aHByb3h5OnMzY3IzdA"},
		{"Bearer", `{"Authorization":["Bearer opaque-access-token-123"]}`, "opaque-access-token-123"},
		{"bearer, lower case", "authorization: bearer opaque-access-token-123", "opaque-access-token-123"},
	} {
		if out := redact(tt.in); strings.Contains(out, tt.gone) {
			t.Errorf("%s: left in %q", tt.name, out)
		}
	}
	// Not secrets: kept for diagnosis.
	for _, keep := range []string{
		`oauth2: "invalid_grant" "unknown, expired or revoked refresh token"`,
		"Get \"https://tenant.eu.auth0.com/.well-known/openid-configuration\": dial tcp 10.0.0.1:443: i/o timeout",
		"oidc: id token issued by a different provider, expected \"https://a.example/\" got \"https://b.example/\"",
		"jwks endpoint answered 503 Service Unavailable",
		"error_code=42", // not the code parameter
	} {
		if out := redact(keep); out != keep {
			t.Errorf("redact(%q) = %q, want it unchanged", keep, out)
		}
	}
	// Known secrets go whatever surrounds them.
	for _, in := range []string{
		"the secret is " + testSecret + ".",
		"x=" + url.QueryEscape("pre "+testSecret),
		"b64 " + base64.StdEncoding.EncodeToString([]byte(testSecret)),
		"b64url " + base64.RawURLEncoding.EncodeToString([]byte(testSecret)),
	} {
		out := redact(in, testSecret)
		for _, enc := range append(encodings(testSecret), base64.RawStdEncoding.EncodeToString([]byte(testSecret))) {
			if strings.Contains(out, enc) {
				t.Errorf("known secret left in %q", out)
			}
		}
	}
}

// FuzzRedact: a secret the redactor was given never survives, in any of
// its encodings, whatever surrounds it; a secret under a named parameter
// never survives in any form of secretForms.
func FuzzRedact(f *testing.F) {
	f.Add("pre ", testSecret, " post", uint8(0), uint8(0))
	f.Add(`{"a":"`, `x\"y`, `"}`, uint8(5), uint8(2))
	f.Add("code=", "redacted", "&", uint8(7), uint8(8))
	f.Fuzz(func(t *testing.T, prefix, secret, suffix string, form, name uint8) {
		if len(secret) < minKnown {
			return
		}
		in := prefix + secret + suffix
		out := redact(in, secret)
		for _, enc := range encodings(secret) {
			if strings.Contains(out, enc) {
				t.Fatalf("known secret %q left in %q (from %q)", secret, out, in)
			}
		}
		// Named, unknown to the redactor.
		n := secretNames[int(name)%len(secretNames)]
		fm := secretForms[int(form)%len(secretForms)]
		if fm.name == "single quotes" {
			secret = strings.ReplaceAll(secret, "'", "")
		}
		named := fm.f(n, secret)
		in = prefix + " " + named + " " + suffix
		out = redact(in)
		for _, enc := range encodings(secret) {
			if len(enc) < minKnown {
				continue
			}
			if strings.Count(out, enc) > strings.Count(prefix+" ", enc)+strings.Count(" "+suffix, enc) {
				t.Fatalf("named secret %q (%s, %s) left in %q", secret, n, fm.name, out)
			}
		}
	})
}

// TestProviderErrorsRedacted: a provider that echoes every request in its
// error answers (oidctest SetEcho) gets none of the client secret, the code,
// the PKCE verifier, the refresh token or a token into our log, whether the
// exchange, the refresh, discovery or the key fetch failed.
func TestProviderErrorsRedacted(t *testing.T) {
	o := newOddClaims(t, oidctest.Options{RotateRefreshTokens: true}, func(c *Config) {
		c.Scopes = []string{"openid", "email", "offline_access"}
		c.KeyRefetchInterval = time.Millisecond
	})
	o.idp.SetEcho(true)
	var secrets []string

	// The exchange: code, verifier, client secret (HTTP Basic) echoed.
	o.idp.RefuseTokens("invalid_grant")
	b := &browser{}
	authz := o.startLogin(t, b, "/")
	cb := o.authorize(t, authz, "alice")
	secrets = append(secrets, cb.Query().Get("code"))
	if resp := b.do(o.h, callbackPath(cb)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("refused exchange: %d", resp.StatusCode)
	}
	o.idp.RefuseTokens("")

	// The refresh: the refresh token echoed.
	sess := o.loginSession(t, "alice")
	secrets = append(secrets, sess.RefreshToken, sess.IDToken)
	o.idp.RefuseTokens("invalid_grant")
	if _, err := o.h.Refresh(context.Background(), sess); err == nil {
		t.Error("refused refresh succeeded")
	} else {
		o.h.log.Warn("refresh", "err", err) // as the proxy logs it
	}
	o.idp.RefuseTokens("")

	// Discovery and the key fetch answering with an echo and a token.
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"server_error","client_secret":"` + secret + `","id_token":"` + sess.IDToken + `","seen":"refresh_token=` + sess.RefreshToken + `"}`))
	}
	o.idp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/jwks") || strings.Contains(r.URL.Path, "openid-configuration") {
			echo(w, r)
			return true
		}
		return false
	})
	if _, err := o.h.discoverOnce(context.Background()); err == nil {
		t.Error("discovery succeeded against a failing provider")
	} else {
		o.h.log.Warn("provider discovery failed", "err", err) // as discover logs it
	}
	if err := o.idp.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	unknownKey, _ := o.idp.SignJWT("JWT", map[string]any{"iss": o.idp.Issuer(), "sub": "x", "aud": clientID, "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := o.h.provider.Load().keys.trusted().VerifySignature(context.Background(), unknownKey); err == nil {
		t.Error("key fetch succeeded against a failing provider")
	} else {
		o.h.log.Warn("verify", "err", err)
	}
	o.idp.SetFault(nil)

	logged := o.log.String()
	if !strings.Contains(logged, "invalid_grant") || !strings.Contains(logged, "500") {
		t.Errorf("the log lost the errors themselves:\n%s", logged)
	}
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID) + ":" + url.QueryEscape(secret)))
	for _, s := range append(secrets, secret, basic, unknownKey) {
		for _, enc := range encodings(s) {
			if s != "" && strings.Contains(logged, enc) {
				t.Errorf("the log holds a secret (%.12s...):\n%s", enc, logged)
			}
		}
	}
	if strings.Contains(logged, "eyJ") {
		t.Errorf("the log holds a JWT:\n%s", logged)
	}
}

// TestRedactLarge: a provider answering with a megabyte costs little, and
// the cut leaves no part of a token or value.
func TestRedactLarge(t *testing.T) {
	for name, in := range map[string]string{
		"quotes":           strings.Repeat(`code="`, 200_000),
		"escaped":          strings.Repeat(`code=\"x\\`, 100_000),
		"JWT at the cut":   strings.Repeat(" ", maxRedacted-30) + testJWT,
		"value at the cut": strings.Repeat(" ", maxRedacted-20) + "code=" + testSecret + testSecret,
	} {
		out := redact(in)
		if len(out) > maxRedacted+20 {
			t.Errorf("%s: %d bytes out", name, len(out))
		}
		if strings.Contains(out, testJWT[:12]) || strings.Contains(out, testSecret[:6]) {
			t.Errorf("%s: a part of a secret survived the cut: %q", name, out[len(out)-60:])
		}
	}
}
