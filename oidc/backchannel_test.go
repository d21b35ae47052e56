package oidc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/redisstore"
	"github.com/authproxy/authproxy/session"
)

// fakeRevoker records the revocations asked of it; while err is set, it
// fails them.
type fakeRevoker struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeRevoker) RevokeSID(_ context.Context, sid string) (int, error) {
	return f.revoke("sid:" + sid)
}

func (f *fakeRevoker) RevokeUser(_ context.Context, user string) (int, error) {
	return f.revoke("user:" + user)
}

func (f *fakeRevoker) revoke(call string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.calls = append(f.calls, call)
	return 1, nil
}

func (f *fakeRevoker) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeRevoker) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// The Redis store is the OnceMarker in production; without one of the two
// methods the cross-replica replay check would silently be off.
var _ interface {
	session.Revoker
	session.OnceMarker
} = (*redisstore.Store)(nil)

// onceRevoker also remembers jtis, as the Redis store does for all replicas.
type onceRevoker struct {
	fakeRevoker
	seen map[string]bool
}

func (o *onceRevoker) Seen(_ context.Context, key string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[key], o.err
}

func (o *onceRevoker) Once(_ context.Context, key string, _ time.Duration) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return false, o.err
	}
	if o.seen[key] {
		return false, nil
	}
	o.seen[key] = true
	return true, nil
}

func postLogoutToken(h *Handler, token string) int {
	r := httptest.NewRequest("POST", "/auth/backchannel-logout", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.BackchannelLogout(w, r)
	return w.Code
}

// logoutFixture is a Handler with a Revoker, whose log is kept so a test
// can tell why a logout token was refused.
type logoutFixture struct {
	*fixture
	log *syncBuffer
	now time.Time
	jti int
}

func newLogoutFixture(t *testing.T, rev session.Revoker) *logoutFixture {
	f := &logoutFixture{log: &syncBuffer{}, now: time.Now()}
	f.fixture = newFixture(t, func(c *Config) {
		c.Revoker = rev
		if m, ok := rev.(session.OnceMarker); ok {
			c.Once = m
		}
		c.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	})
	return f
}

// claims returns the claims of a valid logout token with a fresh jti.
func (f *logoutFixture) claims(kv ...any) map[string]any {
	f.jti++
	return withClaims(map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "iat": f.now.Unix(), "exp": f.now.Add(2 * time.Minute).Unix(),
		"jti": "jti-" + strconv.Itoa(f.jti), "sid": "sid-1", "sub": "alice",
		"events": map[string]any{backchannelEvent: map[string]any{}}}, kv...)
}

// post sends token and returns the status and what the handler logged.
func (f *logoutFixture) post(token string) (int, string) {
	f.log.take()
	code := postLogoutToken(f.h, token)
	return code, f.log.take()
}

// TestBackchannelLogout: a valid logout token ends the sessions it names.
func TestBackchannelLogout(t *testing.T) {
	rev := &fakeRevoker{}
	f := newLogoutFixture(t, rev)
	if code, log := f.post(f.sign(t, f.claims())); code != 200 {
		t.Fatalf("valid logout token: %d: %s", code, log)
	}
	if got := rev.take(); len(got) != 1 || got[0] != "sid:sid-1" {
		t.Errorf("revoked %v, want sid:sid-1", got)
	}
	if code, log := f.post(f.sign(t, f.claims("sid", nil))); code != 200 {
		t.Fatalf("sub-only logout token: %d: %s", code, log)
	}
	if got := rev.take(); len(got) != 1 || got[0] != "user:alice" {
		t.Errorf("revoked %v, want user:alice", got)
	}
}

