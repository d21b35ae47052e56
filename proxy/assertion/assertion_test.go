package assertion_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authproxy/authproxy/proxy/assertion"
)

const (
	testIssuer   = "https://proxy.example"
	testAudience = "https://app.example"
)

// t0 is a fixed start time with a fractional second, so tests also cover
// iat being truncated to whole seconds.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 900_000_000, time.UTC)

// clock is a settable time source, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration)     { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Since(t time.Time) int64 { return c.ns.Load() - t.UnixNano() }

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := assertion.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSigner(t testing.TB, cfg assertion.Config) *assertion.Signer {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	s, err := assertion.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAssert(t testing.TB, s *assertion.Signer, id assertion.Identity) string {
	t.Helper()
	tok, err := s.Assertion(id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fetchJWKS gets the key set the way an upstream would: over HTTP, from the
// handler that JWKS returns.
func fetchJWKS(t *testing.T, s *assertion.Signer) jose.JSONWebKeySet {
	t.Helper()
	srv := httptest.NewServer(s.JWKS())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/auth/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

// verified is what the upstream learns from a valid assertion.
type verified struct {
	jwt.Claims
	Email string `json:"email"`
	KeyID string `json:"-"`
}

// verify is an upstream's verifier. It knows only the JWKS, the expected
// issuer and audience, and the time. It accepts ES256 and nothing else,
// uses the key named by kid, and requires iat, exp and a lifetime of at
// most five minutes.
func verify(set jose.JSONWebKeySet, token, iss, aud string, now time.Time) (verified, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return verified{}, err
	}
	if len(tok.Headers) != 1 {
		return verified{}, errors.New("want one signature")
	}
	kid := tok.Headers[0].KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		return verified{}, errors.New("unknown kid")
	}
	key := keys[0]
	if key.Algorithm != string(jose.ES256) || key.Use != "sig" || !key.IsPublic() {
		return verified{}, errors.New("JWKS key not for ES256 signatures")
	}
	var v verified
	if err := tok.Claims(key.Key, &v); err != nil {
		return verified{}, err
	}
	if v.IssuedAt == nil || v.Expiry == nil {
		return verified{}, errors.New("missing iat or exp")
	}
	if err := v.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{aud}, Time: now}, 0); err != nil {
		return verified{}, err
	}
	if life := v.Expiry.Time().Sub(v.IssuedAt.Time()); life <= 0 || life > 5*time.Minute {
		return verified{}, errors.New("lifetime out of bounds")
	}
	v.KeyID = kid
	return v, nil
}

// segments splits a compact JWS and decodes its header and payload.
func segments(t *testing.T, token string) (header, payload map[string]any, parts []string) {
	t.Helper()
	parts = strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload, parts
}

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestAssertionVerifiesWithJWKS(t *testing.T) {
	tests := []struct {
		name string
		id   assertion.Identity
	}{
		{"with email", assertion.Identity{Subject: "auth0|alice", Email: "alice@example.com", SessionID: "s1"}},
		{"without email", assertion.Identity{Subject: "auth0|bob", SessionID: "s2"}},
		{"no session id", assertion.Identity{Subject: "auth0|carol", Email: "carol@example.com"}},
		{"unicode and quotes", assertion.Identity{Subject: `a"b\c`, Email: "é@example.com", SessionID: "s3"}},
	}
	clk := newClock(t0)
	key := mustKey(t)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{key}, Now: clk.Now})
	set := fetchJWKS(t, s)
	wantKID := thumbprint(t, &key.PublicKey)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustAssert(t, s, tt.id)
			v, err := verify(set, tok, testIssuer, testAudience, clk.Now())
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if v.Subject != tt.id.Subject || v.Email != tt.id.Email {
				t.Errorf("sub, email = %q, %q; want %q, %q", v.Subject, v.Email, tt.id.Subject, tt.id.Email)
			}
			if v.Issuer != testIssuer {
				t.Errorf("iss = %q", v.Issuer)
			}
			if len(v.Audience) != 1 || v.Audience[0] != testAudience {
				t.Errorf("aud = %q", v.Audience)
			}
			if got, want := v.IssuedAt.Time(), t0.Truncate(time.Second); !got.Equal(want) {
				t.Errorf("iat = %v, want %v", got, want)
			}
			if got := v.Expiry.Time().Sub(v.IssuedAt.Time()); got != 5*time.Minute {
				t.Errorf("exp - iat = %v, want 5m", got)
			}
			if v.KeyID != wantKID {
				t.Errorf("kid = %q, want the RFC 7638 thumbprint %q", v.KeyID, wantKID)
			}

			header, payload, _ := segments(t, tok)
			if header["alg"] != "ES256" || header["typ"] != "JWT" || header["kid"] != wantKID || len(header) != 3 {
				t.Errorf("header = %v", header)
			}
			if _, ok := payload["sid"]; ok || len(payload) > 6 {
				t.Errorf("payload has unexpected claims: %v", payload)
			}
			if tt.id.Email == "" {
				if _, ok := payload["email"]; ok {
					t.Errorf("empty email is present: %v", payload)
				}
			}
			if aud, ok := payload["aud"].(string); !ok || aud != testAudience {
				t.Errorf("aud is %#v, want a single string", payload["aud"])
			}
		})
	}
}

