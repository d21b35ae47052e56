package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// saveSession returns the cookies of sess in f's store.
func (f *fixture) saveSession(t *testing.T, sess session.Session) []*http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if err := f.store.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()
}

// do sends method path with cookies and headers to f's proxy.
func (f *fixture) do(t *testing.T, method, path string, cookies []*http.Cookie, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.front.URL+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestUserinfo: GET /auth/userinfo tells a logged-in caller (cookie or
// bearer) who they are as JSON, never a token; anyone else gets the API
// 401; it is never cached, never sniffed and never reaches the upstream.
func TestUserinfo(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600))
	full := f.saveSession(t, session.Session{User: "auth0|ann", Email: "ann@example.com", Name: "Ann Example",
		IDToken: "the-id-token", AccessToken: "the-access-token", RefreshToken: "the-refresh-token", SID: "the-sid",
		Expiry: expiry, Claims: map[string]any{"groups": []any{"admins", "staff", " admins", "a,b", 7}, "email_verified": true}})
	// A session saved before its name passed the claim rules.
	bare := f.saveSession(t, session.Session{User: "alice", IDToken: "the-id-token", Expiry: expiry})
	odd := f.saveSession(t, session.Session{User: "bob", Name: "Bob\n", Expiry: expiry})
	tamper := []*http.Cookie{{Name: f.session[0].Name, Value: f.session[0].Value[:20] + "x" + f.session[0].Value[21:]}}
	browser := http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}

	tests := []struct {
		name    string
		method  string
		cookies []*http.Cookie
		hdr     http.Header
		status  int
		want    *UserInfo // for 200
		errCode string    // for 4xx
	}{
		{"session", "GET", full, nil, 200, &UserInfo{User: "auth0|ann", Sub: "auth0|ann", Email: "ann@example.com", Name: "Ann Example",
			Groups: []string{"admins", "staff", "a,b"}, ExpiresAt: "2030-01-02T02:04:05Z", Auth: "session"}, ""},
		{"session without claims", "GET", bare, nil, 200, &UserInfo{User: "alice", Sub: "alice", Groups: []string{},
			ExpiresAt: "2030-01-02T02:04:05Z", Auth: "session"}, ""},
		{"name breaking the claim rules is left out", "GET", odd, nil, 200, &UserInfo{User: "bob", Sub: "bob", Groups: []string{},
			ExpiresAt: "2030-01-02T02:04:05Z", Auth: "session"}, ""},
		{"browser page load with a session", "GET", full, browser, 200, &UserInfo{User: "auth0|ann", Sub: "auth0|ann", Email: "ann@example.com",
			Name: "Ann Example", Groups: []string{"admins", "staff", "a,b"}, ExpiresAt: "2030-01-02T02:04:05Z", Auth: "session"}, ""},
		{"bearer", "GET", nil, http.Header{"Authorization": {"Bearer good-machine"}}, 200, &UserInfo{User: "machine", Sub: "machine",
			Groups: []string{"admins"}, Auth: "bearer"}, ""},
		{"bearer wins over a cookie", "GET", full, http.Header{"Authorization": {"Bearer good-machine"}}, 200, &UserInfo{User: "machine",
			Sub: "machine", Groups: []string{"admins"}, Auth: "bearer"}, ""},
		{"HEAD", "HEAD", full, nil, 200, nil, ""},
		{"no session", "GET", nil, nil, 401, nil, "unauthenticated"},
		{"no session, browser page load: still JSON, no redirect", "GET", nil, browser, 401, nil, "unauthenticated"},
		{"tampered cookie", "GET", tamper, nil, 401, nil, "unauthenticated"},
		{"invalid bearer", "GET", full, http.Header{"Authorization": {"Bearer forged"}}, 401, nil, "invalid_token"},
		{"provider not ready for bearer", "GET", nil, http.Header{"Authorization": {"Bearer later"}}, 503, nil, "provider_unavailable"},
		{"POST", "POST", full, nil, 405, nil, ""},
		{"PUT", "PUT", full, nil, 405, nil, ""},
		{"DELETE", "DELETE", full, nil, 405, nil, ""},
		{"OPTIONS", "OPTIONS", full, nil, 405, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, "/auth/userinfo", tt.cookies, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if n := resp.Header.Get("X-Content-Type-Options"); n != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", n)
			}
			for _, secret := range []string{"the-id-token", "the-access-token", "the-refresh-token", "the-sid", "good-machine"} {
				if strings.Contains(body, secret) {
					t.Errorf("body gives away %q: %s", secret, body)
				}
			}
			switch {
			case tt.status == 405:
				if a := resp.Header.Get("Allow"); a != "GET, HEAD" {
					t.Errorf("Allow = %q", a)
				}
				return
			case tt.method == "HEAD":
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" || body != "" {
					t.Errorf("HEAD: Content-Type %q, body %q", ct, body)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tt.want == nil {
				var e map[string]string
				if err := json.Unmarshal([]byte(body), &e); err != nil || e["error"] != tt.errCode {
					t.Errorf("body %s (%v), want error %q", body, err, tt.errCode)
				}
				if tt.errCode == "unauthenticated" {
					if e["login_url"] != "/auth/login?rd=%2F" {
						t.Errorf("login_url = %q, want the login returning to /", e["login_url"])
					}
					if wa := resp.Header.Get("WWW-Authenticate"); wa != `Bearer realm="authproxy"` {
						t.Errorf("WWW-Authenticate = %q", wa)
					}
				}
				return
			}
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			var got UserInfo
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if tt.want.ExpiresAt == "" && tt.want.Auth == "bearer" {
				// fakeBearer's tokens expire a minute from now.
				if exp, err := time.Parse(time.RFC3339, got.ExpiresAt); err != nil || time.Until(exp) > 2*time.Minute || time.Until(exp) < -time.Hour {
					t.Errorf("expires_at = %q, want the token's expiry", got.ExpiresAt)
				}
				got.ExpiresAt = ""
			}
			if !reflect.DeepEqual(got, *tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, *tt.want)
			}
		})
	}
	if n := f.upstream.count(); n != 0 {
		t.Errorf("the upstream received %d requests for /auth/userinfo", n)
	}
}

