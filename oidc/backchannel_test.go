package oidc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeRevoker struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeRevoker) RevokeSID(_ context.Context, sid string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "sid:"+sid)
	return 1, nil
}

func (f *fakeRevoker) RevokeUser(_ context.Context, user string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "user:"+user)
	return 2, nil
}

func (f *fakeRevoker) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func postLogoutToken(h http.Handler, token string) int {
	r := httptest.NewRequest("POST", "/auth/backchannel-logout", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestBackchannelLogout: a valid logout token ends the sessions it names;
// every malformed or forged one gets 400 and ends nothing.
func TestBackchannelLogout(t *testing.T) {
	rev := &fakeRevoker{}
	f := newFixture(t, func(c *Config) { c.Revoker = rev })
	now := time.Now()
	jti := 0
	base := func() map[string]any {
		jti++
		return map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": "jti-" + string(rune('a'+jti)), "sid": "sid-1", "sub": "alice",
			"events": map[string]any{backchannelEvent: map[string]any{}}}
	}
	with := func(kv ...any) map[string]any { return withClaims(base(), kv...) }
	sign := func(c map[string]any) string { return f.sign(t, c) }

	valid := sign(base())
	if code := postLogoutToken(f.h, valid); code != 200 {
		t.Fatalf("valid logout token: %d", code)
	}
	if got := rev.take(); len(got) != 1 || got[0] != "sid:sid-1" {
		t.Errorf("revoked %v, want sid:sid-1", got)
	}
	if code := postLogoutToken(f.h, sign(with("sid", nil))); code != 200 {
		t.Fatalf("sub-only logout token: %d", code)
	}
	if got := rev.take(); len(got) != 1 || got[0] != "user:alice" {
		t.Errorf("revoked %v, want user:alice", got)
	}

	for name, tok := range map[string]string{
		"replayed":                  valid,
		"empty":                     "",
		"garbage":                   "a.b.c",
		"no events":                 sign(with("events", nil)),
		"other event":               sign(with("events", map[string]any{"http://example.com/other": map[string]any{}})),
		"event not an object":       sign(with("events", map[string]any{backchannelEvent: "yes"})),
		"with nonce":                sign(with("nonce", "n")),
		"wrong audience":            sign(with("aud", "other-client")),
		"wrong issuer":              sign(with("iss", "https://evil.example/")),
		"expired":                   sign(with("exp", now.Add(-time.Minute).Unix())),
		"iat an hour ago":           sign(with("iat", now.Add(-time.Hour).Unix(), "exp", nil)),
		"iat in the future":         sign(with("iat", now.Add(time.Hour).Unix())),
		"no iat":                    sign(with("iat", nil)),
		"neither sid nor sub":       sign(with("sid", nil, "sub", nil)),
		"alg none":                  unsigned(base()),
		"HS256 with the public key": hs256(t, base(), f.idp.PublicKey()),
		"an ID token":               sign(map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sub": "alice", "nonce": "n", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}),
	} {
		if code := postLogoutToken(f.h, tok); code != 400 {
			t.Errorf("%s: %d, want 400", name, code)
		}
		if got := rev.take(); len(got) != 0 {
			t.Errorf("%s: revoked %v", name, got)
		}
	}

	r := httptest.NewRequest("GET", "/auth/backchannel-logout", nil)
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
}

func TestBackchannelLogoutNeedsServerSideStore(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.idp.SignIDToken(map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sid": "s", "iat": time.Now().Unix(),
		"events": map[string]any{backchannelEvent: map[string]any{}}})
	if code := postLogoutToken(f.h, tok); code != http.StatusNotImplemented {
		t.Errorf("cookie store: %d, want 501", code)
	}
}

// onceRevoker also remembers jtis, as the Redis store does for all replicas.
type onceRevoker struct {
	fakeRevoker
	seen map[string]bool
}

func (o *onceRevoker) Once(_ context.Context, key string, _ time.Duration) (bool, error) {
	if o.seen[key] {
		return false, nil
	}
	o.seen[key] = true
	return true, nil
}

// TestBackchannelReplayOnAnotherReplica: a jti another replica has already
// seen (the store says so) is refused here too.
func TestBackchannelReplayOnAnotherReplica(t *testing.T) {
	shared := &onceRevoker{seen: map[string]bool{}}
	a := newFixture(t, func(c *Config) { c.Revoker, c.Once = shared, shared })
	tok, err := a.idp.SignIDToken(map[string]any{"iss": a.idp.Issuer(), "aud": clientID, "sid": "s1", "jti": "j1",
		"iat": time.Now().Unix(), "events": map[string]any{backchannelEvent: map[string]any{}}})
	if err != nil {
		t.Fatal(err)
	}
	if code := postLogoutToken(a.h, tok); code != 200 {
		t.Fatalf("first delivery: %d", code)
	}
	shared.take()
	// Another replica: its own in-process memory is empty, the store's is not.
	b, err := New(t.Context(), Config{Issuer: a.idp.Issuer(), ClientID: clientID, ClientSecret: secret, RedirectURL: callbackURL,
		Scopes: []string{"openid"}, SessionLifetime: time.Hour, HTTPClient: &http.Client{Timeout: 5 * time.Second}, Revoker: shared, Once: shared}, a.store, a.store)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, b)
	if code := postLogoutToken(b, tok); code != 400 {
		t.Errorf("replay on another replica: %d, want 400", code)
	}
	if got := shared.take(); len(got) != 0 {
		t.Errorf("replay ended sessions: %v", got)
	}
}