func TestVerifierRejectsForgeries(t *testing.T) {
	clk := newClock(t0)
	key := mustKey(t)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{key}, Now: clk.Now})
	set := fetchJWKS(t, s)
	kid := thumbprint(t, &key.PublicKey)
	id := assertion.Identity{Subject: "auth0|alice", Email: "alice@example.com", SessionID: "s1"}
	good := mustAssert(t, s, id)
	_, payload, parts := segments(t, good)
	if _, err := verify(set, good, testIssuer, testAudience, clk.Now()); err != nil {
		t.Fatalf("genuine assertion rejected: %v", err)
	}

	signWith := func(k *ecdsa.PrivateKey, kid string, payload map[string]any) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(signer).Claims(payload).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hs256 := func(secret []byte) string {
		input := b64JSON(t, map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + parts[1]
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	pkix, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	jwkJSON, err := json.Marshal(set.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	tampered := map[string]any{}
	for k, v := range payload {
		tampered[k] = v
	}
	tampered["sub"] = "auth0|admin"
	other := mustKey(t)
	otherAud := mustSigner(t, assertion.Config{Audience: "https://other.example", Keys: []*ecdsa.PrivateKey{key}, Now: clk.Now})
	otherIss := mustSigner(t, assertion.Config{Issuer: "https://evil.example", Keys: []*ecdsa.PrivateKey{key}, Now: clk.Now})

	tests := []struct {
		name  string
		token string
		now   time.Time
	}{
		{"other key with the same kid", signWith(other, kid, payload), clk.Now()},
		{"other key with its own kid", signWith(other, thumbprint(t, &other.PublicKey), payload), clk.Now()},
		{"tampered payload", parts[0] + "." + b64JSON(t, tampered) + "." + parts[2], clk.Now()},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flipLast(parts[2]), clk.Now()},
		{"alg none", b64JSON(t, map[string]string{"alg": "none", "typ": "JWT", "kid": kid}) + "." + parts[1] + ".", clk.Now()},
		{"alg none with the original signature", b64JSON(t, map[string]string{"alg": "none", "kid": kid}) + "." + parts[1] + "." + parts[2], clk.Now()},
		{"HS256 keyed with the PKIX public key", hs256(pkix), clk.Now()},
		{"HS256 keyed with the PEM public key", hs256(pubPEM), clk.Now()},
		{"HS256 keyed with the JWK", hs256(jwkJSON), clk.Now()},
		{"expired: a second after exp", good, t0.Truncate(time.Second).Add(5*time.Minute + time.Second)},
		{"expired: after exp", good, t0.Add(time.Hour)},
		{"issued in the future", good, t0.Add(-time.Minute)},
		{"wrong audience", mustAssert(t, otherAud, id), clk.Now()},
		{"wrong issuer", mustAssert(t, otherIss, id), clk.Now()},
		{"not a JWT", "garbage", clk.Now()},
		{"empty", "", clk.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := verify(set, tt.token, testIssuer, testAudience, tt.now)
			if err == nil {
				t.Fatalf("forged assertion accepted: %+v", v)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// flipLast changes the last base64url character of s to another valid one.
func flipLast(s string) string {
	c := s[len(s)-1]
	if c == 'A' {
		c = 'Q'
	} else {
		c = 'A'
	}
	return s[:len(s)-1] + string(c)
}

// thumbprint computes the RFC 7638 thumbprint of pub independently of
// go-jose: SHA-256 over the required members in lexicographic order.
func thumbprint(t *testing.T, pub *ecdsa.PublicKey) string {
	t.Helper()
	p, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	canon := `{"crv":"P-256","kty":"EC","x":"` + enc(p[1:33]) + `","y":"` + enc(p[33:]) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return enc(sum[:])
}

func TestRotation(t *testing.T) {
	clk := newClock(t0)
	oldKey, newKey := mustKey(t), mustKey(t)
	oldKID, newKID := thumbprint(t, &oldKey.PublicKey), thumbprint(t, &newKey.PublicKey)
	id := assertion.Identity{Subject: "auth0|alice", SessionID: "s1"}

	before := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{oldKey}, Now: clk.Now})
	oldTok := mustAssert(t, before, id)

	after := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{newKey, oldKey}, Now: clk.Now})
	newTok := mustAssert(t, after, id)
	set := fetchJWKS(t, after)

	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	if len(kids) != 2 || kids[0] != newKID || kids[1] != oldKID {
		t.Errorf("JWKS kids = %q, want [new old] = [%q %q]", kids, newKID, oldKID)
	}
	tests := []struct {
		name, token, wantKID string
	}{
		{"new token", newTok, newKID},
		{"token signed before the rotation", oldTok, oldKID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := verify(set, tt.token, testIssuer, testAudience, clk.Now())
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if v.KeyID != tt.wantKID {
				t.Errorf("kid = %q, want %q", v.KeyID, tt.wantKID)
			}
		})
	}
}

