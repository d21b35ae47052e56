package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/session"
)

// hostileStore is a cookie store whose behaviour a session's RefreshToken
// picks: its Load fails while still returning the session (a store may),
// its Touch asks for a Save that finds the session revoked, its Save of a
// renewal finds it revoked. Its sessions have an ID, so refreshes take
// the Locker.
type hostileStore struct{ *cookie.Store }

func (s hostileStore) Load(r *http.Request) (session.Session, error) {
	sess, err := s.Store.Load(r)
	if err != nil {
		return sess, err
	}
	sess.ID = "id-" + sess.User
	switch sess.RefreshToken {
	case "load-unavailable":
		return sess, fmt.Errorf("%w: store down", session.ErrUnavailable)
	case "load-broken":
		return sess, errors.New("store broken")
	case "load-revoked":
		return sess, fmt.Errorf("%w: revoked", session.ErrNoSession)
	}
	return sess, nil
}

func (s hostileStore) Touch(sess *session.Session) bool {
	return sess.RefreshToken == "touch-revoked" || s.Store.Touch(sess)
}

func (s hostileStore) Save(w http.ResponseWriter, r *http.Request, sess session.Session) error {
	switch sess.RefreshToken {
	case "touch-revoked", "renewed-of-revoked":
		return fmt.Errorf("%w: revoked meanwhile", session.ErrNoSession)
	}
	return s.Store.Save(w, r, sess)
}

// markedRefresher renews the sessions whose refresh token starts with
// "refresh-", as the token says.
type markedRefresher struct{}

func (markedRefresher) NeedsRefresh(s session.Session) bool {
	return strings.HasPrefix(s.RefreshToken, "refresh-")
}

func (markedRefresher) Refresh(_ context.Context, s session.Session) (session.Session, error) {
	switch s.RefreshToken {
	case "refresh-outage":
		return s, errNotReady
	case "refresh-revoked":
		s.RefreshToken, s.Name = "renewed-of-revoked", "renewed"
		return s, nil
	case "refresh-other-user":
		// Returned with the refusal: must not be used.
		return session.Session{User: "mallory", Expiry: time.Now().Add(time.Hour)}, errors.New("invalid_grant")
	}
	return s, errors.New("invalid_grant")
}

// markedLocker refuses the lock of "refresh-lock-gone" sessions as gone,
// and of "refresh-lock-down" as unavailable.
type markedLocker struct{}

func (markedLocker) LockRefresh(_ context.Context, s session.Session) (func(), error) {
	switch s.RefreshToken {
	case "refresh-lock-gone":
		return nil, fmt.Errorf("%w: gone", session.ErrNoSession)
	case "refresh-lock-down":
		return nil, fmt.Errorf("%w: lock down", session.ErrUnavailable)
	}
	return func() {}, nil
}

// hostileBearer is fakeBearer, but a refused token comes back with a
// session too.
func hostileBearer(r *http.Request, token string) (session.Session, error) {
	sess, err := fakeBearer(r, token)
	if err != nil {
		sess = session.Session{User: "mallory", Expiry: time.Now().Add(time.Hour)}
	}
	return sess, err
}

// methodRules is fakeRules, and: /ro/ is read-only (GET) for users who are
// not admins, and /public/ is public only to GET.
type methodRules struct{ fakeRules }

func (m methodRules) Public(method, host, p string) bool {
	return method == http.MethodGet && m.fakeRules.Public(method, host, p)
}

func (m methodRules) Allowed(method, host, p string, claims map[string]any) (bool, string) {
	if strings.HasPrefix(p, "/ro/") && method != http.MethodGet {
		return false, "read only"
	}
	return m.fakeRules.Allowed(method, host, p, claims)
}

