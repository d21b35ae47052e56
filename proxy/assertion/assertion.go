// Package assertion signs the identity that authproxy forwards, so that an
// upstream can check a request really came through the proxy, as Google
// IAP's x-goog-iap-jwt-assertion and Pomerium's X-Pomerium-Jwt-Assertion
// allow.
//
// The assertion is a compact JWT signed with ES256. Its protected header
// carries typ "JWT" and the kid of the signing key, and its claims are iss,
// aud, sub, email (when known), iat and exp = iat + TTL. The public keys are
// served as a JWKS by [Signer.JWKS], and the kid of each key is its RFC 7638
// thumbprint. An upstream verifies an assertion with that JWKS only. It
// accepts ES256 and nothing else, picks the key by kid, and checks iss, aud
// and exp.
//
// # Cost per request
//
// Signing costs tens of microseconds and over a hundred allocations, so
// assertions are cached per [Identity]. A cached assertion is reused while
// more than half of its TTL remains, and is re-signed once it is past that
// point. So a session costs
// one signature per TTL/2, a cache hit is a map lookup under a read lock
// and allocates nothing, and every assertion an upstream receives is still
// valid for at least TTL/2 (2m30s by default). That margin covers clock
// skew and slow requests. A fixed one-minute margin would not grow with the
// TTL. The cache holds at most 10,000 entries, a few MB. When it is full,
// entries past their refresh point go first, then the one closest to it.
// An evicted entry costs only a re-sign.
//
// # Key rotation
//
// Keys[0] signs and every key is published. An upstream that caches the
// JWKS for its max-age (300 s) and does not refetch on an unknown kid needs
// three steps:
//
//  1. Keys [old, new]: new is published, old still signs. Wait at least
//     5 minutes, the JWKS max-age.
//  2. Keys [new, old]: new signs, and old still verifies the assertions
//     signed before. Wait at least the TTL.
//  3. Keys [new].
//
// Going straight to [new, old] is enough for verifiers that refetch the
// JWKS when they see an unknown kid.
package assertion

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authproxy/authproxy/internal/bounded"
)

const (
	// Header is the request header that carries the assertion to the
	// upstream. The proxy strips it from client requests, as it does X-User.
	Header = "X-Authproxy-Jwt-Assertion"
	// DefaultTTL is the assertion lifetime when Config.TTL is zero.
	DefaultTTL = 5 * time.Minute
	// MinTTL and MaxTTL bound Config.TTL. JWT times are whole seconds, so
	// a shorter TTL would fall within clock skew. A longer one would let a
	// leaked assertion outlive the session by too much.
	MinTTL = 10 * time.Second
	MaxTTL = time.Hour

	// maxEntries bounds the assertion cache.
	maxEntries = 10_000
	// jwksMaxAge is how long clients may cache the JWKS, in seconds.
	jwksMaxAge = 300
)

// Identity is what an assertion states about the caller.
type Identity struct {
	// Subject is the sub claim. It is required.
	Subject string
	// Email is the email claim. It is omitted when empty.
	Email string
	// SessionID keeps the cache entries of different sessions apart. It is
	// not put into the token. The caller chooses it: it must stay the same
	// for the whole session and must not be a secret. A hash of the
	// session cookie, or of the session's user and expiry, will do. The
	// cache key is the whole Identity, so a cached assertion is never
	// handed out for a different subject or email, even if two sessions
	// have the same SessionID.
	SessionID string
}

// Config configures a Signer.
type Config struct {
	// Issuer is the iss claim, typically the proxy's public origin.
	// It is required.
	Issuer string
	// Audience is the aud claim, typically the upstream's origin or
	// AUTHPROXY_IDENTITY_AUDIENCE. It is required.
	Audience string
	// TTL is the assertion lifetime: DefaultTTL if zero, otherwise a whole
	// number of seconds within [MinTTL, MaxTTL].
	TTL time.Duration
	// Keys are P-256 private keys. Keys[0] signs, and all of them are
	// published in the JWKS, so that assertions signed before a rotation
	// still verify.
	Keys []*ecdsa.PrivateKey
	// Now returns the current time. It defaults to time.Now.
	Now func() time.Time
}