func TestJWKSHandler(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{k1, k2}})
	tests := []struct {
		method     string
		wantStatus int
		wantBody   bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, false},
		{http.MethodPut, http.StatusMethodNotAllowed, false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.JWKS().ServeHTTP(rec, httptest.NewRequest(tt.method, "/auth/jwks.json", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q", got)
				}
				return
			}
			h := rec.Result().Header
			if got := h.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := h.Get("Cache-Control"); !strings.Contains(got, "max-age=300") {
				t.Errorf("Cache-Control = %q", got)
			}
			if !tt.wantBody {
				return
			}
			var raw struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			if len(raw.Keys) != 2 {
				t.Fatalf("%d keys, want 2", len(raw.Keys))
			}
			for i, k := range raw.Keys {
				want := map[string]any{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256"}
				for name, v := range want {
					if k[name] != v {
						t.Errorf("key %d: %s = %v, want %v", i, name, k[name], v)
					}
				}
				if _, ok := k["d"]; ok {
					t.Errorf("key %d publishes its private part", i)
				}
				if len(k) != 7 { // kty crv x y use alg kid
					t.Errorf("key %d has members %v", i, k)
				}
			}
			if raw.Keys[0]["kid"] != thumbprint(t, &k1.PublicKey) || raw.Keys[1]["kid"] != thumbprint(t, &k2.PublicKey) {
				t.Errorf("kids = %v, %v", raw.Keys[0]["kid"], raw.Keys[1]["kid"])
			}
			if got := h.Get("Content-Length"); got != "" && got != strconv.Itoa(rec.Body.Len()) {
				t.Errorf("Content-Length = %q, body %d bytes", got, rec.Body.Len())
			}
		})
	}
}

