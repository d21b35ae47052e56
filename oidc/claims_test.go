package oidc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
	"github.com/authproxy/authproxy/session"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// take returns what was logged since the last take.
func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// oddClaims is a fixture whose provider lets each test change the claims
// of the tokens it issues, and whose log is kept.
type oddClaims struct {
	*fixture
	log    *syncBuffer
	mutate atomic.Pointer[func(kind string, c map[string]any)]
}

func newOddClaims(t *testing.T, opts oidctest.Options, mutate ...func(*Config)) *oddClaims {
	t.Helper()
	o := &oddClaims{log: &syncBuffer{}}
	opts.TokenClaims = func(kind string, c map[string]any) {
		if m := o.mutate.Load(); m != nil {
			(*m)(kind, c)
		}
	}
	mutate = append(mutate, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(o.log, nil)) })
	o.fixture = newFixtureIDP(t, opts, mutate...)
	return o
}

// set makes the provider apply m to the ID token's claims.
func (o *oddClaims) setIDToken(m func(c map[string]any)) {
	f := func(kind string, c map[string]any) {
		if kind == "id_token" {
			m(c)
		}
	}
	o.mutate.Store(&f)
}

// hostileUsers are user claim values that a header, a log or an upstream
// could read as another user, or that are not a user at all. Each must
// refuse the login with the rule it broke.
var hostileUsers = []struct {
	name string
	v    any // nil: the claim is absent
	rule string
}{
	{"absent", nil, "is missing"},
	{"leading space (reached the upstream as admin)", " admin", "white space"},
	{"trailing space", "admin ", "white space"},
	{"only spaces (an empty X-User)", "   ", "white space"},
	{"empty", "", "is empty"},
	{"leading tab", "\tadmin", "white space"},
	{"trailing line feed", "admin\n", "white space"},
	{"header injection", "admin\r\nX-Admin: 1", "control character"},
	{"inner NUL", "ad\x00min", "control character"},
	{"no-break space", "\u00a0admin", "white space"},
	{"byte order mark", "\ufeffadmin", "white space"},
	{"zero-width space", "admin\u200b", "white space"},
	{"line separator", "ad\u2028min", "control character"},
	{"replacement character (invalid UTF-8)", "ad\ufffdmin", "UTF-8"},
	{"257 bytes", strings.Repeat("a", 257), "longer than 256"},
	{"number", 42, "not a JSON string"},
	{"boolean", true, "not a JSON string"},
	{"list", []string{"admin"}, "not a JSON string"},
	{"object", map[string]any{"id": "admin"}, "not a JSON string"},
}

// TestUserClaimExactOrRefused: the user claim is used exactly as sent, or
// the login is refused with missing_claim/invalid_claim and a log line that
// names the rule, never the value.
func TestUserClaimExactOrRefused(t *testing.T) {
	for _, userClaim := range []string{"sub", "https://example.com/uid"} {
		t.Run(userClaim, func(t *testing.T) { testUserClaim(t, userClaim) })
	}
}

func testUserClaim(t *testing.T, userClaim string) {
	o := newOddClaims(t, oidctest.Options{}, func(c *Config) { c.UserClaim = userClaim })
	type row struct {
		name string
		set  func(c map[string]any)
		code string
		rule string
	}
	var rows []row
	for _, u := range hostileUsers {
		code := "invalid_claim"
		rule := u.rule
		switch {
		case u.v == nil:
			code = "missing_claim"
		case userClaim == "sub" && rule == "not a JSON string":
			code, rule = "invalid_id_token", "cannot unmarshal" // go-oidc's own check
		}
		rows = append(rows, row{u.name, func(c map[string]any) {
			if userClaim != "sub" {
				c[userClaim] = c["sub"]
			}
			withClaims(c, userClaim, u.v)
		}, code, rule})
	}
	// go-oidc reads a JSON string "9999999999" as a time.
	for _, name := range []string{"exp", "iat", "nbf"} {
		rows = append(rows, row{name + " as a string", func(c map[string]any) {
			c[userClaim] = "alice"
			c[name] = "9999999999"
			if name != "exp" {
				c[name] = "1"
			}
		}, "invalid_claim", `\"` + name + `\" claim is not a JSON number`})
	}
	rows = append(rows, row{"exp missing", func(c map[string]any) { c[userClaim] = "alice"; delete(c, "exp") }, "invalid_id_token", ""})
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			o.setIDToken(tt.set)
			defer o.mutate.Store(nil)
			before := len(o.log.String())
			b := &browser{}
			resp := b.do(o.h, callbackPath(o.authorize(t, o.startLogin(t, b, "/"), "alice")))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			if sess, err := o.store.Load(requestWith(b)); err == nil {
				t.Errorf("a session was created for %q", sess.User)
			}
			logged := o.log.String()[before:]
			if !strings.Contains(logged, `"reason":"`+tt.code+`"`) || !strings.Contains(logged, tt.rule) {
				t.Errorf("log does not say %s, %q:\n%s", tt.code, tt.rule, logged)
			}
			if strings.Contains(logged, "admin") {
				t.Errorf("log shows the value:\n%s", logged)
			}
		})
	}
	// The same provider, with a plain user claim: the login works.
	o.setIDToken(func(c map[string]any) { c[userClaim] = "alice" })
	defer o.mutate.Store(nil)
	b := &browser{}
	if resp := b.do(o.h, callbackPath(o.authorize(t, o.startLogin(t, b, "/"), "alice"))); resp.StatusCode != http.StatusFound {
		t.Fatalf("plain login: %d", resp.StatusCode)
	}
}