// Signer issues cached identity assertions and serves the matching JWKS.
// It is safe for concurrent use and exposes nothing mutable.
type Signer struct {
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
	signer   jose.Signer
	jwks     []byte // the JSON body served by JWKS
	// cache holds signed assertions until their refresh point, iat + TTL/2.
	cache *bounded.Map[Identity, string]
}

// New checks cfg and returns a Signer. Errors never contain key material.
func New(cfg Config) (*Signer, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("assertion: issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("assertion: audience is required")
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL || ttl > MaxTTL || ttl%time.Second != 0 {
		return nil, fmt.Errorf("assertion: TTL %v must be a whole number of seconds between %v and %v", ttl, MinTTL, MaxTTL)
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("assertion: at least one signing key is required")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}

	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(cfg.Keys))}
	seen := make(map[string]int, len(cfg.Keys))
	var signKey *ecdsa.PrivateKey
	for i, k := range cfg.Keys {
		k, err := ownKey(k)
		if err != nil {
			return nil, fmt.Errorf("assertion: Keys[%d]: %w", i, err)
		}
		if i == 0 {
			signKey = k
		}
		kid, err := keyID(&k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("assertion: Keys[%d]: %w", i, err)
		}
		if j, dup := seen[kid]; dup {
			return nil, fmt.Errorf("assertion: Keys[%d] is the same key as Keys[%d]", i, j)
		}
		seen[kid] = i
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.PublicKey,
			KeyID:     kid,
			Algorithm: string(jose.ES256),
			Use:       "sig",
		})
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion: encode JWKS: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: signKey, KeyID: set.Keys[0].KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("assertion: signer: %w", err)
	}
	return &Signer{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		ttl:      ttl,
		now:      now,
		signer:   signer,
		jwks:     body,
		cache:    bounded.New[Identity, string](maxEntries),
	}, nil
}

// ownKey checks that k is a valid P-256 private key whose public half
// matches it, and returns a copy, so that a caller who changes k later does
// not change the Signer.
func ownKey(k *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if k == nil || k.Curve == nil {
		return nil, errors.New("key is nil")
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("curve %s, want P-256", k.Curve.Params().Name)
	}
	raw, err := k.Bytes()
	if err != nil {
		return nil, errors.New("invalid private key")
	}
	own, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	if err != nil {
		return nil, errors.New("invalid private key")
	}
	want, err := k.PublicKey.Bytes()
	if err != nil {
		return nil, errors.New("invalid public key")
	}
	got, err := own.PublicKey.Bytes()
	if err != nil || !bytes.Equal(got, want) {
		return nil, errors.New("public key does not match the private key")
	}
	return own, nil
}

// keyID returns the RFC 7638 SHA-256 thumbprint of pub, base64url-encoded.
func keyID(pub *ecdsa.PublicKey) (string, error) {
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// claims is the assertion's payload.
type claims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	Subject  string `json:"sub"`
	Email    string `json:"email,omitempty"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// Assertion returns a signed assertion of id. While a cached assertion of
// the same id has more than TTL/2 left, it returns that one, and does not
// sign or allocate.
func (s *Signer) Assertion(id Identity) (string, error) {
	now := s.now()
	if token, ok := s.cache.Get(id, now); ok {
		return token, nil
	}

	if id.Subject == "" {
		return "", errors.New("assertion: identity has no subject")
	}
	iat := now.Unix()
	payload, err := json.Marshal(claims{
		Issuer:   s.issuer,
		Audience: s.audience,
		Subject:  id.Subject,
		Email:    id.Email,
		IssuedAt: iat,
		Expiry:   iat + int64(s.ttl/time.Second),
	})
	if err != nil {
		return "", fmt.Errorf("assertion: encode claims: %w", err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("assertion: serialize: %w", err)
	}

	s.cache.Put(id, token, time.Unix(iat, 0).Add(s.ttl/2), now)
	return token, nil
}

// JWKS returns a handler that serves the public keys as a JSON Web Key Set
// ({"keys":[...]}, each with kid, alg ES256 and use sig). Clients may cache
// the response for 300 seconds.
func (s *Signer) JWKS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(jwksMaxAge))
		h.Set("Content-Length", strconv.Itoa(len(s.jwks)))
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(s.jwks)
	})
}