func TestCaching(t *testing.T) {
	clk := newClock(t0)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(t)}, Now: clk.Now})
	set := fetchJWKS(t, s)
	alice := assertion.Identity{Subject: "auth0|alice", Email: "alice@example.com", SessionID: "s1"}
	iat0 := t0.Truncate(time.Second)
	refresh := iat0.Add(150 * time.Second) // iat + TTL/2

	first := mustAssert(t, s, alice)
	steps := []struct {
		name    string
		at      time.Time
		id      assertion.Identity
		same    bool // the token is the first one
		wantIAT time.Time
	}{
		{"same instant", t0, alice, true, iat0},
		{"a minute later", t0.Add(time.Minute), alice, true, iat0},
		{"just before the refresh point", refresh.Add(-time.Nanosecond), alice, true, iat0},
		{"other session, same user", refresh.Add(-time.Nanosecond), assertion.Identity{Subject: alice.Subject, Email: alice.Email, SessionID: "s2"}, false, refresh.Add(-time.Second)},
		{"same session id, other email", refresh.Add(-time.Nanosecond), assertion.Identity{Subject: alice.Subject, Email: "mallory@example.com", SessionID: "s1"}, false, refresh.Add(-time.Second)},
		{"same session id, other subject", refresh.Add(-time.Nanosecond), assertion.Identity{Subject: "auth0|mallory", Email: alice.Email, SessionID: "s1"}, false, refresh.Add(-time.Second)},
		{"the original is still cached", refresh.Add(-time.Nanosecond), alice, true, iat0},
		{"at the refresh point", refresh, alice, false, refresh},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clk.Set(st.at)
			tok := mustAssert(t, s, st.id)
			if (tok == first) != st.same {
				t.Errorf("token reused = %v, want %v", tok == first, st.same)
			}
			v, err := verify(set, tok, testIssuer, testAudience, clk.Now())
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if v.Subject != st.id.Subject || v.Email != st.id.Email {
				t.Errorf("token states %q <%s>, want %q <%s>", v.Subject, v.Email, st.id.Subject, st.id.Email)
			}
			if !v.IssuedAt.Time().Equal(st.wantIAT) {
				t.Errorf("iat = %v, want %v", v.IssuedAt.Time(), st.wantIAT)
			}
		})
	}

	clk.Set(refresh.Add(time.Second))
	second := mustAssert(t, s, alice)
	if again := mustAssert(t, s, alice); again != second {
		t.Error("refreshed token not cached")
	}
	if second == first {
		t.Error("token not refreshed")
	}
}

// TestEveryTokenHasHalfItsLifeLeft walks the clock in uneven steps and checks
// that each assertion handed out is valid for at least TTL/2 more, and that
// a session is signed about once per TTL/2.
func TestEveryTokenHasHalfItsLifeLeft(t *testing.T) {
	for _, ttl := range []time.Duration{0, 10 * time.Second, time.Minute, time.Hour} {
		t.Run(ttl.String(), func(t *testing.T) {
			clk := newClock(t0)
			s := mustSigner(t, assertion.Config{TTL: ttl, Keys: []*ecdsa.PrivateKey{mustKey(t)}, Now: clk.Now})
			if ttl == 0 {
				ttl = assertion.DefaultTTL
			}
			id := assertion.Identity{Subject: "auth0|alice", SessionID: "s1"}
			step := ttl / 37
			distinct := map[string]bool{}
			for clk.Since(t0) < int64(10*ttl) {
				tok := mustAssert(t, s, id)
				distinct[tok] = true
				_, payload, _ := segments(t, tok)
				exp := time.Unix(int64(payload["exp"].(float64)), 0)
				if left := exp.Sub(clk.Now()); left < ttl/2 {
					t.Fatalf("at +%v: token has %v left, want >= %v", clk.Now().Sub(t0), left, ttl/2)
				}
				clk.Add(step)
			}
			// 10 TTLs at one signature per TTL/2, plus the first.
			if n := len(distinct); n < 19 || n > 21 {
				t.Errorf("%d signatures in 10 TTLs, want about 20", n)
			}
		})
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	clk := newClock(t0)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(t)}, Now: clk.Now})
	id := assertion.Identity{Subject: "auth0|alice", Email: "alice@example.com", SessionID: "c0ffee"}
	first := mustAssert(t, s, id)
	var tok string
	allocs := testing.AllocsPerRun(1000, func() {
		tok, _ = s.Assertion(id)
	})
	if tok != first {
		t.Fatal("cache miss")
	}
	if allocs != 0 {
		t.Errorf("cache hit allocates %v times, want 0", allocs)
	}
}