// TestForwardedClaimsLeftOut: email and name are forwarded only as sent;
// a value that breaks the rules is left out (the login still works), and
// the email also when the provider does not say it is verified.
func TestForwardedClaimsLeftOut(t *testing.T) {
	o := newOddClaims(t, oidctest.Options{})
	for _, tt := range []struct {
		name        string
		set         func(c map[string]any)
		email, nick string
	}{
		{"plain", func(c map[string]any) {}, "alice@example.test", "alice"},
		{"email with a leading space", func(c map[string]any) { c["email"] = " root@example.test" }, "", "alice"},
		{"email with a line break", func(c map[string]any) { c["email"] = "a@example.test\r\nX-User: root" }, "", "alice"},
		{"email a list", func(c map[string]any) { c["email"] = []string{"root@example.test"} }, "", "alice"},
		{"email unverified", func(c map[string]any) { c["email_verified"] = false }, "", "alice"},
		{"email_verified missing", func(c map[string]any) { delete(c, "email_verified") }, "", "alice"},
		{"email_verified the string false", func(c map[string]any) { c["email_verified"] = "false" }, "", "alice"},
		{"email_verified the string true (Cognito)", func(c map[string]any) { c["email_verified"] = "true" }, "alice@example.test", "alice"},
		{"name with trailing space", func(c map[string]any) { c["name"] = "Root " }, "alice@example.test", ""},
		{"name only spaces", func(c map[string]any) { c["name"] = "  " }, "alice@example.test", ""},
		{"name with a NUL", func(c map[string]any) { c["name"] = "Ro\x00ot" }, "alice@example.test", ""},
		{"name a number", func(c map[string]any) { c["name"] = 7 }, "alice@example.test", ""},
		{"name over-long", func(c map[string]any) { c["name"] = strings.Repeat("n", 300) }, "alice@example.test", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o.setIDToken(tt.set)
			defer o.mutate.Store(nil)
			sess := o.loginSession(t, "alice")
			if sess.User != "alice" || sess.Email != tt.email || sess.Name != tt.nick {
				t.Errorf("session user %q email %q name %q, want alice, %q, %q", sess.User, sess.Email, sess.Name, tt.email, tt.nick)
			}
		})
	}
}

// TestBearerClaimsExactOrRefused: the same rules for the user of a bearer
// token (a custom user claim: go-oidc itself refuses a sub that is no
// string).
func TestBearerClaimsExactOrRefused(t *testing.T) {
	const uid = "https://example.com/uid"
	f := newFixture(t, func(c *Config) { c.Audience = apiAudience; c.UserClaim = uid })
	now := time.Now()
	base := func() map[string]any {
		return map[string]any{"iss": f.idp.Issuer(), "aud": apiAudience, "sub": "m1", uid: "machine-1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "email": "m@example.test", "email_verified": true, "name": "M"}
	}
	r := httptest.NewRequest("GET", "/api", nil)
	if sess, err := f.h.VerifyAccessToken(r, f.sign(t, base())); err != nil || sess.User != "machine-1" || sess.Email != "m@example.test" || sess.Name != "M" {
		t.Fatalf("valid token: %+v, %v", sess, err)
	}
	for _, u := range hostileUsers {
		if sess, err := f.h.VerifyAccessToken(r, f.sign(t, withClaims(base(), uid, u.v))); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), u.rule) {
			t.Errorf("sub %s: %+v, %v; want ErrInvalidToken saying %q", u.name, sess, err, u.rule)
		}
	}
	for _, kv := range [][]any{{"exp", "9999999999"}, {"iat", "1"}, {"nbf", "1"}, {"exp", nil}} {
		if sess, err := f.h.VerifyAccessToken(r, f.sign(t, withClaims(base(), kv...))); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%v: %+v, %v; want ErrInvalidToken", kv, sess, err)
		}
	}
	for name, kv := range map[string][]any{
		"email unverified": {"email_verified", false},
		"email with space": {"email", "m@example.test "},
	} {
		if sess, err := f.h.VerifyAccessToken(r, f.sign(t, withClaims(base(), kv...))); err != nil || sess.Email != "" {
			t.Errorf("%s: email %q, %v; want the token accepted without the email", name, sess.Email, err)
		}
	}
}

