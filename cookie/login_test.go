package cookie

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// loginCookies returns the login cookies among cookies and their total size
// on the wire (name=value).
func loginCookies(s *Store, cookies []*http.Cookie) ([]*http.Cookie, int) {
	var out []*http.Cookie
	size := 0
	for _, c := range cookies {
		if strings.HasPrefix(c.Name, s.loginPrefix) {
			out = append(out, c)
			size += len(c.Name) + 1 + len(c.Value)
		}
	}
	return out, size
}

func stateN(i int) string { return fmt.Sprintf("state%011d-AAAAAAAAAAAAAAAAAAAAAA", i) }

// startLogin runs SaveLogin for state in a browser holding cookies and
// returns what the browser holds afterwards.
func startLogin(t *testing.T, s *Store, cookies []*http.Cookie, state, returnTo string) []*http.Cookie {
	t.Helper()
	r := httptest.NewRequest("GET", "/auth/login", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	if err := s.SaveLogin(w, r, Login{State: state, Nonce: "n", Verifier: "v", ReturnTo: returnTo}); err != nil {
		t.Fatalf("SaveLogin: %v", err)
	}
	return jar(cookies, w.Result().Cookies())
}

// TestLoginCookiesAreBounded is the login-cookie bomb: a page on any site
// can open /auth/login again and again, each adding a cookie that lives ten
// minutes. Whatever it does, the browser keeps at most maxLogins login
// cookies of at most loginBudget bytes together (so requests stay far from
// 431 and nginx's 8 KiB buffers), the newest login still works, and login
// cookies that are garbage, expired or oversized are expired.
func TestLoginCookiesAreBounded(t *testing.T) {
	garbage := func(n, size int) []*http.Cookie {
		var out []*http.Cookie
		for i := range n {
			out = append(out, &http.Cookie{Name: fmt.Sprintf("_authproxy_login_forged%09d", i), Value: strings.Repeat("x", size)})
		}
		return out
	}
	tests := []struct {
		name     string
		prior    func(s *Store, now *time.Time) []*http.Cookie
		logins   int
		returnTo string
		// wantKept is how many login cookies remain, newest first.
		wantKept int
	}{
		{name: "25 logins", logins: 25, returnTo: "/", wantKept: maxLogins},
		{name: "25 logins with the longest return path that fits", logins: 25, returnTo: "/" + strings.Repeat("p", 880), wantKept: 2},
		{name: "forged login cookies", prior: func(*Store, *time.Time) []*http.Cookie { return garbage(50, 100) }, logins: 1, returnTo: "/", wantKept: 1},
		{name: "one huge forged login cookie", prior: func(*Store, *time.Time) []*http.Cookie { return garbage(1, 6000) }, logins: 1, returnTo: "/", wantKept: 1},
		{name: "login cookies of another key", prior: func(_ *Store, now *time.Time) []*http.Cookie {
			other := newStore(t, now, keyB)
			var c []*http.Cookie
			for i := range 3 {
				c = startLogin(t, other, c, stateN(100+i), "/")
			}
			return c
		}, logins: 1, returnTo: "/", wantKept: 1},
		{name: "expired login cookies", prior: func(s *Store, now *time.Time) []*http.Cookie {
			var c []*http.Cookie
			for i := range 2 {
				c = startLogin(t, s, c, stateN(100+i), "/")
			}
			*now = now.Add(DefaultLoginTTL + time.Second)
			return c
		}, logins: 1, returnTo: "/", wantKept: 1},
		{name: "a valid login cookie copied under another name", prior: func(s *Store, now *time.Time) []*http.Cookie {
			c := startLogin(t, s, nil, stateN(100), "/")
			return append(c, &http.Cookie{Name: s.loginPrefix + "copyAAAAAAAAAAAA", Value: c[0].Value})
		}, logins: 1, returnTo: "/", wantKept: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			s := newStore(t, &now, keyA)
			var cookies []*http.Cookie
			if tt.prior != nil {
				cookies = tt.prior(s, &now)
			}
			for i := range tt.logins {
				now = now.Add(time.Second)
				cookies = startLogin(t, s, cookies, stateN(i), tt.returnTo)
				if _, size := loginCookies(s, cookies); size > loginBudget+maxLogins {
					t.Fatalf("after %d logins the browser sends %d bytes of login cookies, want at most %d", i+1, size, loginBudget)
				}
			}
			kept, _ := loginCookies(s, cookies)
			if len(kept) != tt.wantKept {
				t.Errorf("browser keeps %d login cookies, want %d", len(kept), tt.wantKept)
			}
			r := httptest.NewRequest("GET", "/auth/callback", nil)
			for _, c := range cookies {
				r.AddCookie(c)
			}
			for i := tt.logins - 1; i >= 0 && i >= tt.logins-tt.wantKept; i-- {
				if l, err := s.LoadLogin(r, stateN(i)); err != nil || l.ReturnTo != tt.returnTo {
					t.Errorf("login %d (of the newest) = %+v, %v", i, l, err)
				}
			}
		})
	}
}

