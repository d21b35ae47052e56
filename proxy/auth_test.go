package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/proxy/assertion"
	"github.com/authproxy/authproxy/session"
)

// fakeRules: /public/ is public, /admin/ needs the admins group, the rest
// is open to every logged-in user.
type fakeRules struct{}

func (fakeRules) Public(method, _, p string) bool { return strings.HasPrefix(p, "/public/") }

func (fakeRules) Allowed(method, _, p string, claims map[string]any) (bool, string) {
	if !strings.HasPrefix(p, "/admin/") {
		return true, "rules.txt:2: allow * / any"
	}
	for _, g := range asList(claims["groups"]) {
		if g == "admins" {
			return true, "rules.txt:1: allow * /admin/ group:admins"
		}
	}
	return false, "rules.txt:1: allow * /admin/ group:admins"
}

func asList(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	case []string:
		out = v
	}
	return out
}

type fakeAsserter struct{}

func (fakeAsserter) Assertion(id assertion.Identity) (string, error) {
	return "signed-for-" + id.Subject, nil
}

// errNotReady is what an unreachable dependency gives.
var errNotReady = fmt.Errorf("%w: not ready", session.ErrUnavailable)

// fakeBearer accepts "good-<user>" tokens, says "not ready" for "later".
func fakeBearer(r *http.Request, token string) (session.Session, error) {
	switch {
	case token == "later":
		return session.Session{}, errNotReady
	case strings.HasPrefix(token, "good-"):
		return session.Session{User: strings.TrimPrefix(token, "good-"), Expiry: time.Now().Add(time.Minute),
			Claims: map[string]any{"groups": []any{"admins"}}}, nil
	}
	return session.Session{}, errors.New("invalid")
}

func withAuthz(c *Config) {
	c.Rules = fakeRules{}
	c.Bearer = fakeBearer
	c.Assertion = fakeAsserter{}
	c.Headers = Headers{Email: "X-Email", Name: "X-Name", Groups: "X-Groups", GroupsClaim: "groups"}
}

func TestAccessRulesAndBearer(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	tests := []struct {
		name     string
		path     string
		cookies  bool
		hdr      http.Header
		status   int
		upstream string // X-User the upstream must see ("" = must not be reached, "-" = reached anonymously)
	}{
		{"public path, anonymous", "/public/app.css", false, nil, 200, "-"},
		{"public path, forged identity", "/public/app.css", false, http.Header{"X-User": {"mallory"}, "X_Email": {"m@x"}}, 200, "-"},
		{"protected, anonymous API", "/data", false, nil, 401, ""},
		{"protected, session", "/data", true, nil, 200, "alice"},
		{"admin, session without group", "/admin/x", true, http.Header{"Accept": {"text/html"}}, 403, ""},
		{"admin, bearer with group", "/admin/x", false, http.Header{"Authorization": {"Bearer good-robot"}}, 200, "robot"},
		{"bearer, lower-case scheme", "/data", false, http.Header{"Authorization": {"bearer good-robot"}}, 200, "robot"},
		{"bearer invalid", "/data", true, http.Header{"Authorization": {"Bearer forged"}}, 401, ""},
		{"bearer while provider unknown", "/data", false, http.Header{"Authorization": {"Bearer later"}}, 503, ""},
		{"basic auth is not bearer", "/data", true, http.Header{"Authorization": {"Basic YTpi"}}, 200, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.upstream.count()
			var cookies []*http.Cookie
			if tt.cookies {
				cookies = f.session
			}
			resp := f.get(t, tt.path, cookies, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			reached := f.upstream.count() > before
			switch tt.upstream {
			case "":
				if reached {
					t.Error("upstream was reached")
				}
			case "-":
				got := f.upstream.last(t).Header
				for name := range got {
					for _, id := range []string{"x-user", "x-email", "x-name", "x-groups", "x-authproxy-jwt-assertion"} {
						if sameHeader(name, id) {
							t.Errorf("anonymous request carried %s: %q", name, got[name])
						}
					}
				}
			default:
				got := f.upstream.last(t).Header
				if got.Get("X-User") != tt.upstream || got.Get(AssertionHeader) != "signed-for-"+tt.upstream {
					t.Errorf("upstream saw X-User %q, assertion %q", got.Get("X-User"), got.Get(AssertionHeader))
				}
			}
			if tt.status == 401 && tt.hdr.Get("Authorization") != "" {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}
		})
	}
}