// TestRefusedRequestsCarryNoUser: admit, authenticate and renew fill the
// request's session in place. Every way a request can be refused (load
// failure, revocation found by Touch's Save, a refresh refused or revoked
// meanwhile, a lock on a gone session, a refused or uncheckable bearer
// token, the rules) must leave no user anywhere but, for the rules' 403,
// the log: not at the upstream, not in forward auth's answer, not in
// /auth/userinfo, not in the access log. The degraded passes (provider or
// lock down) are controls: the user is known and passes.
func TestRefusedRequestsCarryNoUser(t *testing.T) {
	logs := &lockedLog{}
	var store hostileStore
	f := newFixture(t, &recorder{}, withAuthz, func(c *Config) {
		store = hostileStore{c.Sessions.(*cookie.Store)}
		c.Sessions, c.Refresher, c.Locker, c.Bearer = store, markedRefresher{}, markedLocker{}, hostileBearer
		c.Rules = methodRules{}
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	identity := []string{"X-User", "X-Email", "X-Name", "X-Groups", AssertionHeader}
	tests := []struct {
		name  string
		token string // the session's refresh token; "" for no cookie
		hdr   http.Header
		path  string // proxy mode; forward auth asks about the same
		// status in proxy mode; forward auth and userinfo answer alike
		// but for 2xx (200 there) and the rules (userinfo ignores them).
		status int
		user   string // who passes, or, for 403, who the log names
	}{
		{"load fails, store down", "load-unavailable", nil, "/x", http.StatusServiceUnavailable, ""},
		{"load fails, store broken", "load-broken", nil, "/x", http.StatusInternalServerError, ""},
		{"load says revoked", "load-revoked", nil, "/x", http.StatusUnauthorized, ""},
		{"revoked, found by touch", "touch-revoked", nil, "/x", http.StatusUnauthorized, ""},
		{"refresh refused", "refresh-refused", nil, "/x", http.StatusUnauthorized, ""},
		{"refresh refused, with a session", "refresh-other-user", nil, "/x", http.StatusUnauthorized, ""},
		{"revoked while renewing", "refresh-revoked", nil, "/x", http.StatusUnauthorized, ""},
		{"lock: session gone", "refresh-lock-gone", nil, "/x", http.StatusUnauthorized, ""},
		{"bearer refused", "", http.Header{"Authorization": {"Bearer bad"}}, "/x", http.StatusUnauthorized, ""},
		{"bearer refused, with a cookie", "plain", http.Header{"Authorization": {"Bearer bad"}}, "/x", http.StatusUnauthorized, ""},
		{"bearer unavailable", "", http.Header{"Authorization": {"Bearer later"}}, "/x", http.StatusServiceUnavailable, ""},
		{"bearer unavailable, with a cookie", "plain", http.Header{"Authorization": {"bearer later"}}, "/x", http.StatusServiceUnavailable, ""},
		{"rules deny", "plain", nil, "/admin/x", http.StatusForbidden, "alice"},
		// The rules judge every method an upstream may run (methodsOf).
		{"rules deny an override method", "plain", http.Header{"X-HTTP-Method-Override": {"DELETE"}}, "/ro/x", http.StatusForbidden, "alice"},
		{"rules deny an override method, spelled oddly", "plain", http.Header{"x_http_method": {"put"}}, "/ro/x", http.StatusForbidden, "alice"},
		{"rules deny a _method", "plain", nil, "/ro/x?a=1;%5Fmethod=patch", http.StatusForbidden, "alice"},
		{"public only to GET, override", "", http.Header{"X-Method-Override": {"POST"}}, "/public/x", http.StatusUnauthorized, ""},
		{"public only to GET, _method", "", nil, "/public/x?_method=DELETE", http.StatusUnauthorized, ""},
		// Controls.
		{"provider down: kept", "refresh-outage", nil, "/x", http.StatusOK, "alice"},
		{"lock down: kept", "refresh-lock-down", nil, "/x", http.StatusOK, "alice"},
		{"plain", "plain", nil, "/x", http.StatusOK, "alice"},
		{"read only, GET", "plain", http.Header{"X-HTTP-Method-Override": {"get"}}, "/ro/x?_method=GET", http.StatusOK, "alice"},
		{"public", "", nil, "/public/x", http.StatusOK, ""},
		{"bearer", "", http.Header{"Authorization": {"Bearer good-robot"}}, "/admin/x", http.StatusOK, "robot"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cookies []*http.Cookie
			if tt.token != "" {
				cookies = f.saveSession(t, session.Session{User: "alice", Email: "alice@example.com", Name: "Alice",
					RefreshToken: tt.token, Expiry: time.Now().Add(time.Hour), Claims: map[string]any{"groups": []any{"users"}}})
			}
			for _, mode := range []string{"proxy", "forward auth", "userinfo"} {
				hdr := http.Header{"Accept": {"application/json"}}
				for k, v := range tt.hdr {
					hdr[k] = v
				}
				id := fmt.Sprintf("refusal-%d-%s", i, strings.ReplaceAll(mode, " ", "-"))
				hdr.Set("X-Request-Id", id)
				path, status, user := tt.path, tt.status, tt.user
				switch mode {
				case "forward auth":
					hdr.Set("X-Forwarded-Uri", tt.path)
					path = "/auth/check"
				case "userinfo":
					path = "/auth/userinfo"
					if status == http.StatusForbidden { // the rules guard the upstream, not userinfo
						status = http.StatusOK
					}
					if status == http.StatusOK && user == "" { // public paths are the upstream's
						status = http.StatusUnauthorized
					}
				}
				before := f.upstream.count()
				resp, body := f.do(t, http.MethodGet, path, cookies, hdr)
				if resp.StatusCode != status {
					t.Errorf("%s: status %d, want %d; body %s", mode, resp.StatusCode, status, body)
				}
				reached := f.upstream.count() > before
				if mode != "proxy" || status != http.StatusOK {
					if reached {
						t.Errorf("%s: refused, yet the upstream was reached with X-User %q", mode, f.upstream.last(t).Header.Values("X-User"))
					}
				} else if !reached {
					t.Errorf("%s: passed, yet the upstream was not reached", mode)
				} else if got := f.upstream.last(t).Header.Values("X-User"); user == "" && len(got) != 0 || user != "" && (len(got) != 1 || got[0] != user) {
					t.Errorf("%s: upstream saw X-User %q, want %q", mode, got, user)
				}
				for _, h := range identity {
					if v := resp.Header.Values(h); len(v) > 0 && (status != http.StatusOK || mode != "forward auth") {
						t.Errorf("%s: the answer carries %s %q", mode, h, v)
					}
				}
				if status != http.StatusOK && status != http.StatusForbidden {
					for _, who := range []string{"alice", "mallory", "robot"} {
						if strings.Contains(body, who) {
							t.Errorf("%s: the refusal names %s: %s", mode, who, body)
						}
					}
				}
				// The access log names the user who passed, or for the
				// rules' 403 the refused one; else nobody.
				var rec map[string]any
				waitFor(t, mode+": no access-log record", func() bool {
					logPath, _, _ := strings.Cut(path, "?")
					for _, r := range logs.requests(t, logPath) {
						if r["request_id"] == id {
							rec = r
							return true
						}
					}
					return false
				})
				if want := user; rec["user"] != want {
					t.Errorf("%s: access log names user %q, want %q", mode, rec["user"], want)
				}
			}
		})
	}
}

// sharedClaimsStore hands every Load the same Claims map, as the Redis
// store's session cache does on a hit (the cached entry is shared).
type sharedClaimsStore struct {
	*cookie.Store
	claims map[string]any
}

func (s sharedClaimsStore) Load(r *http.Request) (session.Session, error) {
	sess, err := s.Store.Load(r)
	if err == nil {
		sess.Claims = s.claims
	}
	return sess, err
}

// TestSharedClaimsNeverWritten: a cache hit returns a Session whose Claims
// map every other hit of that session shares. Nothing on the request's
// way (rules with the email added, the groups header, the assertion,
// forward auth, userinfo, a refresh) may write into it: that would change
// the cached session of every later request, or race with them. Run with
// -race, from several goroutines.
func TestSharedClaimsNeverWritten(t *testing.T) {
	for _, withEmail := range []bool{false, true} {
		claims := map[string]any{"groups": []any{"users", "admins", " padded", "a,b"}, "email_verified": true,
			"sub": "auth0|alice", "nested": map[string]any{"k": []any{"v"}}}
		if withEmail {
			claims["email"] = "alice@example.com"
		}
		want := cloneAny(claims).(map[string]any)
		f := newFixture(t, &recorder{}, withAuthz, func(c *Config) {
			c.Sessions = sharedClaimsStore{Store: c.Sessions.(*cookie.Store), claims: claims}
			c.Refresher = markedRefresher{}
			c.Rules = methodRules{}
		})
		cookies := f.saveSession(t, session.Session{User: "alice", Email: "alice@example.com", Name: "Alice",
			RefreshToken: "refresh-outage", Expiry: time.Now().Add(time.Hour)})
		requests := []struct {
			path string
			hdr  http.Header
		}{
			{"/x", nil},
			{"/admin/x", nil},
			{"/ro/x", http.Header{"X-Http-Method-Override": {"DELETE"}}},
			{"/auth/check", http.Header{"X-Forwarded-Uri": {"/admin/x"}}},
			{"/auth/check", http.Header{"X-Forwarded-Uri": {"/ro/x?_method=PUT"}}},
			{"/auth/userinfo", nil},
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 10 {
					for _, rq := range requests {
						req, _ := http.NewRequest(http.MethodGet, f.front.URL+rq.path, nil)
						for k, v := range rq.hdr {
							req.Header[k] = v
						}
						for _, c := range cookies {
							req.AddCookie(c)
						}
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			})
		}
		wg.Wait()
		if !reflect.DeepEqual(claims, want) {
			t.Errorf("email claim %v: the shared claims were changed:\n%#v\nwant\n%#v", withEmail, claims, want)
		}
	}
}

// cloneAny deep-copies JSON-like values.
func cloneAny(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cloneAny(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneAny(e)
		}
		return out
	}
	return v
}