// TestLoginTooLarge: a login that does not fit maxLoginBytes is refused
// with ErrTooLarge before anything is written (the handler then retries
// with "/"), and a login cookie over the limit is never decoded.
func TestLoginTooLarge(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	prior := startLogin(t, s, nil, stateN(1), "/")
	for _, n := range []int{1100, 2048, 10000} {
		r := httptest.NewRequest("GET", "/auth/login", nil)
		for _, c := range prior {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		err := s.SaveLogin(w, r, Login{State: stateN(2), Nonce: "n", Verifier: "v", ReturnTo: "/" + strings.Repeat("p", n)})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("return path of %d bytes: err %v, want ErrTooLarge", n, err)
		}
		if got := w.Header().Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("return path of %d bytes: %d Set-Cookie headers, want nothing written", n, len(got))
		}
	}
	r := httptest.NewRequest("GET", "/auth/callback", nil)
	r.AddCookie(&http.Cookie{Name: s.loginPrefix + stateN(3)[:16], Value: strings.Repeat("A", maxLoginBytes+1)})
	if _, err := s.LoadLogin(r, stateN(3)); !errors.Is(err, ErrNoLogin) {
		t.Errorf("oversized login cookie: %v, want ErrNoLogin", err)
	}
}

// TestMigrateLegacyName: a session under the legacy cookie name is moved
// to the current one once; anything the legacy cookie cannot vouch for
// (tampered, expired, another name's value) is only expired.
func TestMigrateLegacyName(t *testing.T) {
	now := t0
	legacy := newStore(t, &now, keyA) // _authproxy, as before the default changed
	s, err := NewStore(Config{Name: DefaultHostName, Legacy: DefaultName, Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: [][]byte{keyA},
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	alice := session.Session{User: "alice", Expiry: t0.Add(time.Hour)}
	big := session.Session{User: "bigbob", Expiry: t0.Add(time.Hour), Claims: map[string]any{"groups": strings.Repeat("g", 6000)}}
	current := save(t, s, nil, session.Session{User: "carol", Expiry: t0.Add(time.Hour)})
	tests := []struct {
		name     string
		cookies  []*http.Cookie
		wantUser string // what the next handler loads; "" for no session
	}{
		{"legacy session", save(t, legacy, nil, alice), "alice"},
		{"legacy chunked session", save(t, legacy, nil, big), "bigbob"},
		{"legacy and current session: the current one wins", append(save(t, legacy, nil, alice), current...), "carol"},
		{"tampered legacy session", []*http.Cookie{{Name: DefaultName, Value: save(t, legacy, nil, alice)[0].Value + "x"}}, ""},
		{"expired legacy session", save(t, legacy, nil, session.Session{User: "alice", Expiry: t0.Add(time.Second)}), ""},
		{"a current-name value under the legacy name", []*http.Cookie{{Name: DefaultName, Value: current[0].Value}}, ""},
		{"a legacy chunk alone", []*http.Cookie{{Name: DefaultName + "_1", Value: save(t, legacy, nil, big)[1].Value}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() { now = t0 }()
			now = t0.Add(2 * time.Second)
			r := httptest.NewRequest("GET", "/", nil)
			for _, c := range tt.cookies {
				r.AddCookie(c)
			}
			var got session.Session
			var loadErr error
			w := httptest.NewRecorder()
			s.Migrate(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				got, loadErr = s.Load(r)
			})).ServeHTTP(w, r)
			if got.User != tt.wantUser || (tt.wantUser == "") != (loadErr != nil) {
				t.Errorf("next loads %+v, %v; want user %q", got, loadErr, tt.wantUser)
			}
			browser := jar(tt.cookies, w.Result().Cookies())
			for _, c := range browser {
				if c.Name == DefaultName || strings.HasPrefix(c.Name, DefaultName+"_") {
					t.Errorf("legacy cookie %s survives", c.Name)
				}
			}
			// The browser now holds the session under the new name only.
			if sess, err := load(s, browser); sess.User != tt.wantUser {
				t.Errorf("next request loads %+v, %v; want user %q", sess, err, tt.wantUser)
			}
		})
	}
	for name, want := range map[string]bool{DefaultName: true, DefaultName + "_0": true, DefaultName + "_login_x": true,
		DefaultHostName: true, DefaultName + "x": false, "authproxy": false} {
		if s.IsOwn(name) != want {
			t.Errorf("IsOwn(%q) = %v, want %v", name, !want, want)
		}
	}
	plain := newStore(t, &now, keyA)
	next := http.NotFoundHandler()
	if fmt.Sprint(plain.Migrate(next)) != fmt.Sprint(next) {
		t.Error("Migrate wraps the handler without a legacy name")
	}
}