// TestUserinfoSub: with another user claim, sub is the session's kept sub
// claim, or absent; never the user claim's value.
func TestUserinfoSub(t *testing.T) {
	f := newFixture(t, &recorder{}, func(c *Config) { c.UserClaim = "email" })
	for _, tt := range []struct {
		name   string
		claims map[string]any
		sub    string
	}{
		{"sub kept", map[string]any{"sub": "auth0|ann"}, "auth0|ann"},
		{"sub not kept (an older session)", nil, ""},
		{"sub not a string", map[string]any{"sub": 42.0}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := f.saveSession(t, session.Session{User: "ann@example.com", Email: "ann@example.com", Expiry: time.Now().Add(time.Hour), Claims: tt.claims})
			resp, body := f.do(t, "GET", "/auth/userinfo", c, nil)
			var got UserInfo
			if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != 200 || err != nil {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got.User != "ann@example.com" || got.Sub != tt.sub {
				t.Errorf("user %q sub %q, want ann@example.com and %q", got.User, got.Sub, tt.sub)
			}
			if tt.sub == "" && strings.Contains(body, `"sub"`) {
				t.Errorf("body names a sub: %s", body)
			}
		})
	}
}

// TestUserinfoStoreDown: a session store that cannot be reached is a 503,
// not a 401 that would send a single-page app to log in again.
func TestUserinfoStoreDown(t *testing.T) {
	f := newFixture(t, &recorder{}, func(c *Config) { c.Sessions = downStore{c.Sessions} })
	resp, body := f.do(t, "GET", "/auth/userinfo", f.session, http.Header{"Accept": {"application/json"}})
	if resp.StatusCode != 503 || !strings.Contains(body, "session_store_unavailable") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}

type downStore struct{ session.Store }

func (downStore) Load(*http.Request) (session.Session, error) {
	return session.Session{}, errNotReady
}
