package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// asymmetricAlgs are the signature algorithms a provider's JWKS can verify.
// HS* is absent: an ID token MACed with a public key must never verify.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// DefaultKeyRefetchInterval is the least time between two JWKS fetches
// triggered by tokens with an unknown key.
const DefaultKeyRefetchInterval = 10 * time.Second

// maxJWKSBytes bounds what a broken or hostile JWKS endpoint can make us read.
const maxJWKSBytes = 1 << 20

// keySet verifies signatures against the provider's JWKS. Unlike go-oidc's
// RemoteKeySet, which refetches for every token with an unknown key id, it
// refetches at most once per interval: a rotated key is picked up within
// that bound, and a flood of garbage tokens cannot make us hammer the
// provider.
type keySet struct {
	url      string
	client   *http.Client
	interval time.Duration
	now      func() time.Time

	keys atomic.Pointer[[]jose.JSONWebKey]
	// onError, if set, is called when a fetch fails.
	onError func()

	mu        sync.Mutex // serializes fetches; guards lastFetch
	lastFetch time.Time
}

func newKeySet(url string, client *http.Client, interval time.Duration, now func() time.Time) *keySet {
	if interval <= 0 {
		interval = DefaultKeyRefetchInterval
	}
	k := &keySet{url: url, client: client, interval: interval, now: now}
	k.keys.Store(&[]jose.JSONWebKey{})
	return k
}

// VerifySignature implements go-oidc's KeySet. go-oidc checks alg, iss,
// aud and expiry itself.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("jwt must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	if payload, ok := verifyWith(jws, kid, *k.keys.Load()); ok {
		return payload, nil
	}
	keys, err := k.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if payload, ok := verifyWith(jws, kid, keys); ok {
		return payload, nil
	}
	return nil, errors.New("no key of the provider verifies the signature")
}

func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// refresh fetches the JWKS unless that was done within the interval, and
// returns the current keys either way.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < k.interval {
		return *k.keys.Load(), nil
	}
	k.lastFetch = now
	keys, err := k.fetch(ctx)
	if err != nil {
		if k.onError != nil {
			k.onError()
		}
		return nil, fmt.Errorf("%w: fetch signing keys: %w", errProviderDown, err)
	}
	k.keys.Store(&keys)
	return keys, nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks is not JSON: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		// Keys of types we cannot use (or cannot parse) are skipped, not
		// fatal: providers publish encryption keys in the same set.
		if err := key.UnmarshalJSON(raw); err != nil || !key.Valid() || !key.IsPublic() || key.Use == "enc" {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks holds no usable signing key")
	}
	return keys, nil
}