func TestForbiddenPage(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	resp := f.get(t, "/admin/panel", f.session, http.Header{"Accept": {"text/html"}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(body), "signed in as alice") || !strings.Contains(string(body), "/auth/logout") {
		t.Errorf("403 page: %d %q", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("forbidden answered with a redirect to %q", loc)
	}
}

// TestForwardAuthCheck: /auth/check as an ingress calls it.
func TestForwardAuthCheck(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	tests := []struct {
		name    string
		cookies bool
		hdr     http.Header
		query   string
		status  int
		user    string
		login   string
	}{
		{"nginx, logged in", true, http.Header{"X-Original-Url": {"https://app.example/data?q=1"}, "X-Forwarded-Host": {"app.example"}}, "", 200, "alice", ""},
		{"traefik, logged in", true, http.Header{"X-Forwarded-Uri": {"/data"}, "X-Forwarded-Method": {"POST"}}, "", 200, "alice", ""},
		{"no session, browser", false, http.Header{"X-Original-Url": {"https://app.example/data?q=1&r=2"}, "X-Forwarded-Host": {"app.example"}, "Accept": {"text/html"}}, "", 401, "", "/auth/login?rd=%2Fdata%3Fq%3D1%26r%3D2"},
		{"no session, redirect mode", false, http.Header{"X-Forwarded-Uri": {"/data?q=1"}, "Accept": {"text/html"}}, "?redirect=1", 302, "", "/auth/login?rd=%2Fdata%3Fq%3D1"},
		{"no session, redirect mode, API", false, http.Header{"X-Forwarded-Uri": {"/data"}, "Accept": {"application/json"}}, "?redirect=1", 401, "", "/auth/login?rd=%2Fdata"},
		{"forbidden", true, http.Header{"X-Forwarded-Uri": {"/admin/x"}}, "", 403, "", ""},
		{"public", false, http.Header{"X-Forwarded-Uri": {"/public/a.css"}}, "", 200, "", ""},
		{"bearer", false, http.Header{"X-Forwarded-Uri": {"/admin/x"}, "Authorization": {"Bearer good-robot"}}, "", 200, "robot", ""},
		{"open redirect attempt in original URL", false, http.Header{"X-Forwarded-Uri": {"//evil.example/x"}}, "", 401, "", ""},
		// Fail closed on anything ambiguous: deciding on a guess could pass the real request.
		{"no original URL", true, nil, "", 400, "", ""},
		{"client adds X-Forwarded-Uri the ingress does not set", false, http.Header{
			"X-Original-Url": {"https://app.example/admin/x"}, "X-Forwarded-Uri": {"/public/x"}}, "", 400, "", ""},
		{"headers agree", true, http.Header{"X-Original-Url": {"https://app.example/data?q=1"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Uri": {"/data?q=1"}}, "", 200, "alice", ""},
		{"methods disagree", true, http.Header{"X-Forwarded-Uri": {"/data"}, "X-Forwarded-Method": {"GET"}, "X-Original-Method": {"DELETE"}}, "", 400, "", ""},
		{"unparsable original URL", true, http.Header{"X-Original-Url": {"https://x%zz/admin/secret"}}, "", 400, "", ""},
		{"relative original URL", true, http.Header{"X-Forwarded-Uri": {"admin/x"}}, "", 400, "", ""},
		{"original URL twice", true, http.Header{"X-Forwarded-Uri": {"/public/x", "/admin/x"}}, "", 400, "", ""},
		{"absolute URL for another host", true, http.Header{"X-Original-Url": {"https://admin/x"}, "X-Forwarded-Host": {"app.example"}}, "", 400, "", ""},
		{"absolute URL without a host to compare", true, http.Header{"X-Original-Url": {"https://app.example/data"}, "X-Forwarded-Host": {"app.example", "other"}}, "", 400, "", ""},
		{"absolute URL with userinfo", true, http.Header{"X-Original-Url": {"https://u@app.example/data"}, "X-Forwarded-Host": {"app.example"}}, "", 400, "", ""},
		{"absolute URL, host with another case", true, http.Header{"X-Original-Url": {"https://APP.example/admin/x"}, "X-Forwarded-Host": {"app.example"}}, "", 403, "", ""},
		{"other scheme", true, http.Header{"X-Original-Url": {"ftp://app.example/data"}, "X-Forwarded-Host": {"app.example"}}, "", 400, "", ""},
		{"space in path", true, http.Header{"X-Forwarded-Uri": {"/data /admin/x"}}, "", 400, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.upstream.count()
			var cookies []*http.Cookie
			if tt.cookies {
				cookies = f.session
			}
			resp := f.get(t, "/auth/check"+tt.query, cookies, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("X-User"); got != tt.user {
				t.Errorf("X-User in response = %q, want %q", got, tt.user)
			}
			if tt.user != "" && resp.Header.Get(AssertionHeader) == "" {
				t.Error("no assertion header in the response")
			}
			if tt.login != "" {
				got := resp.Header.Get("Location")
				if tt.status == 401 {
					var body map[string]string
					_ = json.NewDecoder(resp.Body).Decode(&body)
					got = body["login_url"]
				}
				if got != tt.login {
					t.Errorf("login URL = %q, want %q", got, tt.login)
				}
			}
			if f.upstream.count() != before {
				t.Error("/auth/check reached the upstream")
			}
		})
	}
}

func TestGroupsHeader(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want string
	}{
		{[]any{"a", "b"}, "a,b"},
		{"solo", "solo"},
		{[]any{"ok", "evil,admins", "x\r\nX-User: root", 5, ""}, "ok"},
		// Never trimmed into another group: left out.
		{[]any{"staff", " admins", "admins ", "\tadmins", "admins\n", "\u00a0admins", "\ufeffadmins", "ad\x00mins"}, "staff"},
		{[]any{"staff", "ad\u2028mins", "ad\ufffdmins", strings.Repeat("g", 257)}, "staff"},
		{" admins", ""},
		{[]any{"Ann Team", "ops+oncall", "π"}, "Ann Team,ops+oncall,π"},
		{nil, ""},
		{map[string]any{"a": 1}, ""},
	} {
		if got := groups(tt.in); got != tt.want {
			t.Errorf("groups(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeRefresher renews "old" to "new", refuses "revoked", cannot reach the
// provider for "outage".
type fakeRefresher struct{ calls atomic.Int32 }

func (f *fakeRefresher) NeedsRefresh(s session.Session) bool {
	return s.RefreshToken != "new" && s.RefreshToken != "new-of-revoked"
}

func (f *fakeRefresher) Refresh(_ context.Context, s session.Session) (session.Session, error) {
	f.calls.Add(1)
	switch s.RefreshToken {
	case "old":
		s.RefreshToken, s.Name = "new", "renewed"
		return s, nil
	case "outage":
		return session.Session{}, errNotReady
	case "revoked-meanwhile":
		s.RefreshToken, s.Name = "new-of-revoked", "renewed"
		return s, nil
	}
	return session.Session{}, errors.New("invalid_grant")
}

func TestRefreshThroughTheProxy(t *testing.T) {
	ref := &fakeRefresher{}
	f := newFixture(t, &recorder{}, func(c *Config) { c.Refresher = ref; c.Headers.Name = "X-Name" })
	sessionWith := func(token string) []*http.Cookie {
		w := httptest.NewRecorder()
		if err := f.store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", RefreshToken: token, Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return w.Result().Cookies()
	}
	for _, tt := range []struct {
		token      string
		status     int
		name       string // X-Name the upstream must see; "" = not reached
		newCookie  bool
		clearsSess bool
	}{
		{"old", 200, "renewed", true, false},
		{"outage", 200, "-", false, false},
		{"revoked", 401, "", false, true},
	} {
		before := f.upstream.count()
		resp := f.get(t, "/x", sessionWith(tt.token), nil)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.token, resp.StatusCode, tt.status)
		}
		reached := f.upstream.count() > before
		if reached != (tt.name != "") {
			t.Errorf("%s: upstream reached = %v", tt.token, reached)
		} else if reached && tt.name != "-" && f.upstream.last(t).Header.Get("X-Name") != tt.name {
			t.Errorf("%s: upstream saw X-Name %q", tt.token, f.upstream.last(t).Header.Get("X-Name"))
		}
		var saved, cleared bool
		for _, c := range resp.Cookies() {
			if c.Name == cookie.DefaultName {
				saved = saved || c.MaxAge > 0
				cleared = cleared || c.MaxAge < 0
			}
		}
		if saved != tt.newCookie || cleared != tt.clearsSess {
			t.Errorf("%s: session cookie saved=%v cleared=%v", tt.token, saved, cleared)
		}
	}
}

// serverSide is a cookie store whose sessions have an ID, as the Redis
// store's do.
type serverSide struct {
	*cookie.Store
	// lock, when set, is asked at every Save whether it is held.
	lock *fakeLocker
	// savedLocked counts Saves made while the lock was held.
	savedLocked *atomic.Int32
}

func (s serverSide) Save(w http.ResponseWriter, r *http.Request, sess session.Session) error {
	if s.lock != nil && s.lock.locked.Load() > s.lock.unlocked.Load() {
		s.savedLocked.Add(1)
	}
	return s.Store.Save(w, r, sess)
}

func (s serverSide) Load(r *http.Request) (session.Session, error) {
	sess, err := s.Store.Load(r)
	if err == nil {
		sess.ID = "id-" + sess.User
	}
	return sess, err
}

// fakeLocker counts the locks taken and released.
type fakeLocker struct {
	locked, unlocked atomic.Int32
	ids              chan string
}

func (l *fakeLocker) LockRefresh(_ context.Context, sess session.Session) (func(), error) {
	l.locked.Add(1)
	l.ids <- sess.ID
	return func() { l.unlocked.Add(1) }, nil
}

// TestRefreshLock: a refresh of a server-side session runs under the
// Locker, and is saved before the lock is released (or the next replica to
// take it would read the old session and send the rotated-away refresh
// token again); a cookie session, which no other replica can renew, takes
// no lock.
func TestRefreshLock(t *testing.T) {
	for _, tt := range []struct {
		name       string
		serverSide bool
		locks      int32
	}{
		{"cookie session", false, 0},
		{"server-side session", true, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ref := &fakeRefresher{}
			locker := &fakeLocker{ids: make(chan string, 1)}
			var savedLocked atomic.Int32
			f := newFixture(t, &recorder{}, func(c *Config) {
				c.Refresher, c.Locker = ref, locker
				if tt.serverSide {
					c.Sessions = serverSide{Store: c.Sessions.(*cookie.Store), lock: locker, savedLocked: &savedLocked}
				}
			})
			w := httptest.NewRecorder()
			if err := f.store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", RefreshToken: "old", Expiry: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if resp := f.get(t, "/x", w.Result().Cookies(), nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ref.calls.Load() != 1 || locker.locked.Load() != tt.locks || locker.unlocked.Load() != tt.locks {
				t.Errorf("refreshes %d, locks %d, unlocks %d; want 1, %d, %d",
					ref.calls.Load(), locker.locked.Load(), locker.unlocked.Load(), tt.locks, tt.locks)
			}
			if tt.locks > 0 {
				if id := <-locker.ids; id != "id-alice" {
					t.Errorf("locked session %q", id)
				}
				if n := savedLocked.Load(); n != 1 {
					t.Errorf("%d saves under the lock, want the renewed session saved once before the unlock", n)
				}
			}
		})
	}
}

// revokingStore is a session store whose Save of a refreshed session finds
// it revoked meanwhile, as the Redis store does after a logout, an admin
// revocation or a back-channel logout that came while the provider answered.
type revokingStore struct{ *cookie.Store }

func (s revokingStore) Save(w http.ResponseWriter, r *http.Request, sess session.Session) error {
	if sess.RefreshToken == "new-of-revoked" {
		return fmt.Errorf("%w: revoked during the refresh", session.ErrNoSession)
	}
	return s.Store.Save(w, r, sess)
}

// TestRefreshOfARevokedSession: a session revoked while its refresh was
// in flight ends that request as unauthenticated; the request is not
// forwarded with the new tokens.
func TestRefreshOfARevokedSession(t *testing.T) {
	ref := &fakeRefresher{}
	var store revokingStore
	f := newFixture(t, &recorder{}, func(c *Config) {
		store = revokingStore{c.Sessions.(*cookie.Store)}
		c.Sessions, c.Refresher, c.Headers.Name = store, ref, "X-Name"
	})
	w := httptest.NewRecorder()
	if err := store.Store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", RefreshToken: "revoked-meanwhile", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	before := f.upstream.count()
	resp := f.get(t, "/x", w.Result().Cookies(), nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
	if f.upstream.count() != before {
		t.Errorf("the request of a revoked session reached the upstream with X-Name %q", f.upstream.last(t).Header.Get("X-Name"))
	}
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || (c.Name == cookie.DefaultName && c.MaxAge < 0)
	}
	if !cleared {
		t.Error("the session cookie was not cleared")
	}
}
