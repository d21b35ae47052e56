package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// assertionHeader carries the proxy's signed identity to the upstream.
const assertionHeader = "X-Authproxy-Jwt-Assertion"

// identityRules leaves /status/ public, to check that visitors get no
// assertion, and lets every logged-in user through.
const identityRules = `public GET /status/
allow  *   /        any
`

// TestIdentityAssertion logs in through the proxy with AUTHPROXY_IDENTITY_JWT
// on and checks the assertion the upstream receives the way an upstream
// would: with nothing but the JWKS the proxy publishes at /auth/jwks.json.
// It is ES256, signed by the first key of AUTHPROXY_IDENTITY_KEY_FILE, and
// says iss (the proxy's origin), aud (the upstream's origin), sub (the
// provider's sub), email, and a 300-second lifetime. A client's own
// assertion never reaches the upstream, and an assertion re-signed with
// another key, or altered, does not verify.
func TestIdentityAssertion(t *testing.T) {
	signing, published := newKey(t), newKey(t) // the key file holds both; the first signs
	keyFile := filepath.Join(t.TempDir(), "identity.pem")
	var pemData []byte
	for _, k := range []*ecdsa.PrivateKey{signing, published} {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatalf("marshal key: %v", err)
		}
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	}
	if err := os.WriteFile(keyFile, pemData, 0o600); err != nil {
		t.Fatalf("write key file: %v", err)
	}
	s := newCustomStack(t, customStackOptions{ProxyEnv: map[string]string{
		"AUTHPROXY_IDENTITY_JWT":      "true",
		"AUTHPROXY_IDENTITY_KEY_FILE": keyFile,
		"AUTHPROXY_RULES_FILE":        writeTestFile(t, "rules.txt", identityRules),
	}})
	proxyOrigin := s.Proxy.URL.Scheme + "://" + s.Proxy.URL.Host
	upstreamOrigin := s.Upstream.URL.Scheme + "://" + s.Upstream.URL.Host

	// What an upstream does once: fetch the JWKS from the proxy.
	jwks := fetchAssertionJWKS(t, s.ProxyURL("/auth/jwks.json"))
	var kids []string
	for _, k := range jwks.Keys {
		kids = append(kids, k.KeyID)
		if !k.IsPublic() || k.Algorithm != string(jose.ES256) || k.Use != "sig" {
			t.Errorf("JWKS key %q: public %v, alg %q, use %q; want a public ES256 signing key", k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
		}
	}
	if want := []string{thumbprint(t, &signing.PublicKey), thumbprint(t, &published.PublicKey)}; !slices.Equal(kids, want) {
		t.Fatalf("JWKS key ids %q, want the RFC 7638 thumbprints of the key file's keys %q", kids, want)
	}

	const user = "ida"
	b := newBrowser(t, s.PKI)
	start := s.ProxyURL("/hello")
	if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start {
		t.Fatalf("login landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	seen := s.Upstream.ByRequestURI("/hello")
	if len(seen) != 1 {
		t.Fatalf("upstream saw /hello %d times, want once", len(seen))
	}
	got := headersNamed(seen[0].Header, assertionHeader)
	if len(got) != 1 || len(got[assertionHeader]) != 1 {
		t.Fatalf("upstream assertion headers %q, want one %s", got, assertionHeader)
	}
	token := got[assertionHeader][0]

	// The upstream's check, with the JWKS only.
	claims, kid, err := verifyAssertion(token, jwks)
	if err != nil {
		t.Fatalf("the upstream cannot verify the assertion with the proxy's JWKS: %v\n%s", err, token)
	}
	if kid != kids[0] {
		t.Errorf("assertion signed by key %q, want the key file's first key %q", kid, kids[0])
	}
	if claims.Issuer != proxyOrigin || claims.Subject != user || claims.Email != user+"@example.test" || claims.Audience != upstreamOrigin {
		t.Errorf("assertion iss %q sub %q email %q aud %q, want %q, %q, %q, %q",
			claims.Issuer, claims.Subject, claims.Email, claims.Audience, proxyOrigin, user, user+"@example.test", upstreamOrigin)
	}
	if life := claims.Expiry - claims.IssuedAt; life != 300 {
		t.Errorf("assertion exp - iat = %d s, want 300", life)
	}
	if iat := time.Unix(claims.IssuedAt, 0); time.Since(iat).Abs() > time.Minute {
		t.Errorf("assertion iat %s is not about now", iat)
	}

	// The client's own assertion, in any spelling, never reaches the
	// upstream: a logged-in user gets the proxy's instead, a visitor on a
	// public path none at all.
	forgedToken := signAssertion(t, newKey(t), kids[0], map[string]any{
		"iss": proxyOrigin, "aud": upstreamOrigin, "sub": "admin", "email": "admin@example.test",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
	})
	forge := func(h http.Header) http.Header {
		h[assertionHeader] = []string{forgedToken}
		h["x-authproxy-jwt-assertion"] = []string{forgedToken}
		h["X_Authproxy_Jwt_Assertion"] = []string{forgedToken}
		return h
	}
	p := b.Do(http.MethodGet, s.ProxyURL("/forged"), forge(navigationHeaders()), nil)
	if p.Status != http.StatusOK {
		t.Fatalf("GET /forged: status %d, want 200", p.Status)
	}
	if seen := s.Upstream.ByRequestURI("/forged"); len(seen) != 1 {
		t.Errorf("upstream saw /forged %d times, want once", len(seen))
	} else if got := headersNamed(seen[0].Header, assertionHeader); len(got) != 1 || !slices.Equal(got[assertionHeader], []string{token}) {
		t.Errorf("with a forged assertion sent, upstream got assertion headers %q, want only the proxy's (cached) one", got)
	}
	visitor := newBrowser(t, s.PKI)
	if p := visitor.Do(http.MethodGet, s.ProxyURL("/status/forged"), forge(apiHeaders()), nil); p.Status != http.StatusOK {
		t.Errorf("visitor GET /status/forged: status %d, want 200 (public)", p.Status)
	} else if seen := s.Upstream.ByRequestURI("/status/forged"); len(seen) != 1 {
		t.Errorf("upstream saw /status/forged %d times, want once", len(seen))
	} else if got := headersNamed(seen[0].Header, assertionHeader, "X-User"); len(got) != 0 {
		t.Errorf("a visitor's forged assertion reached the upstream: %q", got)
	}
	if p := visitor.Do(http.MethodGet, s.ProxyURL("/forged-visitor"), forge(apiHeaders()), nil); p.Status != http.StatusUnauthorized {
		t.Errorf("visitor GET /forged-visitor: status %d, want 401", p.Status)
	}
	if seen := s.Upstream.ByRequestURI("/forged-visitor"); len(seen) != 0 {
		t.Errorf("upstream saw the visitor's /forged-visitor")
	}

	// Another user gets their own assertion.
	other := newBrowser(t, s.PKI)
	other.Login(s.ProxyURL("/hello-jo"), "jo")
	if seen := s.Upstream.ByRequestURI("/hello-jo"); len(seen) != 1 {
		t.Errorf("upstream saw /hello-jo %d times, want once", len(seen))
	} else if c, _, err := verifyAssertion(seen[0].Header.Get(assertionHeader), jwks); err != nil || c.Subject != "jo" {
		t.Errorf("jo's assertion: sub %q, err %v; want sub jo", c.Subject, err)
	}

	// What must not verify with the JWKS.
	parts := strings.Split(token, ".")
	var payload map[string]any
	if err := json.Unmarshal(mustB64(t, parts[1]), &payload); err != nil {
		t.Fatalf("assertion payload: %v", err)
	}
	forgeries := []struct{ name, token string }{
		{"re-signed with another key, same kid", signAssertion(t, newKey(t), kid, payload)},
		{"re-signed with another key, its own kid", signAssertion(t, newKey(t), "attacker", payload)},
		{"the client's forged assertion", forgedToken},
		{"sub changed, signature kept", parts[0] + "." + b64JSON(t, withValue(payload, "sub", "admin")) + "." + parts[2]},
		{"alg none", b64JSON(t, map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "."},
		{"alg HS256 keyed with the JWKS", hs256JWT(t, payload, kid, mustJSON(t, jwks))},
	}
	for _, f := range forgeries {
		if _, _, err := verifyAssertion(f.token, jwks); err == nil {
			t.Errorf("%s: verifies with the proxy's JWKS", f.name)
		}
	}
}

// assertionClaims is what TestIdentityAssertion reads of an assertion.
type assertionClaims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	Subject  string `json:"sub"`
	Email    string `json:"email"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// verifyAssertion checks token as an upstream would, with the JWKS only:
// ES256 and nothing else, the key named by kid, typ JWT, not expired. It
// returns the claims and the kid.
func verifyAssertion(token string, jwks jose.JSONWebKeySet) (assertionClaims, string, error) {
	var c assertionClaims
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return c, "", err
	}
	if len(jws.Signatures) != 1 {
		return c, "", errors.New("want exactly one signature")
	}
	h := jws.Signatures[0].Header
	keys := jwks.Key(h.KeyID)
	if h.KeyID == "" || len(keys) != 1 {
		return c, "", fmt.Errorf("kid %q names no key of the JWKS", h.KeyID)
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "JWT" {
		return c, "", fmt.Errorf("typ %q, want JWT", typ)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return c, "", err
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, "", err
	}
	if now := time.Now().Unix(); c.Expiry <= now || c.IssuedAt > now+60 {
		return c, "", fmt.Errorf("iat %d, exp %d: not valid now (%d)", c.IssuedAt, c.Expiry, now)
	}
	return c, h.KeyID, nil
}

// fetchAssertionJWKS gets the proxy's JWKS as an upstream would.
func fetchAssertionJWKS(t *testing.T, url string) jose.JSONWebKeySet {
	t.Helper()
	client := &http.Client{Timeout: hangTimeout}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %s %s, want 200 JSON:\n%s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("GET %s: not a JWKS: %v\n%s", url, err, body)
	}
	if strings.Contains(string(body), `"d"`) {
		t.Fatalf("GET %s: the JWKS holds private key material:\n%s", url, body)
	}
	return set
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url.
func thumbprint(t *testing.T, pub *ecdsa.PublicKey) string {
	t.Helper()
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatalf("thumbprint: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

// signAssertion signs claims with key as ES256, typ JWT, naming kid.
func signAssertion(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	jws, err := signer.Sign(mustJSON(t, claims))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return raw
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return raw
}

// withValue returns a copy of m with key set to v.
func withValue(m map[string]any, key string, v any) map[string]any {
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = x
	}
	out[key] = v
	return out
}