// TestHostileLogoutTokens: every malformed, forged or replayed logout
// token gets 400 and ends nothing, and for the reason under test (the log
// names it): each case differs from a valid token in one property only,
// so it fails without its own defence.
func TestHostileLogoutTokens(t *testing.T) {
	rev := &fakeRevoker{}
	f := newLogoutFixture(t, rev)
	sign := func(c map[string]any) string { return f.sign(t, c) }
	replayed := sign(f.claims())
	if code, log := f.post(replayed); code != 200 {
		t.Fatalf("first delivery: %d: %s", code, log)
	}
	rev.take()

	for _, tt := range []struct {
		name, token, reason string
	}{
		{"replayed jti", replayed, "logout token replayed"},
		{"empty", "", "no logout_token"},
		{"garbage", "a.b.c", "malformed jwt"},
		{"missing jti", sign(f.claims("jti", nil)), "missing required claim 'jti'"},
		{"empty jti", sign(f.claims("jti", "")), "missing required claim 'jti'"},
		{"missing exp", sign(f.claims("exp", nil)), "must contain an 'exp' claim"},
		{"expired", sign(f.claims("exp", f.now.Add(-time.Minute).Unix())), "token is expired"},
		{"missing events", sign(f.claims("events", nil)), "missing required " + backchannelEvent},
		{"wrong event", sign(f.claims("events", map[string]any{"http://example.com/other": map[string]any{}})), "missing required " + backchannelEvent},
		{"event not an object", sign(f.claims("events", map[string]any{backchannelEvent: "yes"})), "not a JSON object"},
		{"event null", sign(f.claims("events", map[string]any{backchannelEvent: nil})), "not a JSON object"},
		{"nonce present", sign(f.claims("nonce", "n")), "must not contain a 'nonce' claim"},
		{"both sid and sub missing", sign(f.claims("sid", nil, "sub", nil)), "must contain a 'sub' claim, a 'sid' claim"},
		{"wrong audience", sign(f.claims("aud", "other-client")), "expected logout token audience"},
		{"wrong issuer", sign(f.claims("iss", "https://evil.example/")), "issued by a different provider"},
		{"missing iat", sign(f.claims("iat", nil)), "no iat"},
		{"iat an hour ago", sign(f.claims("iat", f.now.Add(-time.Hour).Unix())), "iat too far from now"},
		{"iat in the future", sign(f.claims("iat", f.now.Add(time.Hour).Unix())), "iat too far from now"},
		{"alg none", unsigned(f.claims()), "malformed jwt"},
		{"HS256 with the public key", hs256(t, f.claims(), f.idp.PublicKey()), "malformed jwt"},
		{"an ID token", sign(map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sub": "alice", "nonce": "n",
			"iat": f.now.Unix(), "exp": f.now.Add(time.Hour).Unix(), "jti": "id-token"}), "missing required " + backchannelEvent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, log := f.post(tt.token)
			if code != 400 {
				t.Errorf("%d, want 400", code)
			}
			if !strings.Contains(log, tt.reason) {
				t.Errorf("refused for another reason than %q: %s", tt.reason, log)
			}
			if got := rev.take(); len(got) != 0 {
				t.Errorf("revoked %v", got)
			}
		})
	}
}

// TestLogoutRetryAfterStoreFailure: the jti is recorded only once the
// sessions are ended, so the provider's retry after a 503 works; after
// that, the same token is a replay.
func TestLogoutRetryAfterStoreFailure(t *testing.T) {
	for name, rev := range map[string]interface {
		session.Revoker
		fail(error)
		take() []string
	}{
		"in process":    &fakeRevoker{},
		"with a marker": &onceRevoker{seen: map[string]bool{}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newLogoutFixture(t, rev)
			tok := f.sign(t, f.claims())
			rev.fail(errors.New("store down"))
			if code, log := f.post(tok); code != http.StatusServiceUnavailable {
				t.Fatalf("store down: %d, want 503: %s", code, log)
			}
			rev.fail(nil)
			if code, log := f.post(tok); code != 200 {
				t.Fatalf("retry: %d, want 200: %s", code, log)
			}
			if got := rev.take(); len(got) != 1 {
				t.Errorf("retry revoked %v", got)
			}
			if code, _ := f.post(tok); code != 400 {
				t.Errorf("replay after success: %d, want 400", code)
			}
			if got := rev.take(); len(got) != 0 {
				t.Errorf("replay revoked %v", got)
			}
		})
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

// TestBackchannelReplayOnAnotherReplica: a jti another replica has already
// acted on (the store says so) is refused here too, before it ends
// anything.
func TestBackchannelReplayOnAnotherReplica(t *testing.T) {
	shared := &onceRevoker{seen: map[string]bool{}}
	a := newFixture(t, func(c *Config) { c.Revoker, c.Once = shared, shared })
	tok, err := a.idp.SignIDToken(map[string]any{"iss": a.idp.Issuer(), "aud": clientID, "sid": "s1", "jti": "j1",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "events": map[string]any{backchannelEvent: map[string]any{}}})
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
	// The store cannot be asked: 503, so the provider tries again.
	shared.fail(errors.New("store down"))
	if code := postLogoutToken(b, a.sign(t, map[string]any{"iss": a.idp.Issuer(), "aud": clientID, "sid": "s1", "jti": "j2",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "events": map[string]any{backchannelEvent: map[string]any{}}})); code != http.StatusServiceUnavailable {
		t.Errorf("store down at the jti check: %d, want 503", code)
	}
}
