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

	gooidc "github.com/coreos/go-oidc/v3/oidc"
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
// tells tokens apart by where they came from:
//
//   - an ID token from the token endpoint (TLS, in exchange for our own
//     code) with an unknown key means the provider rotated: refetch at once,
//     so a rotation never fails a login (see trusted);
//   - a token anyone can send (bearer access tokens, back-channel logout
//     tokens) refetches at most once per interval after a successful fetch,
//     so a flood of made-up key ids cannot make us hammer the provider.
//
// Concurrent refetches are coalesced into one. A fetch runs detached from
// the request that asked for it, bounded by the HTTP client's timeout, so an
// aborted request cannot abort it; a failed fetch does not start the quiet
// interval.
type keySet struct {
	url      string
	client   *http.Client
	interval time.Duration
	now      func() time.Time

	keys atomic.Pointer[[]jose.JSONWebKey]
	// onError, if set, is called when a fetch fails.
	onError func()
	// redact, if set, cleans a failed fetch's error (see Handler.fromProvider).
	redact func(error) error

	mu sync.Mutex // serializes fetches; guards the fields below
	// gen counts successful fetches, so that callers who waited for another
	// caller's fetch use its keys instead of fetching again.
	gen       uint64
	lastFetch time.Time // of the last successful fetch
}

func newKeySet(url string, client *http.Client, interval time.Duration, now func() time.Time) *keySet {
	if interval <= 0 {
		interval = DefaultKeyRefetchInterval
	}
	k := &keySet{url: url, client: client, interval: interval, now: now}
	k.keys.Store(&[]jose.JSONWebKey{})
	return k
}

// VerifySignature implements go-oidc's KeySet for tokens from untrusted
// channels: an unknown key refetches at most once per interval.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	return k.verify(ctx, raw, false)
}

// trusted is the key set as seen by tokens from the token endpoint: an
// unknown key refetches at once.
func (k *keySet) trusted() gooidc.KeySet { return trustedKeys{k} }

type trustedKeys struct{ k *keySet }

// VerifySignature implements go-oidc's KeySet.
func (t trustedKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	return t.k.verify(ctx, raw, true)
}

// verify checks the signature of raw; go-oidc checks alg, iss, aud and
// expiry itself.
func (k *keySet) verify(ctx context.Context, raw string, trusted bool) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("jwt must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	seen := k.gen
	k.mu.Unlock()
	if payload, ok := verifyWith(jws, kid, *k.keys.Load()); ok {
		return payload, nil
	}
	keys, err := k.refresh(ctx, seen, trusted)
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

// refresh returns keys newer than generation seen: those another caller
// fetched meanwhile, or freshly fetched ones. Without force it fetches only
// if the last successful fetch is older than the interval, and otherwise
// returns the current keys.
func (k *keySet) refresh(ctx context.Context, seen uint64, force bool) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen != seen {
		return *k.keys.Load(), nil
	}
	if !force && !k.lastFetch.IsZero() && k.now().Sub(k.lastFetch) < k.interval {
		return *k.keys.Load(), nil
	}
	// Detached: the keys serve every request, not just the one that asked.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.client.Timeout)
	defer cancel()
	keys, err := k.fetch(fctx)
	if err != nil {
		if k.onError != nil {
			k.onError()
		}
		if k.redact != nil {
			err = k.redact(err)
		}
		return nil, fmt.Errorf("%w: fetch signing keys: %w", errProviderDown, err)
	}
	k.keys.Store(&keys)
	k.gen++
	k.lastFetch = k.now()
	return keys, nil
}

// warm fetches the keys unless a fetch has succeeded already.
func (k *keySet) warm(ctx context.Context) error {
	_, err := k.refresh(ctx, 0, false)
	return err
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(withCall(ctx, CallJWKS), http.MethodGet, k.url, nil)
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