func TestConcurrentUse(t *testing.T) {
	clk := newClock(t0)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(t)}, Now: clk.Now})
	set := fetchJWKS(t, s)
	ids := []assertion.Identity{
		{Subject: "a", SessionID: "1"}, {Subject: "b", SessionID: "2"}, {Subject: "c", SessionID: "3"},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				if g == 0 && i%10 == 0 {
					clk.Add(7 * time.Second)
				}
				id := ids[(g+i)%len(ids)]
				tok, err := s.Assertion(id)
				if err == nil {
					var v verified
					if v, err = verify(set, tok, testIssuer, testAudience, clk.Now()); err == nil && v.Subject != id.Subject {
						err = errors.New("wrong subject " + v.Subject)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAssertionErrors(t *testing.T) {
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(t)}})
	if _, err := s.Assertion(assertion.Identity{Email: "a@example.com", SessionID: "s"}); err == nil {
		t.Error("assertion without a subject")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := mustKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := mustKey(t)
	mismatched.PublicKey = mustKey(t).PublicKey
	keys := []*ecdsa.PrivateKey{good}
	tests := []struct {
		name string
		cfg  assertion.Config
		want string
	}{
		{"no issuer", assertion.Config{Audience: testAudience, Keys: keys}, "issuer"},
		{"no audience", assertion.Config{Issuer: testIssuer, Keys: keys}, "audience"},
		{"no keys", assertion.Config{Issuer: testIssuer, Audience: testAudience}, "key"},
		{"nil key", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: []*ecdsa.PrivateKey{good, nil}}, "Keys[1]"},
		{"P-384", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: []*ecdsa.PrivateKey{p384}}, "P-384"},
		{"public half of another key", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: []*ecdsa.PrivateKey{mismatched}}, "Keys[0]"},
		{"duplicate key", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: []*ecdsa.PrivateKey{good, mustKey(t), good}}, "Keys[2] is the same key as Keys[0]"},
		{"TTL too short", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: keys, TTL: 5 * time.Second}, "TTL"},
		{"TTL too long", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: keys, TTL: 2 * time.Hour}, "TTL"},
		{"TTL not whole seconds", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: keys, TTL: 90500 * time.Millisecond}, "TTL"},
		{"negative TTL", assertion.Config{Issuer: testIssuer, Audience: testAudience, Keys: keys, TTL: -time.Minute}, "TTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := assertion.New(tt.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestSignerOwnsItsKeys checks that changing a key after New changes
// neither the signatures nor the JWKS.
func TestSignerOwnsItsKeys(t *testing.T) {
	clk := newClock(t0)
	k := mustKey(t)
	s := mustSigner(t, assertion.Config{Keys: []*ecdsa.PrivateKey{k}, Now: clk.Now})
	set := fetchJWKS(t, s)
	*k = *mustKey(t)
	tok := mustAssert(t, s, assertion.Identity{Subject: "a"})
	if _, err := verify(set, tok, testIssuer, testAudience, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if again := fetchJWKS(t, s); again.Keys[0].KeyID != set.Keys[0].KeyID {
		t.Error("JWKS changed with the caller's key")
	}
}