// TestRefreshUpdatesIdentity: a refresh takes email, name and groups from
// the new ID token, and its user claim obeys the same rules.
func TestRefreshUpdatesIdentity(t *testing.T) {
	o := newOddClaims(t, oidctest.Options{RotateRefreshTokens: true, Claims: func(user string) map[string]any {
		return map[string]any{"email": user + "@example.test", "email_verified": true, "groups": []string{"staff"}}
	}}, func(c *Config) {
		c.Scopes = []string{"openid", "email", "offline_access"}
		c.KeepClaims = []string{"groups"}
	})
	sess := o.loginSession(t, "alice")
	if sess.Email != "alice@example.test" || sess.Name != "alice" {
		t.Fatalf("login: %+v", sess)
	}
	o.setIDToken(func(c map[string]any) {
		c["email"], c["name"], c["groups"] = "alice@new.example", "Alice N.", []string{"admins"}
	})
	next, err := o.h.Refresh(context.Background(), sess)
	if err != nil || next.Email != "alice@new.example" || next.Name != "Alice N." || len(next.Claims["groups"].([]any)) != 1 || next.Claims["groups"].([]any)[0] != "admins" {
		t.Fatalf("after refresh: %+v, %v; want the new email, name and groups", next, err)
	}
	o.setIDToken(func(c map[string]any) { c["email_verified"] = false; c["name"] = " Root" })
	if later, err := o.h.Refresh(context.Background(), next); err != nil || later.Email != "" || later.Name != "" {
		t.Errorf("refresh with an unverified email and a padded name: email %q name %q, %v; want both left out", later.Email, later.Name, err)
	}
	for _, u := range []any{" alice", "alice ", "al\nice", 7, nil} {
		o.setIDToken(func(c map[string]any) { withClaims(c, "sub", u) })
		fresh := o.loginSessionAs(t, "alice")
		if _, err := o.h.Refresh(context.Background(), fresh); !errors.Is(err, ErrRefreshRejected) {
			t.Errorf("refreshed sub %q: %v, want ErrRefreshRejected", u, err)
		}
	}
}

// loginSessionAs logs in with an unchanged ID token, then restores the
// provider's mutation for what follows.
func (o *oddClaims) loginSessionAs(t *testing.T, user string) session.Session {
	t.Helper()
	m := o.mutate.Swap(nil)
	defer o.mutate.Store(m)
	return o.loginSession(t, user)
}

// TestEmailAsUserMustBeVerified: with AUTHPROXY_USER_CLAIM=email, an
// address the provider does not vouch for is no user (anyone may sign up
// with another's address), at login and in bearer tokens.
func TestEmailAsUserMustBeVerified(t *testing.T) {
	o := newOddClaims(t, oidctest.Options{}, func(c *Config) { c.UserClaim = "email"; c.Audience = apiAudience })
	now := time.Now()
	for _, tt := range []struct {
		name     string
		verified any // nil: absent
		ok       bool
	}{
		{"verified", true, true},
		{"verified, as a string", "true", true},
		{"unverified", false, false},
		{"email_verified absent", nil, false},
		{"email_verified the string false", "false", false},
		{"email_verified 1", 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o.setIDToken(func(c map[string]any) { withClaims(c, "email_verified", tt.verified) })
			defer o.mutate.Store(nil)
			b := &browser{}
			resp := b.do(o.h, callbackPath(o.authorize(t, o.startLogin(t, b, "/"), "victim")))
			if ok := resp.StatusCode == http.StatusFound; ok != tt.ok {
				t.Errorf("login: status %d, want success %v", resp.StatusCode, tt.ok)
			}
			tok := o.sign(t, withClaims(map[string]any{"iss": o.idp.Issuer(), "aud": apiAudience, "sub": "s", "email": "victim@example.test",
				"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, "email_verified", tt.verified))
			if _, err := o.h.VerifyAccessToken(httptest.NewRequest("GET", "/", nil), tok); (err == nil) != tt.ok {
				t.Errorf("bearer token: %v, want success %v", err, tt.ok)
			}
		})
	}
}
